"""Engagement in ``campaign_report`` (and ``nurture report campaign``) against counts worked
out by hand. Responses are inserted directly, as the receivers would have recorded them.

Campaign ``promo``: step 0 (no variants), step 1 with variants A (0) and B (1); channels
``mail`` and ``text``. One customer per message. Responses per message ("opened x3" is
three distinct opens of the same message)::

    group              message  status   responses
    0 - mail           m1       sent     delivered, opened x3, clicked x2
                       m2       sent     delivered, opened
                       m3       sent     undelivered, bounced
                       m4       sent     -
                       m5       failed   delivered            (not sent: not counted)
                       m6       queued   -
    0 - text           t1       sent     delivered, replied x2, unsubscribed
                       t2       sent     blocked, complained
                       t3       skipped  -
    1 A mail           a1       sent     delivered, opened, clicked, complained, unsubscribed
                                         (and an order of 40 after it: attributed here)
                       a2       sent     opened
    1 A text           q1       queued   -                    (sent 0: every rate None)
    1 B mail           b1       sent     clicked              (no open: CTO None)
                       b2       sent     delivered
                       b3       sent     delivered x2
    1 B text           s1       sent     -

Also stored and *not* counted: campaign ``other``'s message o1 (sent; opened, clicked,
replied), and an open and a reply matched to no delivery (``delivery_id`` NULL).

Per group ("nd" = not delivered: undelivered, bounced or blocked, once per message)::

    group     sent  deliv  nd  undel bounce block open click reply unsub compl
    0 - mail   4     2     1    1     1      0     2    1     0     0     0
    0 - text   2     1     1    0     0      1     0    0     1     1     1
    1 A mail   2     1     0    0     0      0     2    1     0     1     1
    1 A text   0     0     0    0     0      0     0    0     0     0     0
    1 B mail   3     2     0    0     0      0     0    1     0     0     0
    1 B text   1     0     0    0     0      0     0    0     0     0     0
    mail       9     5     1    1     1      0     4    3     0     1     1
    text       3     1     1    0     0      1     0    0     1     1     1
    campaign  12     6     2    1     1      1     4    3     1     2     2
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from campaigns.config.schema import AppConfig
from campaigns.project.loading import load_config
from campaigns.reports.campaign import ENGAGEMENT_KINDS, campaign_report
from campaigns.store.models import Customer, Delivery, Order, Response
from workers.cli.main import app

SENT_AT = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 5, 12, 0, tzinfo=UTC)

#: (name, campaign, step, variant, channel, status, response kinds)
MESSAGES: list[tuple[str, str, int, int | None, str, str, list[str]]] = [
    ("m1", "promo", 0, None, "mail", "sent", ["delivered", "opened", "opened", "opened", "clicked", "clicked"]),
    ("m2", "promo", 0, None, "mail", "sent", ["delivered", "opened"]),
    ("m3", "promo", 0, None, "mail", "sent", ["undelivered", "bounced"]),
    ("m4", "promo", 0, None, "mail", "sent", []),
    ("m5", "promo", 0, None, "mail", "failed", ["delivered"]),
    ("m6", "promo", 0, None, "mail", "queued", []),
    ("t1", "promo", 0, None, "text", "sent", ["delivered", "replied", "replied", "unsubscribed"]),
    ("t2", "promo", 0, None, "text", "sent", ["blocked", "complained"]),
    ("t3", "promo", 0, None, "text", "skipped", []),
    ("a1", "promo", 1, 0, "mail", "sent", ["delivered", "opened", "clicked", "complained", "unsubscribed"]),
    ("a2", "promo", 1, 0, "mail", "sent", ["opened"]),
    ("q1", "promo", 1, 0, "text", "queued", []),
    ("b1", "promo", 1, 1, "mail", "sent", ["clicked"]),
    ("b2", "promo", 1, 1, "mail", "sent", ["delivered"]),
    ("b3", "promo", 1, 1, "mail", "sent", ["delivered", "delivered"]),
    ("s1", "promo", 1, 1, "text", "sent", []),
    ("o1", "other", 0, None, "mail", "sent", ["opened", "clicked", "replied"]),
]

KINDS = ("delivered", "not_delivered", "undelivered", "bounced", "blocked", "opened", "clicked", "replied",
         "unsubscribed", "complained")
#: The table of the module docstring: group -> (sent, counts in the order of KINDS).
EXPECTED: dict[Any, tuple[int, tuple[int, ...]]] = {
    (0, None, "mail"): (4, (2, 1, 1, 1, 0, 2, 1, 0, 0, 0)),
    (0, None, "text"): (2, (1, 1, 0, 0, 1, 0, 0, 1, 1, 1)),
    (1, 0, "mail"): (2, (1, 0, 0, 0, 0, 2, 1, 0, 1, 1)),
    (1, 0, "text"): (0, (0, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
    (1, 1, "mail"): (3, (2, 0, 0, 0, 0, 0, 1, 0, 0, 0)),
    (1, 1, "text"): (1, (0, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
    "mail": (9, (5, 1, 1, 1, 0, 4, 3, 0, 1, 1)),
    "text": (3, (1, 1, 0, 0, 1, 0, 0, 1, 1, 1)),
    "campaign": (12, (6, 2, 1, 1, 1, 4, 3, 1, 2, 2)),
}
#: Rates worked out from that table (None where the denominator is 0).
RATES: dict[Any, dict[str, float | None]] = {
    (0, None, "mail"): {"delivery_rate": 2 / 4, "not_delivered_rate": 1 / 4, "open_rate": 2 / 4,
                        "click_rate": 1 / 4, "click_to_open_rate": 1 / 2, "reply_rate": 0.0,
                        "unsubscribe_rate": 0.0, "complaint_rate": 0.0},
    (0, None, "text"): {"delivery_rate": 1 / 2, "not_delivered_rate": 1 / 2, "open_rate": 0.0,
                        "click_rate": 0.0, "click_to_open_rate": None, "reply_rate": 1 / 2,
                        "unsubscribe_rate": 1 / 2, "complaint_rate": 1 / 2},
    (1, 0, "mail"): {"delivery_rate": 1 / 2, "not_delivered_rate": 0.0, "open_rate": 1.0, "click_rate": 1 / 2,
                     "click_to_open_rate": 1 / 2, "reply_rate": 0.0, "unsubscribe_rate": 1 / 2,
                     "complaint_rate": 1 / 2},
    (1, 0, "text"): {"delivery_rate": None, "not_delivered_rate": None, "open_rate": None, "click_rate": None,
                     "click_to_open_rate": None, "reply_rate": None, "unsubscribe_rate": None,
                     "complaint_rate": None},
    (1, 1, "mail"): {"delivery_rate": 2 / 3, "not_delivered_rate": 0.0, "open_rate": 0.0, "click_rate": 1 / 3,
                     "click_to_open_rate": None, "reply_rate": 0.0, "unsubscribe_rate": 0.0,
                     "complaint_rate": 0.0},
    (1, 1, "text"): {"delivery_rate": 0.0, "not_delivered_rate": 0.0, "open_rate": 0.0, "click_rate": 0.0,
                     "click_to_open_rate": None, "reply_rate": 0.0, "unsubscribe_rate": 0.0,
                     "complaint_rate": 0.0},
    "mail": {"delivery_rate": 5 / 9, "not_delivered_rate": 1 / 9, "open_rate": 4 / 9, "click_rate": 3 / 9,
             "click_to_open_rate": 3 / 4, "reply_rate": 0.0, "unsubscribe_rate": 1 / 9, "complaint_rate": 1 / 9},
    "text": {"delivery_rate": 1 / 3, "not_delivered_rate": 1 / 3, "open_rate": 0.0, "click_rate": 0.0,
             "click_to_open_rate": None, "reply_rate": 1 / 3, "unsubscribe_rate": 1 / 3, "complaint_rate": 1 / 3},
    "campaign": {"delivery_rate": 6 / 12, "not_delivered_rate": 2 / 12, "open_rate": 4 / 12, "click_rate": 3 / 12,
                 "click_to_open_rate": 3 / 4, "reply_rate": 1 / 12, "unsubscribe_rate": 2 / 12,
                 "complaint_rate": 2 / 12},
}

CONFIG_TOML = """
[database]
url = "{url}"
[channels.mail]
kind = "outbox"
recipient = "email"
dir = "out"
[channels.text]
kind = "outbox"
recipient = "phone"
dir = "out-sms"

