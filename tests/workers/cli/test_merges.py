"""``nurture customer merge | unmerge | merges`` (issue #15) through the real CLI: two
records found by any identifier, shown and asked about, merged into the earlier one (its
profile recomputed), listed, and undone; mistakes end in one line, never a traceback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from typer.testing import CliRunner

from campaigns.store.models import Customer, CustomerIdentifier, CustomerMerge, CustomerProfile, Order
from tests.workers.cli.shop import table_rows
from tests.workers.cli.win_back import assert_no_crash, invoke
from workers.cli.main import app

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
NOW = "2026-11-24T10:00:00+08:00"


def seed(engine) -> dict[str, int]:
    """"store-ann" (first, known by phone) and "shop-ann" (later, an order); "bob" apart."""
    with engine.begin() as conn:
        conn.execute(sa.insert(Customer.__table__), [
            {"external_id": name, "name": full, "created_at": T0 + timedelta(days=day), "updated_at": T0,
             "attributes": {}}
            for name, full, day in (("shop-ann", "Ann", 5), ("store-ann", None, 1), ("bob", "Bob", 2))])
        ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
        conn.execute(sa.insert(CustomerIdentifier.__table__), [
            {"customer_id": ids[owner], "kind": kind, "value": value, "source": None, "verified": False,
             "first_seen_at": T0, "last_seen_at": T0}
            for owner, kind, value in (("store-ann", "id", "store-ann"), ("store-ann", "phone", "+8613800138000"),
                                       ("shop-ann", "id", "shop-ann"), ("bob", "id", "bob"))])
        conn.execute(sa.insert(Order.__table__), {"order_id": "O-1", "customer_id": ids["shop-ann"],
                                                  "ordered_at": T0 + timedelta(days=6), "amount": 80.0})
    return ids


def merge_rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            sa.select(CustomerMerge.survivor_id, CustomerMerge.merged_id, CustomerMerge.reason, CustomerMerge.actor,
                      CustomerMerge.unmerged_at).order_by(CustomerMerge.id))]


def test_merge_shows_both_asks_and_merges_into_the_earlier_customer(project, engine):
    ids = seed(engine)
    assert invoke("profiles", "--as-of", NOW, "-c", project.config).exit_code == 0
    declined = CliRunner().invoke(app, ["customer", "merge", "shop-ann", "13800138000", "-c", str(project.config)],
                                  input="n\n")
    assert declined.exit_code == 1 and "nothing changed" in declined.output
    rows = table_rows(declined.output, "customers to merge")
    assert rows["shop-ann"][-1] == "merged into it" and rows["store-ann"][-1] == "survives"
    assert merge_rows(engine) == []

    result = CliRunner().invoke(app, ["customer", "merge", "shop-ann", "phone:+86 138 0013 8000", "--reason",
                                      "same phone", "--by", "ana", "--now", NOW, "-c", str(project.config)],
                                input="y\n")
    assert result.exit_code == 0, result.output
    assert "merged shop-ann into store-ann (merge 1): moved 1 customer_identifier, 1 orders" in result.output
    assert "undo with `nurture customer unmerge 1`" in result.output
    assert merge_rows(engine) == [(ids["store-ann"], ids["shop-ann"], "same phone", "ana", None)]
    with engine.connect() as conn:
        assert conn.execute(sa.select(CustomerProfile.orders_count)
                            .where(CustomerProfile.customer_id == ids["store-ann"])).scalar() == 1
        assert conn.execute(sa.select(Customer.name).where(Customer.id == ids["store-ann"])).scalar() == "Ann"


def test_merges_lists_and_unmerge_undoes(project, engine):
    ids = seed(engine)
    merged = invoke("customer", "merge", "store-ann", "shop-ann", "--yes", "--json", "--by", "ana", "--now", NOW,
                    "-c", project.config)
    assert merged.exit_code == 0, merged.output
    data = json.loads(merged.output)
    assert (data["merge"], data["survivor"], data["merged"], data["moved"]) == (
        1, "store-ann", "shop-ann", {"customer_identifier": 1, "orders": 1})
    assert data["profile_recomputed"] is False  # no profiles yet: nothing to keep in step

    listed = invoke("customer", "merges", "shop-ann", "-c", project.config)  # found by the id it brought
    assert listed.exit_code == 0, listed.output
    assert table_rows(listed.output, "merges: 1")["1"] == [
        "2026-11-24 02:00", "store-ann", "shop-ann", "cli", "ana", "2", "-"]
    everything = json.loads(invoke("customer", "merges", "--all", "--json", "-c", project.config).output)
    assert [(m["id"], m["survivor"], m["merged"], m["rows_moved"], m["unmerged_at"]) for m in everything] == [
        (1, "store-ann", "shop-ann", 2, None)]

    undone = invoke("customer", "unmerge", "1", "--yes", "--now", NOW, "-c", project.config)
    assert undone.exit_code == 0, undone.output
    assert "undid merge 1: shop-ann is a customer again" in undone.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(Order.customer_id)).scalar() == ids["shop-ann"]
    assert merge_rows(engine)[0][-1] == datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    again = invoke("customer", "unmerge", "1", "--yes", "-c", project.config)
    assert_no_crash(again)
    assert again.exit_code == 1 and "already reversed" in again.output
    assert json.loads(invoke("customer", "merges", "bob", "--json", "-c", project.config).output) == []


def test_mistakes_are_one_line(project, engine):
    seed(engine)
    cases = [
        (("customer", "merge", "nobody", "bob", "--yes"), "customer 'nobody' not found"),
        (("customer", "merge", "bob", "bob", "--yes"), "are the same customer already"),
        (("customer", "unmerge", "7", "--yes"), "no merge with id 7"),
        (("customer", "unmerge", "seven"), ""),
        (("customer", "merges"), "give a customer ID or --all"),
        (("customer", "merges", "bob", "--all"), "give a customer ID or --all"),
    ]
    for args, message in cases:
        result = invoke(*args, "-c", project.config)
        assert_no_crash(result)
        assert result.exit_code in (1, 2), (args, result.output)
        assert message in result.output, (args, result.output)
    assert merge_rows(engine) == []
