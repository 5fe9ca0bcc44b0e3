"""A small project for the survey tests: an NPS campaign over SMS and email, a CSAT one,
a detractor follow-up, customers with profiles, and sent survey messages; ``now`` pinned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from campaigns.config.schema import AppConfig
from campaigns.project.loading import load_config
from campaigns.store.db import make_engine
from campaigns.store.models import Customer, CustomerProfile, Delivery, Feedback, StaffAlert

NOW = datetime(2026, 6, 10, 9, 0, tzinfo=UTC)

CONFIG = """
[database]
url = "{url}"
[compliance]
quiet_hours = ""
[compliance.frequency]
enabled = false
[feedback]
answer_within = "24h"
alert_channel = "support"
[staff_channels.support]
kind = "webhook"
url = "http://127.0.0.1:9/alerts"
secret_env = "NURTURE_TEST_STAFF_SECRET"
[channels.sms]
kind = "outbox"
dir = "out"
recipient = "phone"
[channels.mail]
kind = "outbox"
dir = "out"
[[campaigns]]
name = "nps"
trigger = {{ manual = true }}
channels = ["sms", "mail"]
[[campaigns.steps]]
template = "s/thanks"
[[campaigns.steps]]
template = "s/ask"
survey = "nps"
delay = "1d"
[[campaigns]]
name = "csat"
trigger = {{ manual = true }}
channels = ["mail"]
[[campaigns.steps]]
template = "s/ask"
survey = "csat"
[[campaigns]]
name = "sorry"
trigger = {{ feedback = "detractor" }}
channels = ["sms", "mail"]
[[campaigns.steps]]
template = "s/sorry"
[[campaigns.steps]]
template = "s/sorry"
delay = "2d"
"""


class SurveyWorld:
    """The project on one database: config, engine, customers (C0..Cn) and helpers."""

    def __init__(self, tmp_path: Path, database_url: str, *, customers: int = 4, extra: str = "") -> None:
        (tmp_path / "templates" / "s").mkdir(parents=True)
        (tmp_path / "templates" / "s" / "thanks.txt.j2").write_text("Thanks {{ customer.first_name }}")
        (tmp_path / "templates" / "s" / "ask.txt.j2").write_text(
            "How likely? {{ survey.reply_hint }}{% for s in survey.scores %} {{ s }}={{ survey.links[s] }}{% endfor %}")
        (tmp_path / "templates" / "s" / "sorry.txt.j2").write_text("Sorry {{ customer.first_name }}")
        (tmp_path / "config.toml").write_text(CONFIG.format(url=database_url) + extra)
        self.config: AppConfig = load_config(tmp_path / "config.toml")
        self.engine = make_engine(database_url)
        self.now = NOW
        with self.engine.begin() as conn:
            for number in range(customers):
                conn.execute(sa.insert(Customer.__table__).values(
                    external_id=f"C{number}", name=f"Person{number} Test", email=f"p{number}@example.com",
                    phone=f"+8613800000{number:03d}", created_at=NOW - timedelta(days=400), updated_at=NOW,
                    attributes={}))
            self.ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
            for number, (external_id, customer_id) in enumerate(sorted(self.ids.items())):
                conn.execute(sa.insert(CustomerProfile.__table__).values(**self._profile(customer_id, number)))
        from tests.conftest import grant_consent

        grant_consent(self.engine, now=NOW - timedelta(days=1))

    @staticmethod
    def _profile(customer_id: int, number: int) -> dict[str, Any]:
        return {"customer_id": customer_id, "as_of": NOW, "orders_count": 1, "total_spent": 100.0,
                "stage": ("active", "at_risk")[number % 2], "stage_since": NOW - timedelta(days=30),
                "rfm_segment": ("champions", "hibernating")[number % 2], "computed_at": NOW}

    def send(self, external_id: str, *, campaign: str = "nps", step: int = 1, channel: str = "sms",
             sent_at: datetime | None = None, is_test: bool = False) -> tuple[int, str]:
        """A sent survey message to ``external_id``; returns (delivery id, send key)."""
        customer_id = self.ids[external_id]
        send_key = f"{campaign}:{step}:{customer_id}:once" + (":test" if is_test else "")
        at = sent_at or self.now - timedelta(hours=1)
        with self.engine.begin() as conn:
            delivery_id = conn.execute(sa.insert(Delivery.__table__).values(
                send_key=send_key, campaign=campaign, step=step, customer_id=customer_id, channel=channel,
                template="s/ask", status="sent", attempts=1, due_at=at, dispatch_after=at, created_at=at,
                updated_at=at, sent_at=at, is_test=is_test,
            ).returning(Delivery.__table__.c.id)).scalar_one()
        return delivery_id, send_key

    def answers(self) -> list[Any]:
        """Every feedback row, by id."""
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(Feedback.__table__).order_by(Feedback.id)))

    def alerts(self) -> list[Any]:
        """Every staff alert, by id."""
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(StaffAlert.__table__).order_by(StaffAlert.id)))