[[campaigns]]
name = "promo"
trigger = {{ manual = true }}
channels = ["mail", "text"]
  [[campaigns.steps]]
  template = "t"
  [[campaigns.steps]]
  delay = "2d"
    [[campaigns.steps.variants]]
    template = "t"
    weight = 1
    [[campaigns.steps.variants]]
    template = "t"
    weight = 1

[[campaigns]]
name = "other"
trigger = {{ manual = true }}
channels = ["mail"]
  [[campaigns.steps]]
  template = "t"
"""


def write_project(tmp_path: Path, url: str) -> Path:
    """A config.toml with both campaigns (and the template they name) on ``url``."""
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "t.txt.j2").write_text("hi", encoding="utf-8")
    path = tmp_path / "config.toml"
    path.write_text(CONFIG_TOML.format(url=url), encoding="utf-8")
    return path


def build_messages(engine: sa.Engine) -> dict[str, int]:
    """Insert the messages and responses of the module docstring; delivery ids by name."""
    ids: dict[str, int] = {}
    refs = 0
    with engine.begin() as conn:
        for name, campaign, step, variant, channel, status, kinds in MESSAGES:
            customer_id = conn.execute(sa.insert(Customer.__table__).values(
                external_id=f"cust-{name}", email=f"{name}@x.cn", attributes={},
            ).returning(Customer.__table__.c.id)).scalar_one()
            ids[name] = conn.execute(sa.insert(Delivery.__table__).values(
                send_key=f"{campaign}:{step}:{name}", campaign=campaign, step=step, variant=variant,
                customer_id=customer_id, channel=channel, template="t", status=status,
                due_at=SENT_AT, dispatch_after=SENT_AT, sent_at=SENT_AT if status == "sent" else None,
            ).returning(Delivery.__table__.c.id)).scalar_one()
            for kind in kinds:
                refs += 1  # every response distinct for (provider, provider_ref, kind), as stored
                conn.execute(sa.insert(Response.__table__).values(
                    delivery_id=ids[name], customer_id=customer_id, kind=kind, provider="web",
                    provider_ref=f"ref-{refs}", occurred_at=SENT_AT + timedelta(hours=refs), payload={}))
        # Matched to no delivery (an open token of a purged row, a reply from an unknown
        # sender): no message to credit them to.
        for kind in ("opened", "replied"):
            conn.execute(sa.insert(Response.__table__).values(
                delivery_id=None, customer_id=None, kind=kind, provider="web", provider_ref=f"stray-{kind}",
                occurred_at=SENT_AT + timedelta(hours=1), payload={}))
        a1_customer = conn.execute(sa.select(Delivery.customer_id).where(Delivery.id == ids["a1"])).scalar_one()
        conn.execute(sa.insert(Order.__table__).values(order_id="o-a1", customer_id=a1_customer, amount=40,
                                                       ordered_at=SENT_AT + timedelta(days=1)))
    return ids


@pytest.fixture
def project(tmp_path: Path, sqlite_engine: sa.Engine) -> tuple[sa.Engine, AppConfig, Path]:
    """The messages above in a database, and a config.toml pointing at it."""
    build_messages(sqlite_engine)
    path = write_project(tmp_path, sqlite_engine.url.render_as_string(hide_password=False))
    return sqlite_engine, load_config(path), path


def expected(key: Any) -> dict[str, Any]:
    sent, counts = EXPECTED[key]
    return {**dict(zip(KINDS, counts, strict=True)), **RATES[key]}, sent


def assert_engagement(actual: dict[str, Any], key: Any) -> None:
    """Counts exactly (and as int: PostgreSQL sums are Decimal), rates to float precision."""
    want, _ = expected(key)
    assert set(actual) == set(want), key
    for metric, value in want.items():
        if metric in KINDS:
            assert type(actual[metric]) is int and actual[metric] == value, (key, metric, actual[metric])
        elif value is None:
            assert actual[metric] is None, (key, metric, actual[metric])
        else:
            assert actual[metric] == pytest.approx(value), (key, metric, actual[metric])


def test_engagement_counts_each_message_once_per_kind_per_group_channel_and_campaign(project):
    engine, config, _ = project
    report = campaign_report(engine, config, "promo", now=NOW)

    assert set(ENGAGEMENT_KINDS) == set(KINDS)
    groups = {(row["step"], row["variant"], row["channel"]): row for row in report["steps"]}
    assert list(groups) == [(0, None, "mail"), (0, None, "text"), (1, 0, "mail"), (1, 0, "text"),
                            (1, 1, "mail"), (1, 1, "text")]
    for key, row in groups.items():
        assert row.get("sent", 0) == EXPECTED[key][0], key
        assert_engagement(row["engagement"], key)
    assert [row["channel"] for row in report["channels"]] == ["mail", "text"]
    for row in report["channels"]:
        assert row["sent"] == EXPECTED[row["channel"]][0]
        assert_engagement(row["engagement"], row["channel"])
    assert report["sent"] == 12
    assert_engagement(report["engagement"], "campaign")


def test_channel_rows_carry_outcomes_and_attributed_revenue(project):
    engine, config, _ = project
    report = campaign_report(engine, config, "promo", now=NOW)

    # mail: m1-m4, a1, a2, b1-b3 sent, m5 failed (m6 still queued: a per-step matter);
    # the order of 40 a day after a1 is credited to a1, the customer's last message.
    channels = {row["channel"]: {k: v for k, v in row.items() if k != "engagement"} for row in report["channels"]}
    assert channels == {
        "mail": {"channel": "mail", "sent": 9, "failed": 1, "attributed_orders": 1, "attributed_revenue": 40.0},
        "text": {"channel": "text", "sent": 3, "failed": 0, "attributed_orders": 0, "attributed_revenue": 0.0},
    }
    assert (report["failed"], report["skipped"], report["deliveries"]["queued"]) == (1, 1, 2)


def test_the_other_campaign_sees_only_its_own_responses(project):
    engine, config, _ = project
    other = campaign_report(engine, config, "other", now=NOW)["engagement"]

    # Its one message went out on "mail" (an outbox: no receipts) and no receipt came back
    # for this campaign: accepted counts as delivered, and the report says so.
    assert (other["opened"], other["clicked"], other["replied"], other["delivered"]) == (1, 1, 1, 1)
    assert campaign_report(engine, config, "other", now=NOW)["delivery_note"].startswith("mail: no delivery receipts")
    assert (other["open_rate"], other["click_to_open_rate"], other["reply_rate"]) == (1.0, 1.0, 1.0)


def test_a_campaign_without_messages_has_zero_counts_and_no_rates(sqlite_engine, tmp_path):
    config = load_config(write_project(tmp_path, sqlite_engine.url.render_as_string(hide_password=False)))
    report = campaign_report(sqlite_engine, config, "promo", now=NOW)

    assert report["steps"] == [] and report["channels"] == []
    assert all(report["engagement"][kind] == 0 for kind in KINDS)
    assert all(report["engagement"][rate] is None for rate in RATES["campaign"])


def test_the_report_reads_the_campaigns_messages_and_their_responses_in_one_statement(project):
    engine, config, _ = project
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        campaign_report(engine, config, "promo", now=NOW)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    # Whatever the number of messages or responses: a fixed handful of queries, one of
    # them joining the response table (and one finding no recommended product shown).
    assert len([s for s in statements if "response" in s.lower()]) == 1
    assert len(statements) <= 7


# --------------------------------------------------------------------------- CLI


def invoke(*args: object):
    return CliRunner().invoke(app, [str(arg) for arg in args])


@pytest.fixture
def _no_operator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NURTURE_DATABASE_URL", "NURTURE_BROKER_URL", "NURTURE_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def cells(output: str, title: str) -> list[list[str]]:
    """The rows of the rich table whose title starts with ``title`` (cells stripped)."""
    text = output[output.index(title):]
    rows: list[list[str]] = []
    for line in text.splitlines()[1:]:
        if line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip("│").split("│")])
        elif rows and line.startswith("└"):
            break
    return rows


@pytest.mark.usefixtures("_no_operator_environment")
def test_report_campaign_json_carries_the_engagement(project):
    _, _, path = project

    result = invoke("report", "campaign", "promo", "-c", path, "--now", NOW.isoformat(), "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for row in data["steps"]:
        assert_engagement(row["engagement"], (row["step"], row["variant"], row["channel"]))
    for row in data["channels"]:
        assert_engagement(row["engagement"], row["channel"])
    assert_engagement(data["engagement"], "campaign")


@pytest.mark.usefixtures("_no_operator_environment")
def test_report_campaign_table_shows_engagement_by_group_and_by_channel(project):
    _, _, path = project

    result = invoke("report", "campaign", "promo", "-c", path, "--now", NOW.isoformat())

    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.replace("│", " ").split())  # the summary panel wraps lines
    assert ("delivered 6 (50.0%) · opened 4 (33.3%) · clicked 3 (25.0%, 75.0% of opens) · replied 1 (8.3%) · "
            "unsubscribed 2 (16.7%)") in text
    assert "not delivered 2 (16.7%) · complaints 2 (16.7%)" in text
    # step, variant, channel, sent, delivered, not delivered, opened, clicked, replied,
    # unsubscribed, complaints, then open, click, click-to-open, reply and unsubscribe rates.
    assert cells(result.output, "Engagement by step") == [
        ["0", "-", "mail", "4", "2", "1", "2", "1", "0", "0", "0", "50.0%", "25.0%", "50.0%", "0.0%", "0.0%"],
        ["0", "-", "text", "2", "1", "1", "0", "0", "1", "1", "1", "0.0%", "0.0%", "-", "50.0%", "50.0%"],
        ["1", "A", "mail", "2", "1", "0", "2", "1", "0", "1", "1", "100.0%", "50.0%", "50.0%", "0.0%", "50.0%"],
        ["1", "A", "text", "0", "0", "0", "0", "0", "0", "0", "0", "-", "-", "-", "-", "-"],
        ["1", "B", "mail", "3", "2", "0", "0", "1", "0", "0", "0", "0.0%", "33.3%", "-", "0.0%", "0.0%"],
        ["1", "B", "text", "1", "0", "0", "0", "0", "0", "0", "0", "0.0%", "0.0%", "-", "0.0%", "0.0%"],
        ["total", "", "", "12", "6", "2", "4", "3", "1", "2", "2", "33.3%", "25.0%", "75.0%", "8.3%", "16.7%"],
    ]
    # channel, sent, failed, orders, revenue, then the engagement columns after "sent".
    assert cells(result.output, "By channel") == [
        ["mail", "9", "1", "1", "40.00", "5", "1", "4", "3", "0", "1", "1", "44.4%", "33.3%", "75.0%", "0.0%",
         "11.1%"],
        ["text", "3", "0", "0", "0.00", "1", "1", "0", "0", "1", "1", "1", "0.0%", "0.0%", "-", "33.3%", "33.3%"],
    ]
