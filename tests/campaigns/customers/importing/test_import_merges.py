"""An import that merges customers (issue #15 must-have 3: "profiles are recomputed for the
survivor"): the report names the survivors, and recompute_survivors brings their profiles
in step with a full recompute, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.config.schema import AppConfig
from campaigns.customers.identity.decisions import recompute_survivors
from campaigns.customers.importing.files import import_file
from campaigns.customers.profiles import recompute_profiles
from campaigns.store.db import make_engine
from campaigns.store.models import CustomerIdentifier, CustomerProfile
from tests.campaigns.customers.identity import three_sources as data

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request):
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    made = make_engine(url)
    yield made
    made.dispose()


def holder(engine, reference: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(CustomerIdentifier.customer_id).where(
            CustomerIdentifier.kind == "id", CustomerIdentifier.value == reference)).scalar_one()


def orders_count(engine, customer_id: int) -> int | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(CustomerProfile.orders_count)
                            .where(CustomerProfile.customer_id == customer_id)).scalar()


def test_an_import_that_merges_names_its_survivors_and_their_profiles_catch_up(engine, tmp_path: Path) -> None:
    # Given the chain's store (pos:88) and WeChat (wechat:...) records, one order each,
    # and profiles computed while they were two customers
    for source in ("wechat", "pos"):
        report = import_file(engine, "customers", data.write_file(tmp_path, source), source=source,
                             identity=data.RULES)
        assert report.rejected == [] and report.survivors == set()
    assert {"pos:88", "wechat:o-chain"} <= data.person_ids("chain")
    store, wechat = holder(engine, "pos:88"), holder(engine, "wechat:o-chain")
    assert store != wechat
    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,customer_id,ordered_at,amount\n"
                      "O1,id:pos:88,2026-05-01T10:00:00+00:00,30\n"
                      "O2,id:wechat:o-chain,2026-05-20T10:00:00+00:00,50\n")
    assert import_file(engine, "orders", orders, identity=data.RULES).imported == 2
    config = AppConfig()
    recompute_profiles(engine, config, as_of=NOW)
    assert orders_count(engine, store) == orders_count(engine, wechat) == 1

    # When the web shop's account links both (phone and unionid): a merge
    shop = import_file(engine, "customers", data.write_file(tmp_path, "shop"), source="shop", identity=data.RULES)

    # Then the report names the one survivor, whose profile is stale until recomputed
    survivor = holder(engine, "pos:88")
    assert holder(engine, "wechat:o-chain") == survivor
    assert shop.merged == 1 and shop.survivors == {survivor}
    assert orders_count(engine, survivor) == 1
    assert recompute_survivors(engine, config, shop.survivors) is True
    assert orders_count(engine, survivor) == 2


def test_recompute_survivors_does_nothing_before_profiles_exist_or_for_customers_merged_away(engine) -> None:
    config = AppConfig()
    assert recompute_survivors(engine, config, []) is False
    assert recompute_survivors(engine, config, [12345]) is False  # no profiles computed yet
    recompute_profiles(engine, config, as_of=NOW)
    assert recompute_survivors(engine, config, [12345]) is False  # nobody by that id is left
