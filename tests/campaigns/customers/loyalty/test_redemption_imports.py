"""Redemption files (campaigns/customers/loyalty/redemption_imports.py), on SQLite and
PostgreSQL: bad rows listed by line and the good ones applied, a redemption beyond the
balance refused with its reason and nothing of it written, a replay changing nothing, and
batches that apply in time order."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.config.loyalty import LoyaltyConfig
from campaigns.customers.importing.fields import RowInvalid
from campaigns.customers.loyalty.earning import earn
from campaigns.customers.loyalty.redeeming import MAX_POINTS, RedemptionResult
from campaigns.customers.loyalty.redemption_imports import (
    import_redemptions,
    is_id_conflict,
    kind_value,
    points_value,
)
from campaigns.errors import DataImportError
from campaigns.store.models import CustomerIdentifier
from tests.campaigns.customers.loyalty.helpers import add_customer, add_event, add_order, entries, lots

NOW = datetime(2026, 4, 1, 4, 0, tzinfo=UTC)
LOYALTY = LoyaltyConfig(enabled=True)


def seed(engine: sa.Engine) -> dict[str, int]:
    """ann: an order of 100 (100 points, every kind) and a review (10, goods and coupons);
    bo: a review only (10)."""
    ann = add_customer(engine, "ann", at=NOW - timedelta(days=30))
    bo = add_customer(engine, "bo", at=NOW - timedelta(days=30))
    add_order(engine, ann, "O-1", at=NOW - timedelta(days=20), amount=100)
    add_event(engine, ann, "review", "rv-1", at=NOW - timedelta(days=10))
    add_event(engine, bo, "review", "rv-2", at=NOW - timedelta(days=10))
    assert earn(engine, LOYALTY, now=NOW - timedelta(days=5)).points == 120
    return {"ann": ann, "bo": bo}


CSV = """\
redemption_id,customer_id,points,kind,redeemed_at,note
R-1,ann,15,goods,2026-03-25T10:00:00+08:00,mug
R-2,bo,11,coupons,2026-03-25T10:00:00+08:00,
R-3,nobody,5,goods,2026-03-25T10:00:00+08:00,
R-4,ann,-5,goods,2026-03-25T10:00:00+08:00,
R-5,ann,5,spa,2026-03-25T10:00:00+08:00,
,ann,5,goods,2026-03-25T10:00:00+08:00,
R-7,ann,5,goods,yesterday,
R-8,ann,96,services,2026-03-26T10:00:00+08:00,
R-9,ann,95,services,2026-03-26T11:00:00+08:00,trip
R-1,ann,15,goods,2026-03-25T10:00:00+08:00,mug
R-9,ann,50,services,2026-03-26T11:00:00+08:00,
"""


def write(tmp_path: Path, text: str, name: str = "redemptions.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_file_with_bad_refused_and_repeated_rows(engine: sa.Engine, tmp_path: Path) -> None:
    ids = seed(engine)
    path = write(tmp_path, CSV)

    report = import_redemptions(engine, path, loyalty=LOYALTY, now=NOW)

    assert report.rows_read == 11
    # R-1 (15 of ann's 110: the review's 10 expire first, then 5 of the order), R-9 (95 services).
    assert (report.redeemed, report.points) == (2, 110)
    assert report.duplicates == 1  # R-1 again, same customer and points
    assert {row.line: row.reason.split(":")[0] for row in report.rejected} == {
        4: "customer_id not found", 5: "points", 6: "kind", 7: "redemption_id", 8: "redeemed_at"}
    refused = {row.line: row for row in report.refused}
    assert sorted(refused) == [3, 9, 12]
    # bo has 10 points: 11 is refused whole, with the balance allowed.
    assert refused[3].reason == "not enough points: 10 redeemable for coupons, 11 asked"
    assert refused[3].balance == 10
    # Only the order's 100 points are redeemable for services, and R-1 took 5 of them first.
    assert refused[9].reason == "not enough points: 95 redeemable for services, 96 asked"
    assert refused[12].reason == "this id was already used for another redemption"
    assert refused[12].balance is None
    assert report.failed

    assert [entry[:2] for entry in entries(engine, ids["bo"])] == [("earn", 10)]  # nothing partial
    assert [entry for entry in entries(engine, ids["ann"]) if entry[0] == "redeem"] == [
        ("redeem", -15, "R-1"), ("redeem", -95, "R-9")]
    assert {lot["source_ref"]: lot["remaining"] for lot in lots(engine, ids["ann"])} == {"O-1": 0, "rv-1": 0}

    # The same file again changes nothing: what was redeemed is a duplicate now.
    again = import_redemptions(engine, path, loyalty=LOYALTY, now=NOW + timedelta(hours=1))
    assert (again.redeemed, again.duplicates) == (0, 3)
    assert len([entry for entry in entries(engine, ids["ann"]) if entry[0] == "redeem"]) == 2
    assert sorted(row.line for row in again.refused) == [3, 9, 12]
    assert json.loads(json.dumps(again.to_dict()))["refused"][0] == {
        "line": 3, "redemption_id": "R-2", "reason": "not enough points: 10 redeemable for coupons, 11 asked",
        "balance": 10}


def test_batches_apply_in_time_order_and_a_later_batch_sees_the_earlier(engine: sa.Engine, tmp_path: Path) -> None:
    ids = seed(engine)
    # Within a batch of two, the later line (earlier in time) spends first; the third row,
    # in the next batch, finds only what the first two left.
    lines = [
        '{"redemption_id": "J-1", "customer_id": "ann", "points": 60, "kind": "goods", '
        '"redeemed_at": "2026-03-27T00:00:00Z"}',
        '{"redemption_id": "J-2", "customer_id": "ann", "points": 50, "kind": "goods", '
        '"redeemed_at": "2026-03-26T00:00:00Z"}',
        '{"redemption_id": "J-3", "customer_id": "ann", "points": 1, "kind": "goods", '
        '"redeemed_at": "2026-03-25T00:00:00Z"}',
    ]
    path = write(tmp_path, "\n".join(lines) + "\n", "redemptions.jsonl")
    seen: list[int] = []

    report = import_redemptions(engine, path, loyalty=LOYALTY, now=NOW, batch_size=2, progress=seen.append)

    assert report.redeemed == 2
    [late] = report.refused
    assert (late.redemption_id, late.reason) == ("J-3", "not enough points: 0 redeemable for goods, 1 asked")
    assert seen[-1] == path.stat().st_size
    assert sorted(entry[2] for entry in entries(engine, ids["ann"]) if entry[0] == "redeem") == ["J-1", "J-2"]


def test_customers_are_named_by_any_identifier_and_by_source(engine: sa.Engine, tmp_path: Path) -> None:
    ids = seed(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(CustomerIdentifier), [
            {"customer_id": ids["ann"], "kind": "phone", "value": "+8613800138000", "source": None,
             "verified": False, "first_seen_at": NOW, "last_seen_at": NOW},
            {"customer_id": ids["bo"], "kind": "id", "value": "pos:88", "source": "pos",
             "verified": False, "first_seen_at": NOW, "last_seen_at": NOW},
        ])
    by_phone = write(tmp_path, "redemption_id,customer_id,points,kind,redeemed_at\n"
                               "P-1,phone:+8613800138000,3,goods,2026-03-30\n")
    assert import_redemptions(engine, by_phone, loyalty=LOYALTY, now=NOW).redeemed == 1
    by_source = write(tmp_path, "redemption_id,customer_id,points,kind,redeemed_at\nP-2,88,3,goods,2026-03-30\n",
                      "pos.csv")
    assert import_redemptions(engine, by_source, loyalty=LOYALTY, now=NOW, source="pos").redeemed == 1
    assert [entry[2] for entry in entries(engine, ids["bo"]) if entry[0] == "redeem"] == ["P-2"]


def test_a_file_that_cannot_be_read_is_an_error(engine: sa.Engine, tmp_path: Path) -> None:
    with pytest.raises(DataImportError, match="lacks required column"):
        import_redemptions(engine, write(tmp_path, "redemption_id,customer_id,points\n"), loyalty=LOYALTY, now=NOW)
    with pytest.raises(DataImportError, match="file not found"):
        import_redemptions(engine, tmp_path / "missing.csv", loyalty=LOYALTY, now=NOW)


@pytest.mark.parametrize("value, points", [(5, 5), ("12", 12), (" 7 ", 7), (3.0, 3), (MAX_POINTS, MAX_POINTS)])
def test_points_are_positive_whole_numbers(value: object, points: int) -> None:
    assert points_value(value) == points


@pytest.mark.parametrize("value", [0, -1, "1.5", 1.5, True, "ten", "", None, MAX_POINTS + 1, "99999999999", [1]])
def test_other_points_are_refused(value: object) -> None:
    with pytest.raises(RowInvalid, match="points"):
        points_value(value)


def test_kinds_are_the_configured_ones() -> None:
    assert kind_value("goods", LOYALTY) == "goods"
    with pytest.raises(RowInvalid, match="kinds are goods, coupons, services"):
        kind_value("Goods", LOYALTY)
    with pytest.raises(RowInvalid, match="required"):
        kind_value(None, LOYALTY)


def test_an_id_conflict_is_the_refusal_without_a_balance() -> None:
    assert is_id_conflict(RedemptionResult("R", "refused", 5, "this id was already used for another redemption"))
    assert not is_id_conflict(RedemptionResult("R", "refused", 5, "not enough points", balance=0))
    assert not is_id_conflict(RedemptionResult("R", "duplicate", 5))
