"""``nurture customer``: a command group whose default is ``show`` (issue #15), so
``nurture customer ID`` keeps working next to ``nurture customer merge ...``; and the
identifiers and merges ``nurture customer ID`` shows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from campaigns.store.models import Customer, CustomerIdentifier, CustomerMerge
from tests.conftest import TICK_NOW, seed_customers
from tests.workers.cli.shop import table_rows
from tests.workers.cli.win_back import assert_no_crash, flat, invoke
from workers.cli.views import DefaultShowGroup

#: When the identifiers of these tests were first seen.
SEEN = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def test_customer_id_and_customer_show_id_print_the_same(project, engine):
    seed_customers(engine, count=2, now=TICK_NOW)
    bare = invoke("customer", "C00001", "-c", project.config)
    shown = invoke("customer", "show", "C00001", "-c", project.config)
    options_first = invoke("customer", "-c", project.config, "C00001")
    assert bare.exit_code == 0, bare.output
    assert "customer C00001" in bare.output and "Test Person1" in bare.output
    assert shown.output == bare.output
    assert options_first.output == bare.output


def test_customer_help_lists_the_subcommands(project):
    result = invoke("customer", "--help")
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "Commands" in text and "show" in text
    assert "Missing argument" not in text


def test_an_unknown_customer_is_one_line_not_a_traceback(project, engine):
    result = invoke("customer", "C99999", "-c", project.config)
    assert_no_crash(result)
    assert result.exit_code == 1
    assert "C99999" in result.output and "not found" in result.output


def test_the_group_runs_show_unless_a_subcommand_is_named():
    app = typer.Typer(cls=DefaultShowGroup)
    ran: list[str] = []

    @app.command("show")
    def show(ident: str) -> None:
        ran.append(f"show {ident}")

    @app.command("merge")
    def merge(first: str, second: str) -> None:
        ran.append(f"merge {first} {second}")

    runner = CliRunner()
    assert runner.invoke(app, ["C1"]).exit_code == 0
    assert runner.invoke(app, ["merge", "C1", "C2"]).exit_code == 0
    assert runner.invoke(app, ["show", "merge"]).exit_code == 0  # an id named like a command
    assert ran == ["show C1", "merge C1 C2", "show merge"]


def add_identifiers(engine, external_id: str, rows: list[tuple[str, str, str | None, bool]]) -> int:
    """Give customer ``external_id`` identifiers ``(kind, value, source, verified)``; its row id."""
    with engine.begin() as conn:
        row_id = conn.execute(sa.select(Customer.id).where(Customer.external_id == external_id)).scalar_one()
        conn.execute(sa.insert(CustomerIdentifier.__table__), [
            {"customer_id": row_id, "kind": kind, "value": value, "source": source, "verified": verified,
             "first_seen_at": SEEN, "last_seen_at": SEEN + timedelta(days=2)}
            for kind, value, source, verified in rows])
    return row_id


def test_any_identifier_finds_the_customer_and_the_identifiers_are_listed_masked(project, engine):
    seed_customers(engine, count=3, now=TICK_NOW)
    row_id = add_identifiers(engine, "C00002", [
        ("id", "pos:88", "pos", False), ("phone", "+8613800138000", "pos", True),
        ("email", "ana.li@example.com", "shop", False), ("unionid", "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "wechat", False),
    ])
    with engine.begin() as conn:
        conn.execute(sa.insert(CustomerMerge.__table__), {
            "survivor_id": row_id, "merged_id": 990, "merged_external_id": "shop:17", "reason": "import:pos",
            "actor": "nurture", "merged_at": SEEN, "moved": {}, "removed": {}, "changed": []})
    for reference in ("C00002", "pos:88", "id:pos:88", "13800138000", "phone:+86 138 0013 8000",
                      "email:Ana.Li@example.com", "unionid:o6_bmjrPTlm6_2sgVt7hMZOPfL2M"):
        result = invoke("customer", reference, "-c", project.config)
        assert result.exit_code == 0, (reference, result.output)
        assert "customer C00002" in result.output, reference
    output = invoke("customer", "pos:88", "-c", project.config).output
    rows = table_rows(output, "identifiers: 4", "merged into this person")
    assert rows["id"] == ["pos:88", "pos", "no", "2026-11-20 08:00", "2026-11-22 08:00"]
    assert rows["phone"][:3] == ["+86*******8000", "pos", "yes"]
    assert rows["email"][0] == "a***@example.com" and rows["unionid"][0] == "o6_b***"
    assert "13800138000" not in output.split("identifiers: 4")[1] and "ana.li@" not in output.split("identifiers")[1]
    merges = table_rows(output, "merged into this person: 1", "profile")
    assert any(cells[:3] == ["shop:17", "2026-11-20 08:00", "import:pos"] for cells in merges.values()), merges

    revealed = invoke("customer", "pos:88", "--reveal", "-c", project.config).output
    rows = table_rows(revealed, "identifiers: 4", "merged into this person")
    assert rows["phone"][0] == "+8613800138000" and rows["email"][0] == "ana.li@example.com"


def test_customer_json_carries_identifiers_and_merges(project, engine):
    seed_customers(engine, count=1, now=TICK_NOW)
    add_identifiers(engine, "C00000", [("phone", "+8613800138000", "pos", True)])
    data = json.loads(invoke("customer", "13800138000", "--json", "-c", project.config).output)
    assert data["customer"]["external_id"] == "C00000"
    assert [(i["kind"], i["value"], i["verified"]) for i in data["identifiers"]] == [
        ("phone", "+86*******8000", True)]
    assert data["merges"] == []
    revealed = json.loads(invoke("customer", "phone:+8613800138000", "--json", "--reveal", "-c", project.config).output)
    assert revealed["identifiers"][0]["value"] == "+8613800138000"
    assert revealed["identifiers"][0]["first_seen_at"].startswith("2026-11-20T08:00")


def test_an_identifier_nobody_holds_is_not_found(project, engine):
    seed_customers(engine, count=1, now=TICK_NOW)
    for reference in ("phone:+8613900000000", "email:nobody@example.com", "phone:not-a-number"):
        result = invoke("customer", reference, "-c", project.config)
        assert_no_crash(result)
        assert result.exit_code == 1 and "not found" in result.output, result.output
