"""``nurture test-send`` end to end: a real SMTP server (aiosmtpd) and the loopback HTTP sink
receive the test message; the ledger marks it as a test; reports, frequency caps,
suppressions and consent behave as if it had never been sent; the real campaign then
sends as it would have."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.project.loading import load_config
from campaigns.reports.campaign import campaign_report
from campaigns.reports.deliveries import delivery_summary
from campaigns.reports.funnel import campaign_funnel
from campaigns.responses.preferences import load_recipient, unsubscribe_once
from campaigns.responses.recording import InboundResponse, record_responses
from campaigns.store.db import make_engine
from campaigns.store.models import Consent, Customer, Delivery, Response, Suppression
from tests.conftest import TEST_HOOK_SECRET, TICK_NOW, HttpSink, seed_customers
from tests.e2e.test_channel_smtp import Handler, Server, start
from tests.workers.cli.win_back import assert_no_crash, invoke
from workers.jobs.inprocess import InProcessWorkers
from workers.jobs.runtime import Runtime

ME = "marketer@shop.example"


@pytest.fixture
def smtp() -> Iterator[Server]:
    server = start(Handler())
    yield server
    server.controller.stop()


@pytest.fixture
def config_path(tmp_path: Path, sqlite_url: str, smtp: Server, http_sink: HttpSink,
                monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEST_UNSUB_SECRET", "s3cret")
    monkeypatch.setenv("NURTURE_TEST_HOOK_SECRET", TEST_HOOK_SECRET)
    for name in ("NURTURE_DATABASE_URL", "NURTURE_BROKER_URL", "NURTURE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "templates" / "wb"
    folder.mkdir(parents=True)
    (folder / "m.subject.j2").write_text("We miss you, {{ customer.name }}")
    (folder / "m.txt.j2").write_text("Come back, {{ customer.name }}: {{ stats.orders_count }} order(s).")
    (folder / "m.html.j2").write_text("<p>Come back, {{ customer.name }}.</p>")
    (folder / "m.json.j2").write_text('{"who": {{ customer.external_id|tojson }}}')
    path = tmp_path / "config.toml"
    # Quiet hours stated, off; the per-day cap stated at 1: a test send that took the
    # day's slot would hold the real message back.
    path.write_text(f"""
[database]
url = "{sqlite_url}"
[profiles]
cron = ""
[compliance]
quiet_hours = ""
[compliance.frequency]
per_channel_per_day = 1
[templates]
dir = "templates"
[channels.mail]
kind = "smtp"
host = "127.0.0.1"
port = {smtp.port}
security = "none"
from = "Good Tea <news@goodtea.example>"
unsubscribe_url = "https://u.goodtea.example/u/{{token}}"
unsubscribe_secret_env = "TEST_UNSUB_SECRET"
[channels.hook]
kind = "webhook"
url = "{http_sink.url}"
secret_env = "NURTURE_TEST_HOOK_SECRET"
timeout = "5s"
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
    engine = make_engine(sqlite_url)  # migrated by the sqlite_url fixture
    seed_customers(engine, count=4, now=TICK_NOW, lapsed_share=0.5)
    engine.dispose()
    return path


def _reports(engine: sa.Engine, path: Path) -> tuple[object, ...]:
    config = load_config(path)
    report = campaign_report(engine, config, "win_back", now=TICK_NOW)
    return report, campaign_funnel(engine, config, "win_back", now=TICK_NOW, report=report), delivery_summary(engine)


