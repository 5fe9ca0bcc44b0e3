"""Recording events (``nurture track``, ``POST /events``) with the import's validation and
dedupe rules. Planning campaigns for them: tests/campaigns/sending/test_event_triggers.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from campaigns.config.identity import IdentityConfig
from campaigns.customers.events import record_events
from campaigns.customers.identity.merging import merge_customers
from campaigns.store.models import Customer, CustomerIdentifier, Event
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


def add_person(engine, external_id: str, *identifiers: tuple[str, str], days_ago: int = 1) -> int:
    """A customer holding its own id and ``identifiers`` (stored form), as an import leaves it."""
    customer_id = add_customer(engine, external_id)
    with engine.begin() as conn:
        conn.execute(sa.update(Customer).where(Customer.id == customer_id)
                     .values(created_at=NOW - timedelta(days=days_ago)))
        conn.execute(sa.insert(CustomerIdentifier.__table__), [
            {"customer_id": customer_id, "kind": kind, "value": value, "first_seen_at": NOW, "last_seen_at": NOW}
            for kind, value in (("id", external_id), *identifiers)])
    return customer_id


def test_after_a_merge_events_by_any_identifier_of_the_merged_record_reach_the_survivor(engine):
    survivor = add_person(engine, "S1", ("phone", "+8613800138000"), days_ago=30)
    merged = add_person(engine, "W1", ("email", "annlee@gmail.com"), ("unionid", "U-ann"))
    with engine.begin() as conn:
        merge_customers(conn, survivor_id=survivor, merged_id=merged, reason="same person", actor="test", now=NOW)
    batch = [
        {"event_id": "e-1", "customer_id": "W1", "name": "signup"},
        {"event_id": "e-2", "customer_id": "id:W1", "name": "visit"},
        {"event_id": "e-3", "customer_id": "phone:+86 138 0013 8000", "name": "visit"},
        {"event_id": "e-4", "customer_id": "email:Ann.Lee@Gmail.com", "name": "visit"},
        {"event_id": "e-5", "customer_id": "unionid:U-ann", "name": "visit"},
        {"event_id": "e-6", "customer_id": "phone:+8613900000000", "name": "visit"},
        {"event_id": "e-7", "customer_id": "S1", "name": "visit"},
    ]
    result = record_events(engine, batch, now=NOW)
    assert [s.status for s in result.statuses] == ["accepted"] * 5 + ["rejected", "accepted"]
    # Unknown customers keep their message, by index.
    assert result.statuses[5].index == 5
    assert result.statuses[5].reason == "customer_id 'phone:+8613900000000' not found: import customers first"
    with engine.connect() as conn:
        owners = dict(conn.execute(sa.select(Event.dedupe_key, Event.customer_id)).all())
    assert owners == dict.fromkeys(["e-1", "e-2", "e-3", "e-4", "e-5", "e-7"], survivor)


def test_events_read_references_with_the_configured_rules(sqlite_engine):
    # Stored with its dots: this installation keeps them (email_dotless_domains = []).
    ann = add_person(sqlite_engine, "ann", ("email", "ann.lee@gmail.com"), ("phone", "+12025550123"))
    events = [{"event_id": "e-1", "customer_id": "email:Ann.Lee@gmail.com", "name": "visit"},
              {"event_id": "e-2", "customer_id": "phone:(202) 555-0123", "name": "visit"}]
    defaults = record_events(sqlite_engine, events, now=NOW)
    assert [s.status for s in defaults.statuses] == ["rejected", "rejected"]
    rules = IdentityConfig(email_dotless_domains=(), default_region="US")
    configured = record_events(sqlite_engine, events, now=NOW, rules=rules)
    assert [s.status for s in configured.statuses] == ["accepted", "accepted"]
    with sqlite_engine.connect() as conn:
        assert set(conn.execute(sa.select(Event.customer_id)).scalars()) == {ann}
