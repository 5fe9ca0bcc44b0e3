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

from workers.cli.main import app

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
    # The day-3 last call waits for every first message, sent or held back a day by the
    # frequency cap (for a higher-priority campaign's message to the same customer).
    with sqlite3.connect(root / "var" / "nurture.db") as conn:
        first, held, last_call = conn.execute(
            "SELECT sum(step = 0 AND status = 'sent'), sum(step = 0 AND status = 'queued'), "
            "sum(step = 1 AND status = 'queued') FROM delivery WHERE campaign = 'win_back' AND channel = 'email'"
        ).fetchone()
    conn.close()
    assert first == sent[("win_back", "email")]
    assert last_call == first + held
    assert sent[("win_back", "email")] > 0  # a third of the demo customers have lapsed

    # The summary table shows the same counts as the ledger.
    assert "What was sent" in result.output
    assert table_rows(result.output) == {key: n for key, n in counts.items()}
    # The customers come from two sources and end as one customer per person (issue #15).
    assert re.search(r"online customers +\d+ rows: .*, 0 rejected", result.output), result.output
    assert re.search(r"store  customers +\d+ rows: .*, 0 rejected", result.output), result.output
    with sqlite3.connect(root / "var" / "nurture.db") as conn:
        assert conn.execute("SELECT count(*) FROM customer").fetchone()[0] == 300
        # A catalogue, and order items naming its products (issue #17): only the one
        # discontinued sku of old orders is not in it, kept and reported by the import.
        assert conn.execute("SELECT count(*) FROM product").fetchone()[0] >= 30
        unknown = conn.execute("SELECT DISTINCT i.sku FROM order_item i LEFT JOIN product p ON p.sku = i.sku "
                               "WHERE p.id IS NULL").fetchall()
        items = conn.execute("SELECT count(*) FROM order_item").fetchone()[0]
    conn.close()
    assert items > 0 and unknown == [("TEA-HUANGSHAN-2024",)]
    assert re.search(r"^ +catalogue +\d+ products, 0 rejected", result.output, flags=re.MULTILINE), result.output
    assert "name a sku not in the catalogue (TEA-HUANGSHAN-2024" in result.output
    assert "one person, one customer: `nurture customer phone:+86" in result.output
    assert re.search(r"│ total +│ +300 │ +\d+ │ +\d+\.\d%", result.output), result.output

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
    # The reset removes the files its ledger records, and only those: a file the demo did
    # not write stays, and is all that is left before the second run writes again.
    not_the_demos = root / "var" / "outbox" / "win_back" / "not_the_demos.eml"
    not_the_demos.write_text("To: old@example.com\nSubject: old\n\nold\n")

    second = run_demo(root)

    assert not_the_demos.read_text() == "To: old@example.com\nSubject: old\n\nold\n"
    not_the_demos.unlink()
    assert ledger(root) == first_ledger
    assert outbox_counts(root) == first_files
    # The second run planned everything again from an empty ledger, not "0 new".
    assert planned(second.output) == planned(first.output)
    assert planned(first.output)["win_back"] > 0
    assert table_rows(second.output) == table_rows(first.output)
    assert sum(first_files.values()) == sum(n for (_, _, status), n in first_ledger.items() if status == "sent")


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> SHA-256 of every file under ``root/var``: the outbox by its bytes,
    the SQLite database by its content (``iterdump``). Not the database file's bytes, nor
    its ``-wal``/``-shm`` files: whichever connection closes last checkpoints the WAL into
    the file, so merely opening the database (as a refusal must, to count the customers)
    moves bytes between them without changing a row."""
    import hashlib
    import sqlite3

    def digest(path: Path) -> str:
        if path.suffix != ".db":
            return hashlib.sha256(path.read_bytes()).hexdigest()
        connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            return hashlib.sha256("\n".join(connection.iterdump()).encode()).hexdigest()
        finally:
            connection.close()

    return {
        str(path.relative_to(root)): digest(path)
        for path in sorted((root / "var").rglob("*"))
        if path.is_file() and not path.name.endswith(("-shm", "-wal"))
    }


def users_own_project(root: Path) -> tuple[int, int]:
    """The user's own data in the config's database: 200 customers, their orders and a
    ledger of deliveries written to the outbox by a real (clock-pinned) scheduler tick.
    Returns (customers, deliveries)."""
    from campaigns.store.db import make_engine, upgrade
    from tests.conftest import TICK_NOW, seed_customers

    (root / "var").mkdir()
    engine = make_engine(f"sqlite:///{root / 'var' / 'nurture.db'}")
    upgrade(engine)
    seed_customers(engine, count=200, now=TICK_NOW, lapsed_share=0.5)
    engine.dispose()
    # TICK_NOW is 10:05 in Shanghai: inside marketing hours, so the win-back run sends.
    tick = CliRunner().invoke(app, ["scheduler", "-c", str(root / "config.toml"), "--once",
                                    "--now", TICK_NOW.isoformat()])
    assert tick.exit_code == 0, tick.output
    with sqlite3.connect(root / "var" / "nurture.db") as conn:
        customers = conn.execute("SELECT count(*) FROM customer").fetchone()[0]
        deliveries = conn.execute("SELECT count(*) FROM delivery WHERE status = 'sent'").fetchone()[0]
    conn.close()
    return customers, deliveries


def refused(result: Result) -> str:
    """The demo's refusal: exit 2 and one clear line, no traceback, no address."""
    assert "Traceback" not in result.output
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "@" not in lines[0] and "+86" not in lines[0], lines[0]
    return lines[0]


