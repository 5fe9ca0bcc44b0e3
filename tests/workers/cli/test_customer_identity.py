"""``nurture customer``: a command group whose default is ``show`` (issue #15), so
``nurture customer ID`` keeps working next to ``nurture customer merge ...``; and the
identifiers and merges ``nurture customer ID`` shows."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from tests.conftest import TICK_NOW, seed_customers
from tests.workers.cli.win_back import assert_no_crash, flat, invoke
from workers.cli.views import DefaultShowGroup


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
