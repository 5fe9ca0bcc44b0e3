"""``nurture identity review`` (issue #15) through the real CLI: open review items listed
with masked values (and --json), a pair merged (asked first, the earlier customer
survives, the operator recorded, the survivor's profile recomputed) or kept apart for
good; mistakes end in one line, never a traceback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from typer.testing import CliRunner

from campaigns.store.models import (
    Customer,
    CustomerIdentifier,
    CustomerMerge,
    CustomerProfile,
    IdentityReview,
    Order,
)
from tests.workers.cli.shop import table_rows
from tests.workers.cli.win_back import assert_no_crash, invoke
from workers.cli.identity import operator_name
from workers.cli.main import app

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
NOW = "2026-11-24T10:00:00+08:00"


def seed(engine) -> dict[str, int]:
    """"mum" (created first) and "kid" share a family email, "x" and "y" another; "kid" has
    an order. The mum/kid item is opened first."""
    with engine.begin() as conn:
        conn.execute(sa.insert(Customer.__table__), [
            {"external_id": name, "email": email, "created_at": T0 + timedelta(days=day), "updated_at": T0,
             "attributes": {}}
            for name, email, day in (("kid", "fam@example.com", 5), ("mum", "fam@example.com", 1),
                                     ("x", "xy@example.com", 2), ("y", "xy@example.com", 3))])
        ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
        conn.execute(sa.insert(Order.__table__), {"order_id": "O-kid", "customer_id": ids["kid"],
                                                  "ordered_at": T0 + timedelta(days=6), "amount": 80.0})
        conn.execute(sa.insert(IdentityReview.__table__), [
            {"customer_id": ids["kid"], "other_customer_id": ids["mum"], "kind": "email",
             "value": "fam@example.com", "source": "shop", "status": "open", "opened_at": T0 + timedelta(days=7)},
            {"customer_id": ids["x"], "other_customer_id": ids["y"], "kind": "email", "value": "xy@example.com",
             "source": None, "status": "open", "opened_at": T0 + timedelta(days=8)},
        ])
    return ids


def items(engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(IdentityReview.id, IdentityReview.status)).all())


def test_review_lists_open_items_masked(project, engine):
    seed(engine)
    first, second = sorted(items(engine))
    result = invoke("identity", "review", "-c", project.config)
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output, "open review items: 2")
    assert rows[str(first)] == ["kid ↔ mum", "email", "f***@example.com", "shop", "2026-11-08 08:00"]
    assert rows[str(second)] == ["x ↔ y", "email", "x***@example.com", "-", "2026-11-09 08:00"]
    assert "fam@example.com" not in result.output

    data = json.loads(invoke("identity", "review", "--json", "-c", project.config).output)
    assert [(d["id"], d["customer_external_id"], d["other_external_id"], d["value"]) for d in data] == [
        (first, "kid", "mum", "f***@example.com"), (second, "x", "y", "x***@example.com")]
    assert data[0]["opened_at"].startswith("2026-11-08T08:00")
    revealed = json.loads(invoke("identity", "review", "--json", "--reveal", "-c", project.config).output)
    assert revealed[0]["value"] == "fam@example.com"


def test_review_merge_asks_then_merges_into_the_earlier_customer(project, engine):
    ids = seed(engine)
    first, second = sorted(items(engine))
    assert invoke("profiles", "--as-of", NOW, "-c", project.config).exit_code == 0
    declined = CliRunner().invoke(app, ["identity", "review", "--merge", str(first), "-c", str(project.config)],
                                  input="n\n")
    assert declined.exit_code == 1 and "nothing changed" in declined.output
    assert "kid ↔ mum" in declined.output  # the question names the pair
    assert items(engine) == {first: "open", second: "open"}

    result = CliRunner().invoke(app, ["identity", "review", "--merge", str(first), "--by", "ana", "--now", NOW,
                                      "-c", str(project.config)], input="y\n")
    assert result.exit_code == 0, result.output
    assert "merged kid into mum" in result.output
    with engine.connect() as conn:
        merge = conn.execute(sa.select(CustomerMerge)).one()
        assert (merge.survivor_id, merge.merged_id, merge.reason, merge.actor) == (ids["mum"], ids["kid"],
                                                                                  "review", "ana")
        assert merge.merged_at == datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
        # The survivor's profile counts the order the merged customer brought.
        assert conn.execute(sa.select(CustomerProfile.orders_count)
                            .where(CustomerProfile.customer_id == ids["mum"])).scalar() == 1
    assert f"undo with `nurture customer unmerge {merge.id}`" in result.output
    assert items(engine) == {second: "open"}
    listed = invoke("identity", "review", "-c", project.config)
    assert "kid" not in listed.output and "x ↔ y" in listed.output


def test_review_keep_apart_is_for_good(project, engine):
    seed(engine)
    first, second = sorted(items(engine))
    result = invoke("identity", "review", "--keep-apart", second, "--yes", "--now", NOW, "--json", "-c",
                    project.config)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"review": second, "decision": "kept_apart", "customers": ["x", "y"]}
    assert items(engine) == {first: "open", second: "kept_apart"}
    with engine.connect() as conn:
        assert conn.execute(sa.select(IdentityReview.decided_at).where(IdentityReview.id == second)).scalar() == \
            datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    again = invoke("identity", "review", "--merge", second, "--yes", "-c", project.config)
    assert_no_crash(again)
    assert again.exit_code == 1 and "already closed (kept apart" in again.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(CustomerMerge)).scalar() == 0


def test_review_mistakes_are_one_line(project, engine):
    seed(engine)
    for args in (("--merge", "999", "--yes"), ("--keep-apart", "999"), ("--merge", "1", "--keep-apart", "2"),
                 ("--merge", "one")):
        result = invoke("identity", "review", *args, "-c", project.config)
        assert_no_crash(result)
        assert result.exit_code in (1, 2), (args, result.output)
    assert "no review item 999" in invoke("identity", "review", "--keep-apart", "999", "-c", project.config).output
    assert set(items(engine).values()) == {"open"}


def test_no_open_items(project, engine):
    result = invoke("identity", "review", "-c", project.config)
    assert result.exit_code == 0 and "no open review items" in result.output
    assert json.loads(invoke("identity", "review", "--json", "-c", project.config).output) == []


def test_operator_name(monkeypatch):
    monkeypatch.setenv("USER", "li")
    assert operator_name(None) == "li" and operator_name(" ana ") == "ana"


def seed_sources(engine) -> None:
    """"a" is known to the pos and the shop, "b" to the pos only, "c" to an unsourced import;
    two merges into "a", one at 23:30 Shanghai on the 20th, one the next day, undone."""
    with engine.begin() as conn:
        conn.execute(sa.insert(Customer.__table__), [
            {"external_id": name, "acquisition_channel": channel, "created_at": T0, "updated_at": T0,
             "attributes": {}} for name, channel in (("a", "store"), ("b", "store"), ("c", "=online"))])
        ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
        conn.execute(sa.insert(CustomerIdentifier.__table__), [
            {"customer_id": ids[name], "kind": "id", "value": value, "source": source, "verified": False,
             "first_seen_at": T0, "last_seen_at": T0}
            for name, value, source in (("a", "pos:1", "pos"), ("a", "shop:1", "shop"), ("b", "pos:2", "pos"),
                                        ("c", "c", None))])
        conn.execute(sa.insert(CustomerMerge.__table__), [
            {"survivor_id": ids["a"], "merged_id": 90 + n, "merged_external_id": f"gone{n}", "reason": "import:pos",
             "actor": "nurture", "merged_at": at, "unmerged_at": undone, "moved": {}, "removed": {}, "changed": []}
            for n, at, undone in ((1, datetime(2026, 11, 20, 15, 30, tzinfo=UTC), None),
                                  (2, datetime(2026, 11, 21, 3, 0, tzinfo=UTC), datetime(2026, 11, 22, tzinfo=UTC)))])


def test_report_identity_tables_json_and_csv(project, engine, tmp_path):
    seed_sources(engine)
    result = invoke("report", "identity", "--timezone", "Asia/Shanghai", "-c", project.config)
    assert result.exit_code == 0, result.output
    sources = table_rows(result.output, "customers per source (of 3)", "overlaps")
    assert sources == {"pos": ["2", "66.7%"], "shop": ["1", "33.3%"],
                       "(none)": ["1", "33.3%"]}
    overlaps = table_rows(result.output, "overlaps", "omnichannel")
    assert overlaps["pos"] == ["shop", "1", "50.0%", "100.0%"]
    omni = table_rows(result.output, "omnichannel share", "merges per day")
    assert omni["store"] == ["2", "1", "50.0%"] and omni["=online"] == ["1", "0", "0.0%"]
    assert omni["total"] == ["3", "1", "33.3%"]
    merges = table_rows(result.output, "merges per day (Asia/Shanghai): 1, 1 more undone")
    assert merges["2026-11-20"] == ["1", "0"] and merges["2026-11-21"] == ["0", "1"]

    data = json.loads(invoke("report", "identity", "--json", "--since", "2026-11-21", "--timezone",
                             "Asia/Shanghai", "-c", project.config).output)
    # Local midnight of the 21st in Shanghai is 16:00 UTC on the 20th: the 15:30 merge is before it.
    assert data["merges"] == [{"day": "2026-11-21", "merges": 0, "unmerged": 1}]
    assert data["since"].startswith("2026-11-21T00:00:00+08:00") and data["customers"] == 3

    csv_path = tmp_path / "identity.csv"
    written = invoke("report", "identity", "--csv", csv_path, "--timezone", "UTC", "-c", project.config)
    assert written.exit_code == 0 and "wrote 8 rows" in written.output, written.output
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "section,name,other,customers,omnichannel,merges,unmerged,share,share_of_other"
    assert "overlap,pos,shop,1,,,,0.5,1.0" in lines
    assert "omnichannel,'=online,,1,0,,,0.0," in lines  # a formula-like channel name stays text
    assert "merges,2026-11-20,,,,1,0,," in lines


def test_report_identity_mistakes(project, engine):
    bad_zone = invoke("report", "identity", "--timezone", "Mars/Olympus", "-c", project.config)
    assert_no_crash(bad_zone)
    assert bad_zone.exit_code == 1 and "unknown time zone" in bad_zone.output
    bad_since = invoke("report", "identity", "--since", "last week", "-c", project.config)
    assert_no_crash(bad_since)
    assert bad_since.exit_code == 2 and "ISO 8601" in bad_since.output
    empty = invoke("report", "identity", "-c", project.config)
    assert empty.exit_code == 0 and "customers per source (of 0)" in empty.output
