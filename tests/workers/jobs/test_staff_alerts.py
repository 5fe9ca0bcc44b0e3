"""Sending staff alerts (workers/jobs/staff_alerts.py, workers/channels/staff.py) to a
loopback server standing in for a WeCom group robot and a webhook receiver: the
documented request shapes, each alert sent once, retries on 429/500/garbage/errcode 45009,
failed for good on a bad key or a 4xx, and the robot key never in a log or an error; on
SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import logging
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from standardwebhooks import Webhook

from campaigns.config.schema import AppConfig
from campaigns.feedback.alerts import queue_staff_alert, take_due_alerts
from campaigns.project.loading import parse_config
from campaigns.store.db import make_engine
from campaigns.store.models import StaffAlert
from tests.conftest import HttpSink
from workers.channels.staff import build_staff_senders
from workers.jobs.staff_alerts import MIN_BACKOFF, send_staff_alerts

NOW = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)
ROBOT_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
WHSEC = "whsec_" + base64.b64encode(bytes(range(32))).decode()
PAYLOAD = {"response_id": 7, "customer": {"id": None, "external_id": "C042", "name": "王芳"},
           "text": "东西坏了，我要退款", "label": "complaint", "rule": "complaint", "campaign": "win_back",
           "step": 1, "channel": "sms", "replied_at": NOW.isoformat()}


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    made = make_engine(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))
    yield made
    made.dispose()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def config_for(sink: HttpSink, **wecom: Any) -> AppConfig:
    base = sink.url.rsplit("/", 1)[0]
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in wecom.items())
    return parse_config(textwrap.dedent(f"""\
        [staff_channels.care]
        kind = "wecom_robot"
        key_env = "TEST_STAFF_ROBOT_KEY"
        endpoint = "{base}"
        timeout = "1s"
        """) + extra + textwrap.dedent(f"""\

        [staff_channels.desk]
        kind = "webhook"
        url = "{sink.url}"
        secret_env = "TEST_STAFF_WEBHOOK_SECRET"
        max_attempts = 2
        """))


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_STAFF_ROBOT_KEY", ROBOT_KEY)
    monkeypatch.setenv("TEST_STAFF_WEBHOOK_SECRET", WHSEC)


def queue(engine: sa.Engine, channel: str = "care", key: str = "reply:7") -> None:
    with engine.begin() as conn:
        queue_staff_alert(conn, channel=channel, key=key, kind="complaint", customer_id=None, payload=PAYLOAD,
                          now=NOW)


def rows(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(sa.select(StaffAlert.__table__).order_by(StaffAlert.id)).mappings()]


def run(engine: sa.Engine, config: AppConfig, clock: Clock) -> Any:
    senders = build_staff_senders(config, clock=clock)
    try:
        return send_staff_alerts(engine=engine, config=config, senders=senders, clock=clock)
    finally:
        for sender in senders.values():
            sender.close()


def wecom(errcode: int, errmsg: str = "") -> str:
    return json.dumps({"errcode": errcode, "errmsg": errmsg})


@pytest.mark.usefixtures("secrets")
def test_a_complaint_reaches_the_robot_once_as_documented(engine, http_sink, caplog):
    caplog.set_level(logging.DEBUG)
    config, clock = config_for(http_sink), Clock()
    queue(engine)
    http_sink.answer(200, wecom(0, "ok"))

    first = run(engine, config, clock)
    clock.now += timedelta(hours=2)
    again = run(engine, config, clock)

    assert (first.sent, again.sent) == (1, 0)
    [request] = http_sink.requests
    assert request.path == f"/cgi-bin/webhook/send?key={ROBOT_KEY}"
    assert request.headers["content-type"].startswith("application/json")
    body = request.json()
    assert list(body) == ["msgtype", "markdown"] and body["msgtype"] == "markdown"
    content = body["markdown"]["content"]
    assert content.splitlines()[:3] == ["**客户投诉 Complaint**", "> 东西坏了，我要退款", "客户 Customer: 王芳 (C042)"]
    assert "活动 Campaign: win_back" in content and "#reply:7" in content
    [row] = rows(engine)
    assert (row["status"], row["attempts"], row["sent_at"], row["error"]) == ("sent", 1, NOW, None)
    assert ROBOT_KEY not in caplog.text  # httpx logs the URL at INFO: redacted


@pytest.mark.usefixtures("secrets")
def test_429_500_garbage_and_errcode_45009_are_retried_with_backoff(engine, http_sink):
    config, clock = config_for(http_sink, msgtype="text"), Clock()
    queue(engine)
    http_sink.answer(200, wecom(45009, "api freq out of limit"))
    http_sink.answer(429, "slow down", Retry_After="120")
    http_sink.answer(500, "oops")
    http_sink.answer(200, "<html>gateway</html>")
    http_sink.answer(200, wecom(0, "ok"))

    waits = []
    for _ in range(4):
        report = run(engine, config, clock)
        [row] = rows(engine)
        assert (report.retried, row["status"]) == (1, "queued")
        waits.append(row["due_at"] - clock.now)
        # Not due yet: nothing is sent before the backoff ends.
        assert run(engine, config, clock).retried == 0 and len(http_sink.requests) == len(waits)
        clock.now = row["due_at"]
    # 45009: the robot's 65 s over the first 30 s; Retry-After 120 s over 60 s; then doubling.
    assert waits == [timedelta(seconds=65), timedelta(seconds=120), MIN_BACKOFF * 4, MIN_BACKOFF * 8]
    assert "not JSON" in rows(engine)[0]["error"]
    assert run(engine, config, clock).sent == 1
    [row] = rows(engine)
    assert (row["status"], row["attempts"]) == ("sent", 5)
    assert http_sink.requests[-1].json() == {"msgtype": "text", "text": {"content": http_sink.requests[0].json()[
        "text"]["content"]}}
    assert http_sink.requests[0].json()["text"]["content"].startswith("【客户投诉 Complaint】\n东西坏了，我要退款")


@pytest.mark.usefixtures("secrets")
@pytest.mark.parametrize("answer", [wecom(93000, "invalid webhook url"), wecom(40008, "invalid message type")])
def test_a_bad_key_or_a_parameter_error_fails_at_once(engine, http_sink, answer):
    config, clock = config_for(http_sink), Clock()
    queue(engine)
    http_sink.answer(200, answer)
    report = run(engine, config, clock)
    clock.now += timedelta(days=1)
    run(engine, config, clock)
    assert report.failed == 1 and len(http_sink.requests) == 1
    [row] = rows(engine)
    assert row["status"] == "failed" and json.loads(answer)["errmsg"] in row["error"]
    assert ROBOT_KEY not in row["error"]


@pytest.mark.usefixtures("secrets")
def test_a_timeout_is_retried(engine, http_sink):
    config, clock = config_for(http_sink), Clock()
    queue(engine)
    http_sink.released.clear()  # the server holds the request: the client's 1 s timeout ends it
    report = run(engine, config, clock)
    http_sink.released.set()
    assert report.retried == 1 and "timeout" in report.errors["reply:7"]
    assert rows(engine)[0]["status"] == "queued"


def test_an_unset_robot_key_keeps_the_alert_queued_without_a_request(engine, http_sink, monkeypatch):
    monkeypatch.delenv("TEST_STAFF_ROBOT_KEY", raising=False)
    config, clock = config_for(http_sink), Clock()
    queue(engine)
    report = run(engine, config, clock)
    [row] = rows(engine)
    assert (report.waiting, row["status"], row["attempts"], http_sink.requests) == (1, "queued", 0, [])
    assert "TEST_STAFF_ROBOT_KEY" in row["error"]


@pytest.mark.usefixtures("secrets")
def test_the_webhook_gets_the_alert_signed_and_keyed(engine, http_sink):
    config, clock = config_for(http_sink), Clock()
    queue(engine, channel="desk")
    assert run(engine, config, clock).sent == 1
    [request] = http_sink.requests
    assert request.headers["idempotency-key"] == "reply:7"
    body = Webhook(WHSEC).verify(request.body, request.headers)
    assert body == {"type": "nurture.staff_alert", "key": "reply:7", "kind": "complaint",
                    "created_at": NOW.isoformat(), "attempt": 1, "alert": PAYLOAD}


@pytest.mark.usefixtures("secrets")
def test_the_webhook_retries_a_503_up_to_max_attempts_and_fails_a_400(engine, http_sink):
    config, clock = config_for(http_sink), Clock()
    queue(engine, channel="desk", key="reply:1")
    http_sink.answer(503)
    http_sink.answer(503)
    assert run(engine, config, clock).retried == 1
    clock.now += timedelta(hours=1)
    assert run(engine, config, clock).failed == 1  # max_attempts = 2
    assert rows(engine)[0]["error"].startswith("gave up after the last attempt: HTTP 503")

    queue(engine, channel="desk", key="reply:2")
    http_sink.answer(400, "bad")
    assert run(engine, config, clock).failed == 1
    assert [row["status"] for row in rows(engine)] == ["failed", "failed"]
    assert len(http_sink.requests) == 3


def test_a_leased_alert_is_not_taken_twice_until_its_lease_ends(engine):
    queue(engine)
    lease = timedelta(minutes=5)
    [taken] = take_due_alerts(engine, now=NOW, lease=lease)
    assert (taken.key, taken.attempt) == ("reply:7", 1)
    assert take_due_alerts(engine, now=NOW + timedelta(minutes=4), lease=lease) == []
    # The sender died without settling it: after the lease another takes it (and may send it again).
    [again] = take_due_alerts(engine, now=NOW + lease, lease=lease)
    assert again.attempt == 2


@pytest.mark.usefixtures("secrets")
def test_a_tick_labels_a_complaint_and_a_worker_sends_its_alert_once(sqlite_url, http_sink):
    from campaigns.responses.recording import InboundResponse, record_responses
    from workers.jobs.inprocess import InProcessWorkers
    from workers.jobs.runtime import Runtime

    base = http_sink.url.rsplit("/", 1)[0]
    config = parse_config(textwrap.dedent(f"""\
        [database]
        url = "{sqlite_url}"

        [replies]
        alert_channel = "care"

        [staff_channels.care]
        kind = "wecom_robot"
        key_env = "TEST_STAFF_ROBOT_KEY"
        endpoint = "{base}"
        """))
    clock = Clock()
    runtime = Runtime.from_config(config, clock=clock)
    record_responses(runtime.engine, [InboundResponse(
        kind="replied", provider="twilio", provider_ref="SMx", occurred_at=NOW, address="+8613800000009",
        family="sms", text="Terrible service, I want a refund")], now=NOW)
    http_sink.answer(200, wecom(0, "ok"))
    with InProcessWorkers(runtime=runtime).running() as workers:
        first = workers.tick(NOW)
        clock.now += timedelta(minutes=1)
        again = workers.tick(clock.now)
    runtime.close()

    assert first.replies is not None and (first.replies.labelled, first.replies.alerts) == ({"complaint": 1}, 1)
    assert (first.staff_alert_jobs, again.staff_alert_jobs) == (1, 0)
    assert again.replies is not None and again.replies.total == 0
    [request] = http_sink.requests
    assert "> Terrible service, I want a refund" in request.json()["markdown"]["content"]


def test_a_long_complaint_is_cut_at_its_text_to_the_robots_byte_limit(monkeypatch):
    from campaigns.config.staff import StaffWeComRobotConfig
    from campaigns.feedback.alerts import DueAlert
    from workers.channels.staff import WeComRobotStaffSender

    monkeypatch.setenv("TEST_STAFF_ROBOT_KEY", ROBOT_KEY)
    options = StaffWeComRobotConfig(kind="wecom_robot", key_env="TEST_STAFF_ROBOT_KEY", markdown_max_bytes=300)
    sender = WeComRobotStaffSender(name="care", options=options)
    alert = DueAlert(id=1, key="reply:7", channel="care", kind="complaint", customer_id=None,
                     payload={**PAYLOAD, "text": "质量太差" * 100}, created_at=NOW, attempt=1)
    content = sender.content(alert)
    sender.close()
    assert len(content.encode("utf-8")) <= 300
    lines = content.splitlines()
    assert lines[0] == "**客户投诉 Complaint**" and lines[1].startswith("> 质量太差") and lines[1].endswith("…")
    assert lines[-1] == "#reply:7" and "客户 Customer: 王芳 (C042)" in lines  # everything but the text is kept


def test_a_detractor_alert_reads_like_a_complaint(monkeypatch):
    from campaigns.config.staff import StaffWeComRobotConfig
    from campaigns.feedback.alerts import DueAlert
    from workers.channels.staff import WeComRobotStaffSender

    monkeypatch.setenv("TEST_STAFF_ROBOT_KEY", ROBOT_KEY)
    sender = WeComRobotStaffSender(name="care", options=StaffWeComRobotConfig(
        kind="wecom_robot", key_env="TEST_STAFF_ROBOT_KEY", msgtype="text"))
    # The payload engineer 4's survey code queues (campaigns/feedback/scores.py).
    alert = DueAlert(id=2, key="feedback:3", channel="care", kind="detractor", customer_id=None, payload={
        "feedback_id": 3, "customer": "C042", "name": "王芳", "question": "nps", "score": 2, "text": "太慢了",
        "campaign": "nps_survey", "channel": "sms"}, created_at=NOW, attempt=1)
    content = sender.content(alert)
    sender.close()
    assert content.splitlines() == ["【低分反馈 Detractor】", "太慢了", "客户 Customer: 王芳 (C042)", "问题 Question: nps",
                                    "评分 Score: 2", "活动 Campaign: nps_survey", "渠道 Channel: sms", "#feedback:3"]
