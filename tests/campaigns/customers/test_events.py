"""Recording events (``nurture track``, ``POST /events``) with the import's validation and
dedupe rules. Planning campaigns for them: tests/campaigns/sending/test_event_triggers.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from campaigns.customers.events import record_events
from campaigns.store.models import Customer, Event
from tests.conftest import grant_consent

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def add_customer(engine, external_id: str, *, email: str | None = "x@example.com", vip: bool = False) -> int:
    with engine.begin() as conn:
        customer_id = conn.execute(sa.insert(Customer.__table__).values(
            external_id=external_id, email=email, created_at=NOW - timedelta(days=1), updated_at=NOW,
            attributes={"vip": vip}).returning(Customer.__table__.c.id)).scalar_one()
    grant_consent(engine, now=NOW, external_ids=[external_id])
    return customer_id


def test_record_events_dedupes_and_explains_rejections(sqlite_engine):
    add_customer(sqlite_engine, "ann")
    batch = [
        {"event_id": "s-1", "customer_id": "ann", "name": "signup", "properties": {"plan": "pro"}},
        {"event_id": "s-1", "customer_id": "ann", "name": "signup"},                     # repeated in the batch
        {"customer_id": "ann", "name": "review", "occurred_at": "2026-05-01T10:00:00+08:00"},  # hashed
        {"customer_id": "ghost", "name": "signup"},
        {"customer_id": "ann", "name": "signup", "occurred_at": "yesterday"},
        {"customer_id": "ann"},
        "not an object",
    ]
    result = record_events(sqlite_engine, batch, now=NOW)
    assert [s.status for s in result.statuses] == [
        "accepted", "duplicate", "accepted", "rejected", "rejected", "rejected", "rejected"]
    reasons = [s.reason for s in result.statuses]
    assert "customer_id 'ghost' not found" in reasons[3]
    assert reasons[4].startswith("occurred_at: invalid date 'yesterday'")
    assert reasons[5] == "name: required"
    assert reasons[6] == "expected a JSON object"
    assert len(result.accepted_ids) == 2
    with sqlite_engine.connect() as conn:
        stored = conn.execute(sa.select(Event.name, Event.occurred_at, Event.properties).order_by(Event.id)).all()
    assert stored[0] == ("signup", NOW, {"plan": "pro"})                 # occurred_at defaults to now
    assert stored[1][1] == datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
    # The same batch again: stored events are duplicates (event_id and content hash alike).
    again = record_events(sqlite_engine, batch[:3], now=NOW)
    assert [s.status for s in again.statuses] == ["duplicate", "duplicate", "duplicate"]
    assert again.accepted_ids == []
    assert again.to_dict()["duplicate"] == 3
