"""Free JSON attributes of mixed types compare safely on PostgreSQL (no cast errors)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from campaigns.audience.selection import _attribute_condition, expression_select
from campaigns.config.schema import AppConfig
from campaigns.store.db import make_engine
from campaigns.store.models import Customer

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, sqlite_url):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else sqlite_url
    engine = make_engine(url)
    with engine.begin() as conn:
        for name, tier in [("int3", 3), ("float3", 3.0), ("gold", "gold"), ("yes", True), ("half", 2.5),
                           ("none", None)]:
            attributes = {} if tier is None else {"tier": tier}
            conn.execute(sa.insert(Customer.__table__).values(external_id=name, attributes=attributes,
                                                             created_at=NOW, updated_at=NOW))
    yield engine
    engine.dispose()


def matching(engine, condition) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(Customer.external_id).where(condition)).scalars())


def test_structured_attribute_filters_match_only_values_of_their_type(engine):
    assert matching(engine, _attribute_condition("tier", 3)) == {"int3", "float3"}
    assert matching(engine, _attribute_condition("tier", "gold")) == {"gold"}
    assert matching(engine, _attribute_condition("tier", True)) == {"yes"}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("attributes.tier == 3", {"int3", "float3"}),
        ("attributes.tier > 2", {"int3", "float3", "half"}),
        ('attributes.tier == "gold"', {"gold"}),
        ("attributes.tier", {"yes"}),
    ],
)
def test_expressions_on_attributes_match_only_values_of_their_type(engine, expression, expected):
    query = expression_select(AppConfig(), expression, now=NOW).subquery()
    with engine.connect() as conn:
        got = set(conn.execute(sa.select(Customer.external_id).join(query, query.c.customer_id == Customer.id))
                  .scalars())
    assert got == expected
