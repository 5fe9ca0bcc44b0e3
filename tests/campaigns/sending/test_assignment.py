"""Holdout/variant assignment (campaigns.sending.assignment): SQL equals its Python mirror."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from campaigns.sending.assignment import (
    BUCKETS,
    bucket,
    bucket_sql,
    in_holdout_sql,
    variant_of,
    variant_sql,
)
from campaigns.store.db import make_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def conn(request):
    url = "sqlite://" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    with engine.connect() as connection:
        yield connection
    engine.dispose()


IDS = [1, 2, 3, 41, 999, 123_456, 2_000_000_000]  # ids below 2^31


def test_sql_buckets_equal_the_python_mirror_on_both_databases(conn):
    for customer_id in IDS:
        got = conn.execute(sa.select(bucket_sql(sa.literal(customer_id), "win_back", "holdout"))).scalar()
        assert got == bucket(customer_id, "win_back", "holdout")
        variant = conn.execute(sa.select(variant_sql(sa.literal(customer_id), "win_back", 1, [1, 2, 1]))).scalar()
        assert variant == variant_of(customer_id, "win_back", 1, [1, 2, 1])


def test_shares_are_honoured_and_campaigns_are_independent():
    ids = range(1, 50_001)
    held = [i for i in ids if bucket(i, "win_back", "holdout") < 0.10 * BUCKETS]
    assert 0.09 < len(held) / 50_000 < 0.11
    other = {i for i in ids if bucket(i, "welcome", "holdout") < 0.10 * BUCKETS}
    overlap = len(other & set(held)) / len(held)
    assert 0.07 < overlap < 0.13  # about 10 %: independent, not the same customers
    counts = [0, 0, 0]
    for i in ids:
        counts[variant_of(i, "win_back", 0, [1, 2, 1])] += 1
    assert [round(c / 50_000, 2) for c in counts] == [0.25, 0.5, 0.25]


def test_holdout_of_zero_holds_nobody_and_one_holds_everyone():
    engine = make_engine("sqlite://")
    with engine.connect() as c:
        assert c.execute(sa.select(in_holdout_sql(sa.literal(7), "x", 0.0))).scalar() == 0
        assert c.execute(sa.select(in_holdout_sql(sa.literal(7), "x", 1.0))).scalar() == 1
