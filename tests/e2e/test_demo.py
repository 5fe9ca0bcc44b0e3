"""``nurture demo`` end to end on a copy of the repository's config.toml and templates/:
generate, import, one in-process tick, and files in the outbox matching the ledger."""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections import Counter
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from workers.cli import app

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Where the repository's config.toml puts each outbox channel, relative to the file.
CHANNEL_DIRS = {"email": "var/outbox", "sms": "var/outbox-sms"}
CHANNEL_SUFFIX = {"email": ".eml", "sms": ".txt"}


@pytest.fixture
def demo_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repo's config and templates; the working directory is elsewhere, to
    show that every relative path is resolved against the config file."""
    for name in ("NURTURE_DATABASE_URL", "NURTURE_BROKER_URL", "NURTURE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO_ROOT / "config.toml", root / "config.toml")
    shutil.copytree(REPO_ROOT / "templates", root / "templates")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return root


def run_demo(root: Path) -> Result:
    result = CliRunner().invoke(app, ["demo", "-c", str(root / "config.toml"), "--customers", "300"])
    assert "Traceback" not in result.output
    assert result.exception is None, repr(result.exception)
    assert result.exit_code == 0, result.output
    return result


def ledger(root: Path) -> Counter[tuple[str, str, str]]:
    """(campaign, channel, status) -> deliveries, straight from the SQLite file."""
    with sqlite3.connect(root / "var" / "nurture.db") as conn:
        rows = conn.execute("SELECT campaign, channel, status, count(*) FROM delivery GROUP BY 1, 2, 3").fetchall()
    conn.close()
    return Counter({(campaign, channel, status): count for campaign, channel, status, count in rows})


def emails_by_send_key(root: Path) -> dict[str, str]:
    """send_key -> the email address of the delivery's customer."""
    with sqlite3.connect(root / "var" / "nurture.db") as conn:
        rows = conn.execute(
            "SELECT d.send_key, c.email FROM delivery d JOIN customer c ON c.id = d.customer_id "
            "WHERE d.channel = 'email'"
        ).fetchall()
    conn.close()
    return dict(rows)


def table_rows(output: str) -> dict[tuple[str, str, str], int]:
    """The 'What was sent' table: (campaign, channel, status) -> messages."""
    rows = {}
    for line in output.split("What was sent", 1)[1].splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 5 and cells[3].isdigit():
            rows[(cells[0], cells[1], cells[2])] = int(cells[3])
    return rows


def planned(output: str) -> dict[str, int]:
    """campaign -> new deliveries, from the tick's "run NAME @ ...: N new deliveries" lines."""
    found = re.findall(r"^run (\S+) @ .*: (\d+) new deliveries$", output, flags=re.MULTILINE)
    return {campaign: int(count) for campaign, count in found}


def outbox_counts(root: Path) -> Counter[tuple[str, str]]:
    """(campaign, channel) -> files written by that channel's outbox."""
    counts: Counter[tuple[str, str]] = Counter()
    for channel, directory in CHANNEL_DIRS.items():
        base = root / directory
        if not base.exists():
            continue
        for path in base.rglob("*"):
            if path.is_file():
                assert path.suffix == CHANNEL_SUFFIX[channel], path
                assert path.parent.parent == base, path
                counts[(path.parent.name, channel)] += 1
    return counts


def test_demo_sends_to_the_outbox_exactly_what_the_ledger_records(demo_project):
    root = demo_project

    result = run_demo(root)

    # The ledger: deliveries were made, none failed or in flight; later steps of a
    # series wait queued for their day, and a step can be skipped by the send-time policy.
    counts = ledger(root)
    sent = Counter({(campaign, channel): n for (campaign, channel, status), n in counts.items() if status == "sent"})
    assert sum(sent.values()) > 0
    assert {status for (_, _, status) in counts} <= {"sent", "queued", "skipped"}, counts
    assert counts[("win_back", "email", "queued")] == sent[("win_back", "email")]  # the day-3 last call
    assert sent[("win_back", "email")] > 0  # a third of the demo customers have lapsed

    # The summary table shows the same counts as the ledger.
    assert "What was sent" in result.output
    assert table_rows(result.output) == {key: n for key, n in counts.items()}
    assert "customers    300 imported, 0 rejected" in result.output

    # One file per sent message, in the outbox folders next to the config file.
    assert (root / "var" / "outbox").is_dir()
    assert outbox_counts(root) == sent
    assert list(Path.cwd().iterdir()) == []  # nothing was written in the working directory

    # Every .eml is a parsable email addressed to the delivery's customer.
    recipients = emails_by_send_key(root)
    emails = list((root / "var" / "outbox").rglob("*.eml"))
    assert len(emails) == sum(n for (_, channel), n in sent.items() if channel == "email")
    for path in emails:
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        assert message["To"] and "@" in message["To"], path
        assert message["Subject"], path
        assert message["To"] == recipients[message["X-Nurture-Send-Key"]], path
    for path in (root / "var" / "outbox-sms").rglob("*.txt"):
        assert path.read_text(encoding="utf-8").startswith("To: +86"), path


def test_running_the_demo_twice_resets_its_data_and_gives_the_same_counts(demo_project):
    root = demo_project

    first = run_demo(root)
    first_ledger, first_files = ledger(root), outbox_counts(root)
    # Leftovers of an earlier run that the reset must remove.
    stale = root / "var" / "outbox" / "win_back" / "stale.eml"
    stale.write_text("To: old@example.com\nSubject: old\n\nold\n")

    second = run_demo(root)

    assert not stale.exists()
    assert ledger(root) == first_ledger
    assert outbox_counts(root) == first_files
    # The second run planned everything again from an empty ledger, not "0 new".
    assert planned(second.output) == planned(first.output)
    assert planned(first.output)["win_back"] > 0
    assert table_rows(second.output) == table_rows(first.output)
    assert sum(first_files.values()) == sum(n for (_, _, status), n in first_ledger.items() if status == "sent")
