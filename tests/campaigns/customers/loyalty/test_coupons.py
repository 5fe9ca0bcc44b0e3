"""Coupon pools, assignment and redemptions (campaigns/customers/loyalty/coupons.py and
coupon_imports.py), on SQLite and PostgreSQL: a pool imported with a duplicate and a bad
row, one coupon per send key (a retry gets the same one, two messages never share one,
also under concurrent workers), a dry pool, generated codes, and replay-safe redemptions."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.customers.loyalty.coupon_codes import has_valid_check
from campaigns.customers.loyalty.coupon_imports import import_coupon_pool, import_redemptions
from campaigns.customers.loyalty.coupons import (
    AssignedCoupon,
    CodeGenerator,
    CouponRequest,
    assign_coupons,
)
from campaigns.errors import DataImportError
from campaigns.store.models import Coupon, Customer

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def customers(engine: sa.Engine, count: int) -> list[int]:
    with engine.begin() as conn:
        conn.execute(sa.insert(Customer.__table__), [
            {"external_id": f"C{n}", "name": f"P{n}", "created_at": NOW, "updated_at": NOW, "attributes": {}}
            for n in range(count)])
        return list(conn.execute(sa.select(Customer.id).order_by(Customer.id)).scalars())


def pool_file(tmp_path: Path, codes: list[str], name: str = "codes.csv") -> Path:
    path = tmp_path / name
    path.write_text("code\n" + "".join(f"{code}\n" for code in codes), encoding="utf-8")
    return path


def coupons(engine: sa.Engine) -> list[tuple[str, str, str, str | None]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            sa.select(Coupon.pool, Coupon.code, Coupon.status, Coupon.send_key).order_by(Coupon.id))]


def request(key: str, customer_id: int, pool: str = "wb", generator: CodeGenerator | None = None) -> CouponRequest:
    return CouponRequest(send_key=key, customer_id=customer_id, campaign="win_back", pool=pool, generator=generator)


def test_a_pool_import_keeps_the_good_rows_and_lists_a_duplicate_and_a_bad_row_by_line(engine, tmp_path):
    path = tmp_path / "codes.csv"
    # line 1 header; 2 A1; 3 B2; 4 A1 again; 5 a code with a space; 6 blank; 7 C3
    path.write_text("code,value\nA1,10\nB2,10\nA1,10\nBAD CODE,10\n\nC3,10\n", encoding="utf-8")

    report = import_coupon_pool(engine, path, pool="wb", now=NOW)

    assert (report.rows_read, report.imported) == (5, 3)
    assert [(e.line, e.reason) for e in report.duplicates] == [(4, "code already on line 2")]
    assert [(e.line, e.reason) for e in report.rejected] == [(5, "code: printable ASCII characters only, without spaces")]
    assert coupons(engine) == [("wb", "A1", "available", None), ("wb", "B2", "available", None),
                               ("wb", "C3", "available", None)]

    # The same file again adds nothing: every code is a duplicate of the stored one.
    again = import_coupon_pool(engine, path, pool="wb", now=NOW)
    assert again.imported == 0
    assert [(e.line, e.reason) for e in again.duplicates] == [
        (2, "code already in pool 'wb'"), (3, "code already in pool 'wb'"), (4, "code already on line 2"),
        (7, "code already in pool 'wb'")]
    # Another pool may hold the same codes.
    assert import_coupon_pool(engine, path, pool="other", now=NOW).imported == 3
    assert len(coupons(engine)) == 6


def test_a_jsonl_pool_import_and_files_that_cannot_be_read(engine, tmp_path):
    path = tmp_path / "codes.jsonl"
    path.write_text('{"code": "J1"}\n{"code": 12345}\n{"nope": 1}\n[1]\n', encoding="utf-8")
    report = import_coupon_pool(engine, path, pool="wb", now=NOW)
    assert report.imported == 2  # a JSON number is taken as text, as in the other imports
    assert [(e.line, e.reason) for e in report.rejected] == [(3, "code: required"),
                                                            (4, "expected a JSON object, got list")]
    no_code = tmp_path / "x.csv"
    no_code.write_text("kode\nA\n", encoding="utf-8")
    with pytest.raises(DataImportError, match="lacks required column"):
        import_coupon_pool(engine, no_code, pool="wb", now=NOW)
    with pytest.raises(DataImportError, match="not valid"):
        import_coupon_pool(engine, path, pool="bad pool", now=NOW)
    with pytest.raises(DataImportError, match="file not found"):
        import_coupon_pool(engine, tmp_path / "missing.csv", pool="wb", now=NOW)


def test_a_send_key_gets_one_coupon_a_retry_the_same_and_no_two_share_one(engine, tmp_path):
    ids = customers(engine, 3)
    import_coupon_pool(engine, pool_file(tmp_path, ["A1", "B2", "C3", "D4", "E5"]), pool="wb", now=NOW)

    first = assign_coupons(engine, [request("k1", ids[0]), request("k2", ids[1]), request("k3", ids[2])], now=NOW)

    # Codes go out in pool order, one each.
    assert first == {"k1": AssignedCoupon("A1", "wb"), "k2": AssignedCoupon("B2", "wb"),
                     "k3": AssignedCoupon("C3", "wb")}
    # A retry (all three again, in another order, one with a new key beside them).
    again = assign_coupons(engine, [request("k3", ids[2]), request("k1", ids[0]), request("k4", ids[0])], now=NOW)
    assert again == {"k3": AssignedCoupon("C3", "wb"), "k1": AssignedCoupon("A1", "wb"),
                     "k4": AssignedCoupon("D4", "wb")}
    assert coupons(engine) == [("wb", "A1", "assigned", "k1"), ("wb", "B2", "assigned", "k2"),
                               ("wb", "C3", "assigned", "k3"), ("wb", "D4", "assigned", "k4"),
                               ("wb", "E5", "available", None)]
    with engine.connect() as conn:
        row = conn.execute(sa.select(Coupon).where(Coupon.send_key == "k2")).one()
    assert (row.customer_id, row.campaign, row.assigned_at) == (ids[1], "win_back", NOW)
    # The database itself refuses a second coupon for a send key.
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.update(Coupon).where(Coupon.code == "E5").values(send_key="k1", status="assigned"))


def test_a_dry_pool_answers_none_for_the_send_keys_it_cannot_serve(engine, tmp_path):
    ids = customers(engine, 1)
    import_coupon_pool(engine, pool_file(tmp_path, ["A1", "B2"]), pool="wb", now=NOW)

    found = assign_coupons(engine, [request(f"k{n}", ids[0]) for n in range(4)], now=NOW)

    assert found == {"k0": AssignedCoupon("A1", "wb"), "k1": AssignedCoupon("B2", "wb"), "k2": None, "k3": None}
    # Codes imported later serve them, and the first two keep theirs.
    import_coupon_pool(engine, pool_file(tmp_path, ["C3", "D4", "E5"], "more.csv"), pool="wb", now=NOW)
    assert assign_coupons(engine, [request(f"k{n}", ids[0]) for n in range(4)], now=NOW) == {
        "k0": AssignedCoupon("A1", "wb"), "k1": AssignedCoupon("B2", "wb"), "k2": AssignedCoupon("C3", "wb"),
        "k3": AssignedCoupon("D4", "wb")}
    # A pool nobody imported is dry too.
    assert assign_coupons(engine, [request("k9", ids[0], pool="none")], now=NOW) == {"k9": None}


def test_generated_codes_are_stored_assigned_and_the_same_for_a_retry(engine):
    ids = customers(engine, 2)
    generator = CodeGenerator(key=b"s" * 32, prefix="WB", length=10)

    first = assign_coupons(engine, [request("k1", ids[0], generator=generator),
                                    request("k2", ids[1], generator=generator)], now=NOW)
    again = assign_coupons(engine, [request("k1", ids[0], generator=generator)], now=NOW)

    assert again == {"k1": first["k1"]}
    assert first["k1"] != first["k2"]
    assert first["k1"].code == generator.code(pool="wb", send_key="k1", attempt=0)
    assert all(has_valid_check(c.code, prefix="WB") for c in first.values() if c)
    assert [(pool, status, key) for pool, _, status, key in coupons(engine)] == [("wb", "assigned", "k1"),
                                                                                 ("wb", "assigned", "k2")]


def test_a_generated_code_another_message_holds_is_skipped_for_the_next_candidate(engine, tmp_path):
    ids = customers(engine, 1)
    generator = CodeGenerator(key=b"s" * 32, prefix="", length=10)
    taken = generator.code(pool="wb", send_key="k1", attempt=0)
    import_coupon_pool(engine, pool_file(tmp_path, [taken]), pool="wb", now=NOW)  # the pool already has it

    found = assign_coupons(engine, [request("k1", ids[0], generator=generator)], now=NOW)

    assert found == {"k1": AssignedCoupon(generator.code(pool="wb", send_key="k1", attempt=1), "wb")}
    assert coupons(engine)[0] == ("wb", taken, "available", None)


def test_concurrent_workers_never_give_one_code_twice(engine, tmp_path):
    ids = customers(engine, 1)
    import_coupon_pool(engine, pool_file(tmp_path, [f"P{n:03d}" for n in range(70)]), pool="wb", now=NOW)
    results: list[dict[str, AssignedCoupon | None]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4, timeout=30)

    def worker(number: int) -> None:
        try:
            start.wait()
            # Four workers, 20 send keys each; keys k0-k9 are asked for by two workers at once.
            keys = [f"k{n}" for n in range(10)] if number < 2 else []
            keys += [f"w{number}-{n}" for n in range(20 - len(keys))]
            for chunk in (keys[:10], keys[10:]):
                results.append(assign_coupons(engine, [request(key, ids[0]) for key in chunk], now=NOW))
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    given: dict[str, str] = {}
    for found in results:
        for key, coupon in found.items():
            assert coupon is not None
            assert given.setdefault(key, coupon.code) == coupon.code  # both askers of k0-k9 got the same one
    # 70 send keys, 70 codes: every one given out, none twice.
    assert len(given) == 70 and len(set(given.values())) == 70
    stored = [(code, key) for _, code, status, key in coupons(engine) if status == "assigned"]
    assert sorted(stored) == sorted((code, key) for key, code in given.items())


def redemptions(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "redemptions.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_redemptions_mark_coupons_once_and_a_replay_changes_nothing(engine, tmp_path):
    ids = customers(engine, 2)
    import_coupon_pool(engine, pool_file(tmp_path, ["A1", "B2", "C3", "S1"]), pool="wb", now=NOW)
    import_coupon_pool(engine, pool_file(tmp_path, ["S1"], "s.csv"), pool="spring", now=NOW)
    assign_coupons(engine, [request("k1", ids[0]), request("k2", ids[1])], now=NOW)  # A1, B2
    path = redemptions(tmp_path, (
        "code,pool,redeemed_at,order_id,customer_id\n"
        "A1,,2026-03-05T10:00:00+08:00,O-1,\n"      # 2: assigned to C0
        "C3,wb,2026-03-06,,C1\n"                     # 3: never assigned: C1 is kept on it
        "ZZ9,,2026-03-06,,\n"                         # 4: unknown
        "S1,,2026-03-06,,\n"                          # 5: in two pools
        "B2,spring,2026-03-06,,\n"                    # 6: not in that pool
        "B2,wb,not a date,,\n"                        # 7: bad date
        "A1,,2026-03-07,O-2,\n"                       # 8: A1 again, another order
        "B2,,2026-03-07,,C404\n"                      # 9: unknown customer
    ))

    report = import_redemptions(engine, path)

    assert (report.rows_read, report.imported, report.unchanged) == (8, 2, 0)
    assert [(e.line, e.reason.split(":")[0]) for e in report.rejected] == [
        (4, "code"), (5, "code"), (6, "code"), (7, "redeemed_at"), (8, "coupon already redeemed (2026-03-05 02"),
        (9, "customer_id not found")]
    assert "in 2 pools (spring, wb): give pool" in report.rejected[1].reason
    assert "order O-1" in report.rejected[4].reason
    with engine.connect() as conn:
        rows = {row.code: row for row in conn.execute(
            sa.select(Coupon).where(Coupon.pool == "wb", Coupon.status == "redeemed"))}
    assert sorted(rows) == ["A1", "C3"]
    assert (rows["A1"].redeemed_at, rows["A1"].order_id, rows["A1"].customer_id) == (
        datetime(2026, 3, 5, 2, 0, tzinfo=UTC), "O-1", ids[0])
    assert (rows["C3"].redeemed_at, rows["C3"].customer_id) == (datetime(2026, 3, 6, tzinfo=UTC), ids[1])

    replay = import_redemptions(engine, path)

    assert (replay.imported, replay.unchanged) == (0, 2)
    assert [e.line for e in replay.rejected] == [4, 5, 6, 7, 8, 9]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Coupon).where(
            Coupon.status == "redeemed")).scalar() == 2


def test_the_same_coupon_twice_in_one_file_is_redeemed_once(engine, tmp_path):
    import_coupon_pool(engine, pool_file(tmp_path, ["A1"]), pool="wb", now=NOW)
    path = redemptions(tmp_path, "code,redeemed_at,order_id\nA1,2026-03-05,O-1\nA1,2026-03-05,O-1\n"
                                 "A1,2026-03-05,O-9\n")
    report = import_redemptions(engine, path, batch_size=2)  # the rows span two batches
    assert (report.imported, report.unchanged, [e.line for e in report.rejected]) == (1, 1, [4])


def test_a_merge_moves_the_merged_customers_coupons_to_the_survivor(engine, tmp_path):
    from campaigns.customers.identity.merging import merge_customers

    ids = customers(engine, 2)
    import_coupon_pool(engine, pool_file(tmp_path, ["A1"]), pool="wb", now=NOW)
    assign_coupons(engine, [request("k1", ids[1])], now=NOW)
    with engine.begin() as conn:
        merge_customers(conn, survivor_id=ids[0], merged_id=ids[1], reason="test", actor="test",
                        now=NOW + timedelta(days=1))
    with engine.connect() as conn:
        row = conn.execute(sa.select(Coupon.customer_id, Coupon.send_key)).one()
    assert tuple(row) == (ids[0], "k1")
