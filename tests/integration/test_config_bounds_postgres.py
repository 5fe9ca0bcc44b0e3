"""The edges of what ``nurture check`` accepts run on both databases: int64 limits, 100-year
day counts and durations, attribute names with '-' and '.' (issue #12 item 5: check now
refuses what lies beyond them; what it lets through must never fail in SQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from campaigns.audience.selection import _attribute_condition, expression_select
from campaigns.config.campaigns import AudienceConfig
from campaigns.config.schema import AppConfig
from campaigns.store.db import make_engine
from campaigns.store.models import Customer, Order

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, tzinfo=UTC)
INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, sqlite_url):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else sqlite_url
    engine = make_engine(url)
    with engine.begin() as conn:
        for name, attributes in [("dotted", {"x.y": 1}), ("dashed", {"a-b": 2}), ("max", {"n": INT64_MAX}),
                                 ("plain", {})]:
            conn.execute(sa.insert(Customer.__table__).values(external_id=name, attributes=attributes,
                                                             created_at=NOW, updated_at=NOW))
        dotted = conn.execute(sa.select(Customer.id).where(Customer.external_id == "dotted")).scalar_one()
        conn.execute(sa.insert(Order.__table__), [
            {"order_id": f"o{n}", "customer_id": dotted, "amount": 1.0, "channel": "store", "ordered_at": NOW}
            for n in range(2)])
    yield engine
    engine.dispose()


def selected(engine, expression: str) -> set[str]:
    query = expression_select(AppConfig(), expression, now=NOW).subquery()
    with engine.connect() as conn:
        return set(conn.execute(sa.select(Customer.external_id).join(query, query.c.customer_id == Customer.id))
                   .scalars())


def test_attribute_names_check_accepts_address_the_right_json_key(engine):
    AudienceConfig(attributes={"x.y": 1, "a-b": 2})  # accepted by the config
    with engine.connect() as conn:
        for key, value, expected in [("x.y", 1, {"dotted"}), ("a-b", 2, {"dashed"})]:
            found = set(conn.execute(sa.select(Customer.external_id)
                                     .where(_attribute_condition(key, value))).scalars())
            assert found == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (f"orders_count >= {INT64_MAX}", set()),
        (f"orders_count != {INT64_MIN}", {"dotted", "dashed", "max", "plain"}),
        (f'count_of("order") < {INT64_MIN}', set()),
        (f'count_of("order") < {INT64_MAX}', {"dotted", "dashed", "max", "plain"}),
        (f'count_of("order") in [2, {INT64_MAX}]', {"dotted"}),
        # A fraction compared with a count keeps its fraction (no integer cast of the bound value).
        ('count_of("order") > 1.5', {"dotted"}),
        ('count_of("order") <= 1.5', {"dashed", "max", "plain"}),
        (f"attributes.n >= {INT64_MAX - 1024}", {"max"}),
        (f"attributes.n > {INT64_MIN}", {"max"}),
        ("days_since_signup >= 36500", set()),
        ("days_since_signup > -36500", {"dotted", "dashed", "max", "plain"}),
        ('did("order", within="36500d")', {"dotted"}),
    ],
)
def test_the_extremes_check_accepts_run_in_sql(engine, expression, expected):
    assert selected(engine, expression) == expected
