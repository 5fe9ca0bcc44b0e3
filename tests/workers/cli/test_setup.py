"""Tests for ``nurture check`` through the Typer app."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from workers.cli.main import app

REPO_ROOT = Path(__file__).resolve().parents[3]


def line_of(text: str, marker: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"marker {marker!r} not in the test's TOML")


def flat(text: str) -> str:
    """Collapse whitespace: rich wraps long lines at the console width."""
    return " ".join(text.split())


BROKEN = textwrap.dedent(
    """\
    [scheduler]
    interval = "2x"

    [channels.email]
    kind = "outbox"

    [channels.hook]
    kind = "webhook"
    url = "https://example.com/hook"
    secret = "x"

    [[campaigns]]
    name = "one"
    timezone = "Nowhere/Land"
    trigger = { cron = "99 * * * *" }
    channels = ["email", "fax"]

      [[campaigns.steps]]
      template = "t/absent"
    """
)

EXPECTED = {
    "scheduler.interval": line_of(BROKEN, '"2x"'),
    "channels.hook.secret": line_of(BROKEN, "secret ="),
    "campaigns[0].timezone": line_of(BROKEN, "Nowhere/Land"),
    "campaigns[0].trigger.cron": line_of(BROKEN, "99 * * * *"),
    "campaigns[0].channels[1]": line_of(BROKEN, '"fax"'),
    "campaigns[0].steps[0].template": line_of(BROKEN, "t/absent"),
}

UNDEFINED = textwrap.dedent(
    """\
    [channels.email]
    kind = "outbox"

    [[campaigns]]
    name = "good"
    trigger = { cron = "0 10 * * *" }
    channels = ["email"]

      [[campaigns.steps]]
      template = "demo/fine"

    [[campaigns]]
    name = "bad"
    trigger = { cron = "0 10 * * *" }
    channels = ["email"]

      [[campaigns.steps]]
      template = "demo/fine"

      [[campaigns.steps]]
      template = "demo/broken"
    """
)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # A relative config path keeps "config.toml:LINE:" short and free of wrapping.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NURTURE_CONFIG", raising=False)
    monkeypatch.delenv("NURTURE_DATABASE_URL", raising=False)
    monkeypatch.delenv("NURTURE_BROKER_URL", raising=False)
    return tmp_path


def test_check_broken_config_lists_every_error(runner: CliRunner, in_tmp: Path) -> None:
    (in_tmp / "config.toml").write_text(BROKEN, encoding="utf-8")
    result = runner.invoke(app, ["check", "--config", "config.toml"])
    assert result.exit_code == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = flat(result.stderr)
    assert f"{len(EXPECTED)} error(s)" in text
    for key, line in EXPECTED.items():
        assert f"config.toml:{line}: {key}:" in text, (key, line, result.stderr)
    assert "unknown key" in text
    assert "unknown channel 'fax'" in text


def test_check_json_reports_errors(runner: CliRunner, in_tmp: Path) -> None:
    (in_tmp / "config.toml").write_text(BROKEN, encoding="utf-8")
    result = runner.invoke(app, ["check", "-c", "config.toml", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["templates_rendered"] == 0
    found = {error["key"]: error for error in report["errors"]}
    assert set(found) == set(EXPECTED)
    for key, line in EXPECTED.items():
        assert found[key]["line"] == line
        assert found[key]["file"] == "config.toml"
        assert found[key]["message"]


def test_check_json_syntax_error(runner: CliRunner, in_tmp: Path) -> None:
    (in_tmp / "config.toml").write_text('[broker]\nurl = "stub://"\nbatch_size = = 1\n', encoding="utf-8")
    result = runner.invoke(app, ["check", "-c", "config.toml", "--json"])
    assert result.exit_code == 1
    [error] = json.loads(result.stdout)["errors"]
    assert error["line"] == 3
    assert error["message"].startswith("TOML syntax error")


def test_check_missing_file(runner: CliRunner, in_tmp: Path) -> None:
    result = runner.invoke(app, ["check", "-c", "nope.toml"])
    assert result.exit_code == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "nope.toml: file not found" in flat(result.stderr)


def test_check_reports_template_with_undefined_variable(runner: CliRunner, in_tmp: Path) -> None:
    demo = in_tmp / "templates" / "demo"
    demo.mkdir(parents=True)
    (demo / "fine.txt.j2").write_text("Hi {{ customer.first_name }}\n", encoding="utf-8")
    (demo / "broken.txt.j2").write_text("Hi\n{{ customer.favourite_tea }}\n", encoding="utf-8")
    (in_tmp / "config.toml").write_text(UNDEFINED, encoding="utf-8")

    result = runner.invoke(app, ["check", "-c", "config.toml", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    [error] = report["errors"]
    assert error["key"] == "campaigns[1].steps[1].template"
    assert error["line"] == line_of(UNDEFINED, '"demo/broken"')
    assert "demo/broken.txt.j2:2" in error["message"]
    assert "favourite_tea" in error["message"]
    assert report["templates_rendered"] == 2

    result = runner.invoke(app, ["check", "-c", "config.toml"])
    assert result.exit_code == 1
    assert "Traceback" not in result.stdout + result.stderr
    line = line_of(UNDEFINED, '"demo/broken"')
    assert f"config.toml:{line}: campaigns[1].steps[1].template:" in flat(result.stderr)


def test_check_ok_config_in_tmp(runner: CliRunner, in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_SECRET", "an-installation-secret")
    monkeypatch.setenv("NURTURE_LINK_SECRET", "a-link-secret")
    demo = in_tmp / "templates" / "demo"
    demo.mkdir(parents=True)
    # Marketing email: each body has its unsubscribe link, else check warns.
    (demo / "fine.txt.j2").write_text("Hi {{ customer.first_name }}\n{{ unsubscribe_url }}\n", encoding="utf-8")
    (demo / "broken.txt.j2").write_text("Hi {{ customer.attributes.favourite_tea or 'tea' }}\n"
                                        "{{ preferences_url }}\n", encoding="utf-8")
    (in_tmp / "config.toml").write_text('[api]\npublic_url = "https://t.example.com"\n\n' + UNDEFINED,
                                        encoding="utf-8")
    result = runner.invoke(app, ["check", "-c", "config.toml", "--json"])
    assert result.exit_code == 0, result.stdout
    report = json.loads(result.stdout)
    assert report == {"ok": True, "errors": [], "warnings": [], "templates_rendered": 3}


def test_check_says_the_installation_secret_is_unset(runner: CliRunner, in_tmp: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NURTURE_SECRET", raising=False)
    (in_tmp / "config.toml").write_text("", encoding="utf-8")
    result = runner.invoke(app, ["check", "-c", "config.toml", "--json"])
    assert result.exit_code == 0, result.stdout
    [warning] = json.loads(result.stdout)["warnings"]
    assert warning.startswith("security.secret_env: environment variable NURTURE_SECRET is not set")
    monkeypatch.setenv("NURTURE_SECRET", "short")
    [warning] = json.loads(runner.invoke(app, ["check", "-c", "config.toml", "--json"]).stdout)["warnings"]
    assert "NURTURE_SECRET is shorter than 16 characters" in warning


def test_check_repo_config_passes(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.delenv("NURTURE_CONFIG", raising=False)
    monkeypatch.delenv("NURTURE_DATABASE_URL", raising=False)
    monkeypatch.delenv("NURTURE_BROKER_URL", raising=False)
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "error" not in result.stderr.lower()
    assert "config.toml" in result.stdout

    result = runner.invoke(app, ["check", "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["errors"] == []
    assert report["templates_rendered"] >= 1