def test_a_test_email_reaches_the_given_address_and_changes_nothing_else(config_path, sqlite_url, smtp):
    engine = make_engine(sqlite_url)
    before = _reports(engine, config_path)

    result = invoke("test-send", "win_back", "--to", ME, "--channel", "mail", "--customer", "C00000",
                    "--now", TICK_NOW.isoformat(), "-c", config_path, "--json")

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["status"] == "sent" and out["customer"] == "C00000" and out["sample_customer"] is False
    assert out["send_key"].startswith("test:win_back:0:")
    [message] = smtp.handler.messages
    assert message.rcpt_tos == [ME]  # the marketer's address, never the customer's
    assert "Come back, Test Person0: 1 order(s)." in message.parsed().get_body(("plain",)).get_content()
    with engine.connect() as conn:
        [row] = conn.execute(sa.select(Delivery)).all()
    assert row.is_test and row.status == "sent" and row.send_key == out["send_key"]
    assert row.enrollment_id is None and row.provider_message_id == message.parsed()["Message-ID"]
    # Reports, the funnel and the delivery summary: as if nothing had been sent.
    assert _reports(engine, config_path) == before

    # A bounce, a complaint and a one-click unsubscribe of the test message are stored
    # with it, and none of them suppresses or withdraws the customer's consent.
    record_responses(engine, [
        InboundResponse(kind="bounced", provider="email", provider_ref="dsn-1", occurred_at=TICK_NOW,
                        send_key=row.send_key, address=ME, family="email", permanent=True, error="550 5.1.1"),
        InboundResponse(kind="complained", provider="email", provider_ref="fbl-1", occurred_at=TICK_NOW,
                        send_key=row.send_key, family="email"),
    ], now=TICK_NOW)
    recipient = load_recipient(engine, load_config(config_path), row.send_key)
    assert recipient is not None and recipient.is_test
    unsubscribe_once(engine, recipient, now=TICK_NOW)
    unsubscribe_once(engine, recipient, now=TICK_NOW)  # the repeat path withdraws nothing either
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Suppression)).scalar_one() == 0
        assert set(conn.execute(
            sa.select(Consent.status).join(Customer, Customer.id == Consent.customer_id)
            .where(Customer.external_id == "C00000")).scalars()) == {"granted"}
        stored = conn.execute(sa.select(Response.kind, Response.delivery_id, Response.customer_id)).all()
    assert sorted(kind for kind, _, _ in stored) == ["bounced", "complained", "unsubscribed"]
    assert {(delivery, customer) for _, delivery, customer in stored} == {(row.id, None)}
    assert _reports(engine, config_path) == before

    # The real campaign runs the same day: the test took no slot of the per-day cap of 1,
    # so C00000 gets its own message; nobody gets the test message again.
    runtime = Runtime.from_config(load_config(config_path), clock=lambda: TICK_NOW)
    with InProcessWorkers(runtime=runtime).running() as workers:
        workers.tick(TICK_NOW)
    runtime.close()
    assert sorted(rcpt for m in smtp.handler.messages for rcpt in m.rcpt_tos) == sorted(
        [ME, "p0@example.com", "p1@example.com"])
    with engine.connect() as conn:
        real = dict(conn.execute(sa.select(Delivery.send_key, Delivery.status)
                                 .where(Delivery.is_test.is_(False))).all())
    assert real == {"win_back:0:1:once": "sent", "win_back:0:2:once": "sent"}
    assert campaign_report(engine, load_config(config_path), "win_back", now=TICK_NOW)["sent"] == 2
    engine.dispose()


def test_a_test_webhook_renders_a_named_sample_customer_and_posts_to_the_sink(config_path, sqlite_url, http_sink):
    result = invoke("test-send", "win_back", "--to", "ops-hook", "--channel", "hook",
                    "--now", TICK_NOW.isoformat(), "-c", config_path)

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    assert "rendered for sample customer C00000" in " ".join(result.output.split())
    [body] = http_sink.bodies()
    assert json.dumps(body).find("C00000") >= 0
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(Delivery.is_test, Delivery.status, Delivery.channel)).all() == [
            (True, "sent", "hook")]
    engine.dispose()


def test_a_refused_test_send_fails_once_and_suppresses_nothing(config_path, sqlite_url, smtp):
    smtp.handler.rcpt_replies[ME] = "550 5.1.1 no such user"

    result = invoke("test-send", "win_back", "--to", ME, "--channel", "mail", "--customer", "C00001",
                    "--now", TICK_NOW.isoformat(), "-c", config_path)

    assert_no_crash(result)
    assert result.exit_code == 1
    assert "failed" in result.output
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        [(status, error)] = conn.execute(sa.select(Delivery.status, Delivery.last_error)).all()
        assert conn.execute(sa.select(sa.func.count()).select_from(Suppression)).scalar_one() == 0
    assert status == "failed" and "550" in (error or "")
    engine.dispose()


@pytest.mark.parametrize(("args", "message"), [
    (("nope", "--to", ME, "--channel", "mail"), "no campaign named 'nope'"),
    (("win_back", "--to", ME, "--channel", "fax"), "no channel named 'fax'"),
    (("win_back", "--to", ME, "--channel", "mail", "--step", "3"), "has steps 0 to 0, not 3"),
    (("win_back", "--to", ME, "--channel", "mail", "--variant", "1"), "has no variants"),
    (("win_back", "--to", ME, "--channel", "mail", "--customer", "C9"), "no customer with customer_id 'C9'"),
    (("win_back", "--to", "not-an-address", "--channel", "mail"), "is not an email address"),
])
def test_mistakes_are_clear_errors_and_write_nothing(config_path, sqlite_url, smtp, args, message):
    result = invoke("test-send", *args, "-c", config_path)

    assert_no_crash(result)
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar_one() == 0
    engine.dispose()
    assert smtp.handler.messages == []