def test_the_demo_refuses_a_database_holding_the_users_own_customers_and_ledger(demo_project):
    root = demo_project
    customers, deliveries = users_own_project(root)
    assert customers == 200 and deliveries > 0  # the lapsed half, less the holdout
    before = snapshot(root)
    assert any(name.startswith("var/outbox/") for name in before)  # the user's own sent mail

    result = CliRunner().invoke(app, ["demo", "-c", str(root / "config.toml"), "--customers", "300"])

    line = refused(result)
    assert "nurture.db" in line and "did not write" in line
    assert snapshot(root) == before  # database, WAL and outbox byte for byte as they were
    with sqlite3.connect(root / "var" / "nurture.db") as conn:
        assert conn.execute("SELECT count(*) FROM customer").fetchone()[0] == customers
        assert conn.execute("SELECT count(*) FROM delivery WHERE status = 'sent'").fetchone()[0] == deliveries
    conn.close()


def test_the_demo_refuses_a_database_it_created_once_the_user_added_their_own_customers(demo_project, tmp_path):
    root = demo_project
    run_demo(root)
    own = tmp_path / "own.csv"
    own.write_text("customer_id,name,email\nACME-1,Ann Lee,ann@acme.example\n")
    imported = CliRunner().invoke(app, ["import", "customers", str(own), "-c", str(root / "config.toml")])
    assert imported.exit_code == 0, imported.output
    before = snapshot(root)

    line = refused(CliRunner().invoke(app, ["demo", "-c", str(root / "config.toml"), "--customers", "300"]))

    assert "1 customer" in line
    assert snapshot(root) == before


def test_the_demo_leaves_outbox_files_alone_that_no_demo_database_records(demo_project):
    root = demo_project
    mine = root / "var" / "outbox" / "win_back" / "win_back_0_1_1.eml"
    mine.parent.mkdir(parents=True)
    mine.write_text("To: someone@example.com\nSubject: mine\n\nmine\n")

    line = refused(CliRunner().invoke(app, ["demo", "-c", str(root / "config.toml"), "--customers", "300"]))

    assert "outbox" in line
    assert mine.read_text() == "To: someone@example.com\nSubject: mine\n\nmine\n"
    assert not (root / "var" / "nurture.db").exists()


def test_the_demo_refuses_to_send_through_a_real_provider(demo_project, monkeypatch):
    root = demo_project
    config = root / "config.toml"
    config.write_text(config.read_text().replace(
        '[channels.sms]\nkind = "outbox"\ndir = "var/outbox-sms"',
        '[channels.sms]\nkind = "webhook"\nurl = "http://127.0.0.1:9/sms"\nsecret_env = "NURTURE_TEST_DEMO_SMS_SECRET"',
    ))
    monkeypatch.setenv("NURTURE_TEST_DEMO_SMS_SECRET", "whsec_ZGVtby1yZWZ1c2FsLXRlc3Qtc2lnbmluZy1rZXk=")

    line = refused(CliRunner().invoke(app, ["demo", "-c", str(config), "--customers", "300"]))

    assert "sms" in line and "outbox" in line
    assert not (root / "var").exists()
