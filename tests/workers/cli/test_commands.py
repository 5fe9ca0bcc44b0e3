"""The ``nurture`` commands through the Typer app: import, scheduler, status, worker,
resume and help, each on a throwaway project in ``tmp_path`` (SQLite file, stub broker,
outbox channels writing into ``tmp_path``)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from campaigns.store.db import make_engine
from campaigns.store.models import CampaignState, Customer, Delivery, Order
from tests.conftest import TICK_NOW, seed_customers
from workers.cli import demo, sending, setup
from workers.cli.main import app

#: Just after win_back's 10:00 Asia/Shanghai slot (02:00 UTC).
NOW_ARG = TICK_NOW.isoformat()


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def assert_no_crash(result: Result) -> None:
    """A user mistake must end in a message and an exit code, never in a traceback."""
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def flat(text: str) -> str:
    """Rich help boxes and wrapping removed, whitespace collapsed."""
    for char in "│╭╮╰╯─":
        text = text.replace(char, " ")
    return " ".join(text.split())


@dataclass
class Project:
    root: Path
    config: Path
    database_url: str
    outbox: Path
    outbox_sms: Path

    def engine(self) -> sa.Engine:
        return make_engine(self.database_url)

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path


@pytest.fixture(autouse=True)
def _no_operator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NURTURE_DATABASE_URL", "NURTURE_BROKER_URL", "NURTURE_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Project]:
    def write(database_url: str, *, broker_url: str = "stub://") -> Project:
        templates = tmp_path / "templates" / "win_back"
        templates.mkdir(parents=True, exist_ok=True)
        (templates / "miss_you.subject.j2").write_text("We miss you, {{ customer.name }}\n")
        (templates / "miss_you.txt.j2").write_text(
            "Hi {{ customer.name }}, you ordered {{ stats.orders_count }} time(s).\n"
        )
        (templates / "miss_you.sms.j2").write_text("{{ customer.name }}: 15% off, code WELCOMEBACK\n")
        config = tmp_path / "config.toml"
        config.write_text(textwrap.dedent(f"""\
            [database]
            url = "{database_url}"

            [broker]
            url = "{broker_url}"
            batch_size = 3

            [worker]
            threads = 2
            backoff_base = "0s"
            backoff_cap = "0s"

            # Stated, off: `nurture run` sends at the real time (it has no --now), and the
            # default quiet hours would hold its messages back from 21:00 to 08:00 Shanghai.
            [compliance]
            quiet_hours = ""

            [templates]
            dir = "templates"

            [channels.email]
            kind = "outbox"
            dir = "out/email"
            recipient = "email"
            from = "Test Shop <shop@example.com>"

            [channels.sms]
            kind = "outbox"
            dir = "out/sms"
            recipient = "phone"

            [[campaigns]]
            name = "win_back"
            timezone = "Asia/Shanghai"
            trigger = {{ cron = "0 10 * * *" }}
            channels = ["email", "sms"]

              [campaigns.audience]
              min_orders = 1
              last_order_more_than_days = 90

              [[campaigns.steps]]
              template = "win_back/miss_you"
            """))
        return Project(tmp_path, config, database_url, tmp_path / "out" / "email", tmp_path / "out" / "sms")

    return write


@pytest.fixture
def project(make_project: Callable[..., Project], sqlite_url: str) -> Project:
    return make_project(sqlite_url)


@pytest.fixture
def engine(project: Project) -> Iterator[sa.Engine]:
    engine = project.engine()
    yield engine
    engine.dispose()


def customer_rows(engine: sa.Engine) -> dict[str, tuple[str | None, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Customer.external_id, Customer.name, Customer.email)).all()
    return {external_id: (name, email) for external_id, name, email in rows}


# --------------------------------------------------------------------------- import

CUSTOMERS_CSV = """
customer_id,name,email,timezone
A1,Ann,ann@example.com,Asia/Shanghai
A2,Bob,not-an-email,
,No Id,noid@example.com,
A3,Cy,cy@example.com,Mars/Base
A4,Di,di@example.com,UTC
A5,Ed,ed@example.com
A6,Flo,flo@example.com,Europe/Paris
"""
#: line -> a word the reason must contain (line 1 is the header).
BAD_CUSTOMER_LINES = {3: "email", 4: "customer_id", 5: "timezone", 7: "fields"}
GOOD_CUSTOMERS = {"A1": ("Ann", "ann@example.com"), "A4": ("Di", "di@example.com"),
                  "A6": ("Flo", "flo@example.com")}


def test_import_customers_lists_each_bad_row_by_file_and_line_and_keeps_the_good_ones(project, engine):
    file = project.write("customers.csv", CUSTOMERS_CSV)

    result = invoke("import", "customers", file, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 3, result.output
    assert "3 imported, 4 rejected of 7 rows" in result.output
    listed = {}
    for line in result.output.splitlines():
        prefix = f"{file}:"
        if line.strip().startswith(prefix):
            number, _, reason = line.strip()[len(prefix):].partition(": ")
            listed[int(number)] = reason
    assert sorted(listed) == sorted(BAD_CUSTOMER_LINES)
    for number, word in BAD_CUSTOMER_LINES.items():
        assert word in listed[number], (number, listed[number])
    # The bad time zone is named; the bad email is not echoed (nothing personal in output)
    assert "not-an-email" not in result.output and "'Mars/Base'" in listed[5]
    assert customer_rows(engine) == GOOD_CUSTOMERS


def test_import_customers_json_report_parses_and_has_the_rejected_lines(project, engine):
    file = project.write("customers.csv", CUSTOMERS_CSV)

    result = invoke("import", "customers", file, "-c", project.config, "--json")

    assert_no_crash(result)
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert report["kind"] == "customers"
    assert (report["rows_read"], report["imported"], report["rejected_count"]) == (7, 3, 4)
    assert [entry["line"] for entry in report["rejected"]] == sorted(BAD_CUSTOMER_LINES)
    for entry in report["rejected"]:
        assert BAD_CUSTOMER_LINES[entry["line"]] in entry["reason"]
    assert customer_rows(engine) == GOOD_CUSTOMERS


def test_re_importing_customers_updates_instead_of_duplicating(project, engine):
    file = project.write("customers.csv", CUSTOMERS_CSV)

    first = invoke("import", "customers", file, "-c", project.config, "--json")
    second = invoke("import", "customers", file, "-c", project.config, "--json")

    assert (first.exit_code, second.exit_code) == (3, 3)
    assert json.loads(second.stdout) == json.loads(first.stdout)
    assert customer_rows(engine) == GOOD_CUSTOMERS
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Customer)).scalar() == 3

    # A changed value in a re-import updates the row in place.
    changed = project.write("customers2.csv", """
        customer_id,name
        A1,Ann Lee
        """)
    third = invoke("import", "customers", changed, "-c", project.config)
    assert third.exit_code == 0, third.output
    assert customer_rows(engine) == {**GOOD_CUSTOMERS, "A1": ("Ann Lee", "ann@example.com")}


def test_import_of_a_clean_file_exits_0(project, engine):
    file = project.write("ok.jsonl", """
        {"customer_id": "J1", "email": "j1@example.com"}
        {"customer_id": "J2", "name": "Jo"}
        """)

    result = invoke("import", "customers", file, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    assert "2 imported, 0 rejected of 2 rows" in result.output
    assert customer_rows(engine) == {"J1": (None, "j1@example.com"), "J2": ("Jo", None)}


def test_import_of_a_missing_file_is_a_clear_error(project, engine):
    missing = project.root / "nope.csv"

    result = invoke("import", "customers", missing, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 1
    assert f"{missing}: file not found" in result.output
    assert customer_rows(engine) == {}


def test_import_orders_lists_the_unknown_customers(project, engine):
    customers = project.write("customers.csv", """
        customer_id,email
        K1,k1@example.com
        K2,k2@example.com
        """)
    orders = project.write("orders.csv", """
        order_id,customer_id,ordered_at,amount
        O1,K1,2025-01-01,10
        O2,GHOST-1,2025-01-02,5
        O3,K2,2025-01-03,7.5
        O4,GHOST-2,2025-01-04,1
        """)
    assert invoke("import", "customers", customers, "-c", project.config).exit_code == 0

    result = invoke("import", "orders", orders, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 3, result.output
    assert "orders: 2 imported, 2 rejected of 4 rows" in result.output
    assert f"{orders}:3: customer_id 'GHOST-1' not found" in result.output
    assert f"{orders}:5: customer_id 'GHOST-2' not found" in result.output
    assert "'K1' not found" not in result.output and "'K2' not found" not in result.output
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(Order.order_id, Order.amount)).all())
    assert stored == {"O1": 10.0, "O3": 7.5}


# --------------------------------------------------------------------------- scheduler and status


def seed_lapsed(engine: sa.Engine) -> list[str]:
    """10 customers, 4 lapsed (C00000-C00003); C00003 has no email, so gets an SMS."""
    groups = seed_customers(engine, count=10, now=TICK_NOW, lapsed_share=0.4)
    assert groups["lapsed"] == ["C00000", "C00001", "C00002", "C00003"]
    with engine.begin() as conn:
        conn.execute(sa.update(Customer).where(Customer.external_id == "C00003").values(email=None))
    return groups["lapsed"]


def outbox_files(project: Project) -> tuple[list[Path], list[Path]]:
    emails = sorted(project.outbox.rglob("*.eml")) if project.outbox.exists() else []
    texts = sorted(project.outbox_sms.rglob("*.txt")) if project.outbox_sms.exists() else []
    return emails, texts


def test_scheduler_once_writes_one_file_per_targeted_customer_and_a_second_run_nothing(project, engine):
    seed_lapsed(engine)

    first = invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config)

    assert_no_crash(first)
    assert first.exit_code == 0, first.output
    assert "run win_back @ 2026-03-02 02:00 UTC: 4 new deliveries" in first.output
    assert "enqueued 4 deliveries" in first.output
    emails, texts = outbox_files(project)
    assert len(emails) == 3 and len(texts) == 1
    assert {path.parent.name for path in emails + texts} == {"win_back"}
    parsed = [BytesParser(policy=policy.default).parsebytes(path.read_bytes()) for path in emails]
    assert sorted(message["To"] for message in parsed) == ["p0@example.com", "p1@example.com", "p2@example.com"]
    for message in parsed:
        number = message["To"].removeprefix("p").split("@")[0]
        assert message["Subject"] == f"We miss you, Test Person{number}"
        assert message["From"] == "Test Shop <shop@example.com>"
        assert "you ordered 1 time(s)" in message.get_content()
    sms = texts[0].read_text(encoding="utf-8")
    assert sms.startswith("To: +8613800000003\n")
    assert "Test Person3: 15% off" in sms

    second = invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config, "--json")

    assert_no_crash(second)
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout)
    assert report["runs"] == []
    assert report["enqueued_deliveries"] == 0 and report["enqueued_jobs"] == 0
    assert outbox_files(project) == (emails, texts)
    with engine.connect() as conn:
        assert conn.execute(sa.select(Delivery.status, sa.func.count()).group_by(Delivery.status)).all() == [
            ("sent", 4)
        ]


def test_scheduler_json_reports_the_run_it_planned(project, engine):
    seed_lapsed(engine)

    result = invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config, "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["now"] == NOW_ARG
    assert report["runs"] == [{"campaign": "win_back", "scheduled_at": "2026-03-02T02:00:00+00:00", "planned": 4}]
    assert report["enqueued_deliveries"] == 4
    assert report["enqueued_jobs"] == 2  # batch_size = 3


def test_scheduler_rejects_a_now_that_is_not_iso_8601(project):
    result = invoke("scheduler", "--once", "--now", "yesterday-ish", "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 2  # a usage error
    assert "'yesterday-ish' is not an ISO 8601 time" in flat(result.output)
    assert outbox_files(project) == ([], [])


def test_status_json_reports_sent_counts_per_campaign_and_channel(project, engine):
    seed_lapsed(engine)
    assert invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config).exit_code == 0

    result = invoke("status", "-c", project.config, "--json")

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "deliveries": [
            {"campaign": "win_back", "channel": "email", "status": "sent", "count": 3},
            {"campaign": "win_back", "channel": "sms", "status": "sent", "count": 1},
        ],
        "held_back": [],
        "paused": [],
    }
    table = invoke("status", "-c", project.config)
    assert table.exit_code == 0
    rows = [" ".join(flat(line).split()) for line in table.output.splitlines() if "win_back" in line]
    assert rows == ["win_back email sent 3", "win_back sms sent 1"]


def test_status_on_an_empty_database_reports_nothing(project):
    result = invoke("status", "-c", project.config, "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"deliveries": [], "held_back": [], "paused": []}


# --------------------------------------------------------------------------- worker, errors, resume


def test_worker_with_the_stub_broker_explains_that_it_is_in_process(project):
    result = invoke("worker", "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 1
    text = flat(result.output)
    assert "stub://" in text and "in-process" in text
    assert "nurture scheduler" in text and "redis://" in text


def test_worker_with_a_missing_config_says_so(tmp_path):
    result = invoke("worker", "-c", tmp_path / "absent.toml")

    assert_no_crash(result)
    assert result.exit_code == 1
    assert "absent.toml: file not found" in result.output


@pytest.mark.parametrize("command", [
    ["status"],
    ["status", "--json"],
    ["scheduler", "--once", "--now", NOW_ARG],
    ["resume", "win_back"],
])
def test_an_unreachable_database_is_exit_2_and_a_message(make_project, command):
    project = make_project("postgresql://postgres@127.0.0.1:1/x")

    result = invoke(*command, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 2, result.output
    assert "database error" in result.output
    assert "127.0.0.1" in result.output
    assert outbox_files(project) == ([], [])


def test_import_into_an_unreachable_database_is_exit_2(make_project):
    project = make_project("postgresql://postgres@127.0.0.1:1/x")
    file = project.write("customers.csv", CUSTOMERS_CSV)

    result = invoke("import", "customers", file, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 2
    assert "database error" in result.output


def test_resume_of_a_campaign_that_is_not_paused_says_so(project, engine):
    result = invoke("resume", "win_back", "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 0
    assert "win_back was not paused" in result.output
    assert "resumed" not in result.output


def test_resume_of_a_paused_campaign_unpauses_it(project, engine):
    with engine.begin() as conn:
        conn.execute(sa.insert(CampaignState).values(
            campaign="win_back", paused=True, paused_reason="provider said halt: account suspended"))
    status = json.loads(invoke("status", "-c", project.config, "--json").stdout)
    assert status["paused"] == [{"campaign": "win_back", "reason": "provider said halt: account suspended"}]

    result = invoke("resume", "win_back", "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 0
    assert "resumed win_back" in result.output
    assert json.loads(invoke("status", "-c", project.config, "--json").stdout)["paused"] == []
    again = invoke("resume", "win_back", "-c", project.config)
    assert "win_back was not paused" in again.output


# --------------------------------------------------------------------------- help


def first_line(func: Callable[..., object]) -> str:
    assert func.__doc__
    return func.__doc__.strip().splitlines()[0].strip()


def test_top_level_help_lists_every_command_with_its_help():
    result = invoke("--help")

    assert result.exit_code == 0
    text = flat(result.output)
    assert "lifecycle marketing automation" in text
    for name, func in {"check": setup.check, "scheduler": sending.scheduler, "worker": sending.worker,
                       "status": sending.status, "resume": sending.resume, "demo": demo.demo}.items():
        assert f"{name} {first_line(func)}" in text, name
    assert "db Database schema (Alembic migrations)." in text
    assert "import Import customers, orders or events from CSV or JSONL." in text


def test_import_help_lists_the_three_kinds_with_their_help():
    result = invoke("import", "--help")

    assert result.exit_code == 0
    text = flat(result.output)
    assert "Import customers, orders or events from CSV or JSONL." in text
    assert "customers Import (upsert) customers keyed by customer_id." in text
    assert "orders Import (upsert) orders keyed by order_id, with optional items." in text
    assert "events Import events (deduplicated on event_id or content)." in text
    assert "scheduler" not in text


def test_audience_dry_run_counts_and_sends_nothing(project, engine):
    lapsed = seed_lapsed(engine)

    result = invoke("audience", "win_back", "--now", NOW_ARG, "-c", project.config, "--json")

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["matched"] == report["reachable"] == len(lapsed)
    assert report["by_channel"] == {"email": 3, "sms": 1}
    assert sorted(row["external_id"] for row in report["sample"]) == lapsed
    assert outbox_files(project) == ([], [])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar() == 0


def test_audience_where_takes_an_expression_and_reports_its_errors(project, engine):
    seed_lapsed(engine)
    invoke("profiles", "--as-of", NOW_ARG, "-c", project.config)

    ok = invoke("audience", "--where", 'stage == "churned" or stage == "at_risk"', "-c", project.config, "--json")
    bad = invoke("audience", "--where", "stagee == 1", "-c", project.config)

    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["matched"] == 4  # the lapsed ones: last order 120-400 days ago
    assert_no_crash(bad)
    assert bad.exit_code == 1
    assert "unknown field 'stagee' at column 1 (did you mean 'stage'?)" in flat(bad.output)


def add_broadcast(project: Project) -> None:
    """Append a manual one-off broadcast to everyone with an order."""
    with project.config.open("a") as handle:
        handle.write(textwrap.dedent("""
            [[campaigns]]
            name = "spring_sale"
            trigger = { manual = true }
            channels = ["email", "sms"]
            holdout = 0.5
              [campaigns.audience]
              min_orders = 1
              [[campaigns.steps]]
              template = "win_back/miss_you"
            """))


def test_run_sends_a_manual_broadcast_once_and_report_shows_the_holdout(project, engine):
    seed_customers(engine, count=10, now=TICK_NOW, lapsed_share=0.4)
    add_broadcast(project)

    first = invoke("run", "spring_sale", "-c", project.config, "--json")
    again = invoke("run", "spring_sale", "-c", project.config)
    report = invoke("report", "campaign", "spring_sale", "-c", project.config, "--json")
    unknown = invoke("run", "nope", "-c", project.config)

    assert_no_crash(first)
    assert first.exit_code == 0, first.output
    planned = json.loads(first.stdout)["runs"][0]["planned"]
    data = json.loads(report.stdout)
    assert data["enrolled"] + data["held_out"] == 10
    assert 0 < data["held_out"] < 10  # half, deterministically, of ten
    assert planned == data["enrolled"] == data["sent"]
    assert "nothing more to send" in again.output
    emails, texts = outbox_files(project)
    assert len(emails) + len(texts) == data["sent"]
    assert unknown.exit_code == 1 and "no campaign named 'nope'" in flat(unknown.output)


def test_report_campaign_table_shows_lift_as_not_available_without_a_holdout(project, engine):
    seed_lapsed(engine)
    invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config)

    result = invoke("report", "campaign", "win_back", "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "enrolled (treated) 4" in text and "held out 0" in text and "n/a (no holdout)" in text


def test_serve_refuses_several_processes_with_the_in_process_broker(project):
    # With stub:// the server's own threads send; a second process would have no workers.
    result = invoke("serve", "-c", project.config, "--workers", "2")
    assert result.exit_code == 1
    assert "--workers above 1 needs broker.url" in " ".join(result.output.split())
    assert "Traceback" not in result.output
