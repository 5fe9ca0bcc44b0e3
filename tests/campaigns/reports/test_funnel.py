"""The campaign funnel (``campaigns.reports.funnel``) against counts worked out by hand.

Campaign ``promo`` (holdout configured; goal: an order within 14 days). One enrolment per
customer unless noted; messages and their responses as the receivers would store them::

    enrolment   group    messages (status: responses)           order after enrolling
    c1          treated  sent: delivered, opened, opened         2 days  -> converted
                         sent: opened, clicked
    c2          treated  sent: opened (no receipt)               20 days -> too late
                         + a message of campaign "other": opened, clicked (not promo's)
    c3          treated  sent (text): delivered
    c4          treated  failed: delivered (a receipt racing a crash; not sent)
    c5          treated  queued                                  1 day   -> converted
    c6          treated  -  (+ an open matched to no delivery)
    c7          treated  sent: clicked (images blocked: no open)
    c8 first    treated  sent: opened                            (re-entered: two enrolments)
    c8 second   treated  -
    h1          holdout  sent (stray row): opened, clicked       3 days  -> holdout converted
    h2          holdout  -

Funnel of promo (treated enrolments; c8 counts once per enrolment)::

    enrolled 9   messaged 5 (c1 c2 c3 c7 c8)   delivered 2 (c1 c3)   opened 3 (c1 c2 c8)
    clicked 2 (c1 c7)   converted 2 (c1 c5)

Not nested: 3 opened against 2 delivery receipts, and c7 clicked without opening.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.config.schema import AppConfig
from campaigns.project.loading import parse_config
from campaigns.reports.campaign import campaign_report
from campaigns.reports.funnel import FUNNEL_STAGES, campaign_funnel
from campaigns.store.models import Customer, Delivery, Enrollment, Order, Response

ENROLLED_AT = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)

CONFIG = """
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
trigger = { manual = true }
channels = ["mail", "text"]
holdout = 0.2
  [[campaigns.steps]]
  template = "t"
  [[campaigns.steps]]
  template = "t"
  delay = "2d"

[[campaigns]]
name = "other"
trigger = { manual = true }
channels = ["mail"]
  [[campaigns.steps]]
  template = "t"
