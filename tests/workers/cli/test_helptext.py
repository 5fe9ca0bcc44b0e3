"""How ``--help`` is drawn (workers/cli/helptext.py): config table names in brackets are
kept, a docstring's line breaks do not break sentences, flags show no ``<bool>``.

Rendered through the Typer app on a console 300 columns wide: a paragraph whose source
line breaks survived would still span several lines there."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from workers.cli.main import app


def wide_help(*command: str) -> Result:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return result


def lines(result: Result) -> list[str]:
    return [" ".join(line.strip("│ ").split()) for line in result.output.splitlines()]


def test_config_table_names_in_brackets_are_not_taken_for_markup():
    assert any("on [profiles] cron." in line for line in lines(wide_help("profiles")))
    assert any("(Bearer key from [api] key_env)" in line for line in lines(wide_help("serve")))


def test_a_docstring_paragraph_is_one_flowing_paragraph():
    serve = lines(wide_help("serve"))
    overview = lines(wide_help())

    assert any("key_env), GET /health, SMS and WeChat callbacks, /u/ unsubscribe and preferences, /c/ clicks"
               in line for line in serve)
    assert any("run Run a campaign now, once: a one-off broadcast (trigger = { manual = true }) or an extra run "
               "of a cron campaign." in line for line in overview)


def test_flags_show_no_type_and_options_with_a_value_keep_theirs():
    for command in ((), ("run",), ("scheduler",), ("audience",)):
        assert "<bool>" not in wide_help(*command).output, command
    scheduler = lines(wide_help("scheduler"))
    assert any(line.startswith("--once Run one tick and exit.") for line in scheduler)
    assert any(line.startswith("--config -c <path> Path to config.toml.") for line in scheduler)
