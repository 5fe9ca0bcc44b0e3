"""A marketing email campaign through the whole path: scheduler tick, in-process Dramatiq
workers, the smtp channel, a real SMTP server (aiosmtpd) on loopback; then an unsubscribe
by the token in List-Unsubscribe."""

from __future__ import annotations

import email
import socket
from email import policy

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from campaigns.project.loading import load_config
from campaigns.sending.tokens import verify_unsubscribe_token
from campaigns.store.models import Delivery
from tests.conftest import TICK_NOW, seed_customers
from workers.jobs.inprocess import InProcessWorkers
from workers.jobs.runtime import Runtime


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 2.0.0 queued"


@pytest.fixture
def smtp_server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def test_each_lapsed_customer_gets_one_email_with_a_working_one_click_unsubscribe(
    tmp_path, sqlite_url, smtp_server, monkeypatch
):
    inbox, port = smtp_server
    monkeypatch.setenv("TEST_UNSUB_SECRET", "s3cret")
    (tmp_path / "templates" / "wb").mkdir(parents=True)
    (tmp_path / "templates" / "wb" / "m.subject.j2").write_text("We miss you, {{ customer.first_name }}")
    (tmp_path / "templates" / "wb" / "m.txt.j2").write_text("Come back, {{ customer.name }}.")
    (tmp_path / "templates" / "wb" / "m.html.j2").write_text("<p>Come back, {{ customer.name }}.</p>")
    (tmp_path / "config.toml").write_text(f"""
[database]
url = "{sqlite_url}"
[profiles]
cron = ""
[channels.mail]
kind = "smtp"
host = "127.0.0.1"
port = {port}
security = "none"
from = "Good Tea <news@goodtea.example>"
unsubscribe_url = "https://u.goodtea.example/u/{{token}}"
unsubscribe_secret_env = "TEST_UNSUB_SECRET"
[[campaigns]]
name = "win_back"
timezone = "Asia/Shanghai"
trigger = {{ cron = "0 10 * * *" }}
channels = ["mail"]
  [campaigns.audience]
  last_order_more_than_days = 90
  [[campaigns.steps]]
  template = "wb/m"
""")
    runtime = Runtime.from_config(load_config(tmp_path / "config.toml"), clock=lambda: TICK_NOW)
    groups = seed_customers(runtime.engine, count=12, now=TICK_NOW, lapsed_share=0.5)

    with InProcessWorkers(runtime=runtime).running() as workers:
        workers.tick(TICK_NOW)
        workers.tick(TICK_NOW)  # a second tick sends nothing more

    assert len(inbox.messages) == len(groups["lapsed"]) == 6
    recipients = sorted(m["To"] for m in inbox.messages)
    assert recipients == sorted(f"p{n}@example.com" for n in range(6))
    with runtime.engine.connect() as conn:
        ledger = dict(conn.execute(sa.select(Delivery.send_key, Delivery.provider_message_id)).all())
    for message in inbox.messages:
        assert message.get_body(("plain",)).get_content().startswith("Come back, Test Person")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = message["List-Unsubscribe"].strip("<>").split(">")[0]
        send_key = verify_unsubscribe_token(url.rsplit("/", 1)[1], "s3cret")
        assert send_key in ledger  # the token names this very delivery
        assert ledger[send_key] == message["Message-ID"]
    runtime.close()