"""

#: (customer, campaign, occurrence, holdout, [(channel, status, [response kinds]), ...], order after days)
ENROLMENTS: list[tuple[str, str, str, bool, list[tuple[str, str, list[str]]], int | None]] = [
    ("c1", "promo", "once", False, [("mail", "sent", ["delivered", "opened", "opened"]),
                                    ("mail", "sent", ["opened", "clicked"])], 2),
    ("c2", "promo", "once", False, [("mail", "sent", ["opened"])], 20),
    ("c2", "other", "once", False, [("mail", "sent", ["opened", "clicked"])], None),
    ("c3", "promo", "once", False, [("text", "sent", ["delivered"])], None),
    ("c4", "promo", "once", False, [("mail", "failed", ["delivered"])], None),
    ("c5", "promo", "once", False, [("mail", "queued", [])], 1),
    ("c6", "promo", "once", False, [], None),
    ("c7", "promo", "once", False, [("mail", "sent", ["clicked"])], None),
    ("c8", "promo", "first", False, [("mail", "sent", ["opened"])], None),
    ("c8", "promo", "second", False, [], None),
    ("h1", "promo", "once", True, [("mail", "sent", ["opened", "clicked"])], 3),
    ("h2", "promo", "once", True, [], None),
]
EXPECTED = {"enrolled": 9, "messaged": 5, "delivered": 2, "opened": 3, "clicked": 2, "converted": 2}


def seed(engine: sa.Engine) -> None:
    """Insert the enrolments, messages, responses and orders of the module docstring."""
    refs = 0
    with engine.begin() as conn:
        customers: dict[str, int] = {}
        for name in dict.fromkeys(row[0] for row in ENROLMENTS):
            customers[name] = conn.execute(sa.insert(Customer.__table__).values(
                external_id=name, email=f"{name}@x.cn", phone="+8613800000000", attributes={},
            ).returning(Customer.__table__.c.id)).scalar_one()
        for name, campaign, occurrence, holdout, messages, order_after in ENROLMENTS:
            enrollment_id = conn.execute(sa.insert(Enrollment.__table__).values(
                campaign=campaign, customer_id=customers[name], occurrence=occurrence, enrolled_at=ENROLLED_AT,
                holdout=holdout, state="held_out" if holdout else "active",
            ).returning(Enrollment.__table__.c.id)).scalar_one()
            for step, (channel, status, kinds) in enumerate(messages):
                sent_at = ENROLLED_AT + timedelta(hours=1) if status == "sent" else None
                delivery_id = conn.execute(sa.insert(Delivery.__table__).values(
                    send_key=f"{campaign}:{name}:{occurrence}:{step}", campaign=campaign, step=step,
                    customer_id=customers[name], channel=channel, template="t", enrollment_id=enrollment_id,
                    status=status, due_at=ENROLLED_AT, dispatch_after=ENROLLED_AT, sent_at=sent_at,
                ).returning(Delivery.__table__.c.id)).scalar_one()
                for kind in kinds:
                    refs += 1  # each stored response distinct, as the receivers store them
                    conn.execute(sa.insert(Response.__table__).values(
                        delivery_id=delivery_id, customer_id=customers[name], kind=kind, provider="web",
                        provider_ref=f"ref-{refs}", occurred_at=ENROLLED_AT + timedelta(hours=2), payload={}))
            if order_after is not None:
                conn.execute(sa.insert(Order.__table__).values(
                    order_id=f"o-{name}-{campaign}", customer_id=customers[name], amount=50,
                    ordered_at=ENROLLED_AT + timedelta(days=order_after)))
        # An open matched to no delivery cannot be credited to any enrolment.
        conn.execute(sa.insert(Response.__table__).values(
            delivery_id=None, customer_id=customers["c6"], kind="opened", provider="web", provider_ref="stray",
            occurred_at=ENROLLED_AT + timedelta(hours=2), payload={}))


def make_config(directory: Path) -> AppConfig:
    """The campaigns above, with the template they name written under ``directory``."""
    (directory / "templates").mkdir(exist_ok=True)
    (directory / "templates" / "t.txt.j2").write_text("hi", encoding="utf-8")
    return parse_config(CONFIG, base=directory)


@pytest.fixture
def seeded(sqlite_engine: sa.Engine, tmp_path: Path) -> tuple[sa.Engine, AppConfig]:
    seed(sqlite_engine)
    return sqlite_engine, make_config(tmp_path)


def test_every_stage_counts_treated_enrolments_once(seeded):
    engine, config = seeded
    funnel = campaign_funnel(engine, config, "promo", now=NOW)

    assert {stage: funnel[stage] for stage in FUNNEL_STAGES} == EXPECTED
    assert all(type(funnel[stage]) is int for stage in FUNNEL_STAGES)
    assert (funnel["campaign"], funnel["now"]) == ("promo", NOW.isoformat())


def test_enrolled_and_converted_are_the_reports_own_figures(seeded):
    engine, config = seeded
    report = campaign_report(engine, config, "promo", now=NOW)
    funnel = campaign_funnel(engine, config, "promo", now=NOW)

    assert funnel["enrolled"] == report["enrolled"] == 9
    assert funnel["converted"] == report["converted"]["treated"] == 2
    # The holdout converted too (h1), and neither it nor its stray opened message is in the funnel.
    assert report["converted"]["holdout"] == 1


def test_a_report_handed_in_is_used_rather_than_computed_again(seeded):
    engine, config = seeded
    report = campaign_report(engine, config, "promo", now=NOW)
    report["converted"]["treated"] = 7  # a marker: the funnel must take it from here
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        funnel = campaign_funnel(engine, config, "promo", now=NOW, report=report)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert funnel["converted"] == 7
    # One statement for every stage, whatever the number of enrolments or responses.
    assert len(statements) == 1


def test_the_other_campaign_has_its_own_funnel(seeded):
    engine, config = seeded
    funnel = campaign_funnel(engine, config, "other", now=NOW)

    # c2's message of "other": sent, opened and clicked, no receipt; c2's order came 20 days later.
    # Its channel (an outbox) sends no receipts, so the accepted message counts as delivered.
    assert {stage: funnel[stage] for stage in FUNNEL_STAGES} == {
        "enrolled": 1, "messaged": 1, "delivered": 1, "opened": 1, "clicked": 1, "converted": 0}


def test_a_campaign_nobody_entered_has_a_funnel_of_zeros(sqlite_engine, tmp_path):
    funnel = campaign_funnel(sqlite_engine, make_config(tmp_path), "promo", now=NOW)

    assert {stage: funnel[stage] for stage in FUNNEL_STAGES} == dict.fromkeys(FUNNEL_STAGES, 0)


def test_an_unknown_campaign_is_a_key_error(seeded):
    engine, config = seeded
    with pytest.raises(KeyError):
        campaign_funnel(engine, config, "nope", now=NOW)
