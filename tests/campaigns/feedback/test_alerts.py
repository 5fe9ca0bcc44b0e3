"""queue_staff_alert: one row per key, queued, whatever the number of calls."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from campaigns.feedback.alerts import queue_staff_alert
from campaigns.store.models import StaffAlert

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def test_an_alert_is_queued_once_per_key(engine: sa.Engine) -> None:
    payload = {"customer": {"id": None, "name": "王芳"}, "text": "太差了，我要退款"}
    with engine.begin() as conn:
        first = queue_staff_alert(conn, channel="ops", key="reply:7", kind="complaint",
                                  customer_id=None, payload=payload, now=NOW)
        again = queue_staff_alert(conn, channel="ops", key="reply:7", kind="complaint",
                                  customer_id=None, payload={"text": "other"}, now=NOW)
        other = queue_staff_alert(conn, channel="ops", key="feedback:7", kind="detractor",
                                  customer_id=None, payload={"score": 2}, now=NOW)
    assert (first, again, other) == (True, False, True)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(StaffAlert.__table__).order_by(StaffAlert.__table__.c.id)).mappings().all()
    assert [(r["alert_key"], r["kind"], r["status"], r["attempts"]) for r in rows] == [
        ("reply:7", "complaint", "queued", 0), ("feedback:7", "detractor", "queued", 0)]
    assert rows[0]["payload"] == payload


def test_an_unknown_kind_is_refused(engine: sa.Engine) -> None:
    with engine.begin() as conn, pytest.raises(ValueError, match="unknown staff alert kind"):
        queue_staff_alert(conn, channel="ops", key="x:1", kind="praise", customer_id=None, payload={}, now=NOW)


def test_failed_alerts_can_be_queued_again_and_sent_ones_cannot(engine: sa.Engine) -> None:
    from datetime import timedelta

    from campaigns.feedback.alerts import list_staff_alerts, retry_failed_alerts, settle_alert, take_due_alerts

    with engine.begin() as conn:
        for key in ("reply:1", "reply:2", "reply:3"):
            queue_staff_alert(conn, channel="ops", key=key, kind="complaint", customer_id=None, payload={}, now=NOW)
    one, two, three = take_due_alerts(engine, now=NOW, lease=timedelta(minutes=5))
    settle_alert(engine, one.id, status="sent", now=NOW)
    settle_alert(engine, two.id, status="failed", now=NOW, error="wecom errcode 93000: invalid webhook url")
    settle_alert(engine, three.id, status="failed", now=NOW, error="HTTP 400")

    failed, total = list_staff_alerts(engine, statuses=frozenset({"failed"}))
    assert total == 2 and [a.key for a in failed] == ["reply:3", "reply:2"]
    assert retry_failed_alerts(engine, keys=frozenset({"reply:2", "reply:1"})) == 1
    assert retry_failed_alerts(engine) == 1
    assert retry_failed_alerts(engine) == 0
    rows, _ = list_staff_alerts(engine)
    assert [(a.key, a.status, a.attempts, a.due_at) for a in rows] == [
        ("reply:3", "queued", 0, None), ("reply:2", "queued", 0, None), ("reply:1", "sent", 1, None)]
    assert [a.key for a in take_due_alerts(engine, now=NOW, lease=timedelta(minutes=5))] == ["reply:2", "reply:3"]
