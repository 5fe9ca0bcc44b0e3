"""`nurture forget CUSTOMER` (workers/cli/customers.py) through the Typer app: confirmation,
--yes, --json, an unknown customer, and the outbox files that held the customer's messages.

Apart from test_customers.py: its project (five lapsed customers already messaged, the
installation secret set) and its ``invoke`` (typing answers) are its own."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from campaigns.store.db import make_engine
from campaigns.store.models import Customer, Delivery
from tests.conftest import TICK_NOW, seed_customers
from workers.cli.main import app


@pytest.fixture(autouse=True)
def _no_operator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NURTURE_DATABASE_URL", "NURTURE_BROKER_URL", "NURTURE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NURTURE_SECRET", "installation-secret-for-tests")


def invoke(*args: object, input: str | None = None) -> Result:
    result = CliRunner().invoke(app, [str(arg) for arg in args], input=input)
    # A user mistake ends in a message and an exit code, never in a traceback.
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


@pytest.fixture
def project(tmp_path: Path, sqlite_url: str) -> Path:
    """Five lapsed customers messaged by outbox email, files under tmp_path/out."""
    (tmp_path / "templates" / "win_back").mkdir(parents=True)
    (tmp_path / "templates" / "win_back" / "miss_you.subject.j2").write_text("We miss you, {{ customer.name }}")
    (tmp_path / "templates" / "win_back" / "miss_you.txt.j2").write_text("Hi {{ customer.name }}")
    config = tmp_path / "config.toml"
    config.write_text(textwrap.dedent(f"""\
        [database]
        url = "{sqlite_url}"
        [profiles]
        cron = ""
        [channels.email]
        kind = "outbox"
        dir = "out"
        recipient = "email"
        [[campaigns]]
        name = "win_back"
        purpose = "transactional"
        timezone = "Asia/Shanghai"
        trigger = {{ cron = "0 10 * * *" }}
        channels = ["email"]
          [campaigns.audience]
          min_orders = 1
          last_order_more_than_days = 90
          [[campaigns.steps]]
          template = "win_back/miss_you"
        """))
    engine = make_engine(sqlite_url)
    seed_customers(engine, count=10, now=TICK_NOW, lapsed_share=0.5)
    engine.dispose()
    result = invoke("scheduler", "--once", "--now", TICK_NOW.isoformat(), "-c", config)
    assert result.exit_code == 0, result.output
    return config


def outbox_texts(config: Path) -> list[str]:
    return [path.read_text() for path in sorted((config.parent / "out" / "win_back").glob("*.eml"))]


def customer(config: Path, customer_id: int) -> sa.Row:
    engine = make_engine(f"sqlite:///{config.parent / 'nurture.db'}")
    with engine.connect() as conn:
        row = conn.execute(sa.select(Customer).where(Customer.id == customer_id)).one()
    engine.dispose()
    return row


def customer_id_of(config: Path, external_id: str) -> int:
    engine = make_engine(f"sqlite:///{config.parent / 'nurture.db'}")
    with engine.connect() as conn:
        found = conn.execute(sa.select(Customer.id).where(Customer.external_id == external_id)).scalar_one()
        sent = conn.execute(sa.select(sa.func.count()).select_from(Delivery).where(Delivery.status == "sent")).scalar_one()
    engine.dispose()
    assert sent == 5
    return found


def test_forget_asks_first_and_changes_nothing_when_told_no(project: Path) -> None:
    target = customer_id_of(project, "C00003")
    result = invoke("forget", "C00003", "-c", project, input="n\n")
    assert result.exit_code == 1
    assert "Erase the personal data of customer C00003? This cannot be undone." in result.stderr
    assert "nothing was changed" in result.stderr
    assert customer(project, target).email == "p3@example.com"
    assert sum("p3@example.com" in text for text in outbox_texts(project)) == 1


def test_forget_after_yes_erases_the_customer_and_their_outbox_file(project: Path) -> None:
    target = customer_id_of(project, "C00003")
    result = invoke("forget", "C00003", "-c", project, input="y\n")
    assert result.exit_code == 0, result.output
    assert "forgotten C00003 (now forgotten:" in result.stdout
    assert "1 outbox file(s) removed" in result.stdout
    row = customer(project, target)
    assert row.external_id.startswith("forgotten:")
    assert (row.name, row.email, row.phone, row.attributes) == (None, None, None, {})
    texts = outbox_texts(project)
    assert len(texts) == 4 and not any("p3@example.com" in text or "Test Person3" in text for text in texts)


def test_forget_yes_json_needs_no_prompt_and_prints_the_report(project: Path) -> None:
    target = customer_id_of(project, "C00001")
    result = invoke("forget", "C00001", "-c", project, "--yes", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["customer"] == "C00001"
    assert report["customer_id"] == target
    assert report["placeholder"].startswith("forgotten:")
    assert report["consents_withdrawn"] == 3
    assert report["outbox_files_removed"] == 1
    assert "Erase" not in result.output  # no prompt with --yes


@pytest.mark.parametrize("extra", [[], ["--yes"], ["--json", "--yes"]])
def test_an_unknown_customer_is_a_clear_error_before_any_prompt(project: Path, extra: list[str]) -> None:
    result = invoke("forget", "nobody", "-c", project, *extra)
    assert result.exit_code == 1
    assert "no customer with customer_id 'nobody'" in result.stderr
    assert "Erase" not in result.output


def test_a_forgotten_customer_cannot_be_forgotten_again_by_their_old_id(project: Path) -> None:
    assert invoke("forget", "C00003", "-c", project, "--yes").exit_code == 0
    result = invoke("forget", "C00003", "-c", project, "--yes")
    assert result.exit_code == 1
    assert "no customer with customer_id 'C00003'" in result.stderr


@pytest.mark.parametrize("value", [None, "short"])
def test_forget_refuses_without_the_installation_secret(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                         value: str | None) -> None:
    # Digests kept without a key would give the phone number back by brute force.
    if value is None:
        monkeypatch.delenv("NURTURE_SECRET")
    else:
        monkeypatch.setenv("NURTURE_SECRET", value)
    target = customer_id_of(project, "C00003")
    result = invoke("forget", "C00003", "-c", project, "--yes")
    assert result.exit_code == 2
    assert "NURTURE_SECRET" in result.stderr and "nothing was changed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "p3@example.com" not in result.output
    assert customer(project, target).email == "p3@example.com"


def test_a_missing_config_is_reported_like_other_commands(tmp_path: Path) -> None:
    result = invoke("forget", "C00003", "-c", tmp_path / "absent.toml", "--yes")
    assert result.exit_code == 1
    assert "file not found" in result.stderr


def test_forget_is_listed_in_the_help() -> None:
    result = invoke("--help")
    assert "forget" in result.output
    result = invoke("forget", "--help")
    assert "--yes" in result.output and "--json" in result.output and "--config" in result.output
