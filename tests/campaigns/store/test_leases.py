"""The scheduler's leader lease: one holder at a time, renewal, takeover after expiry (how the
scheduler holds it: tests/workers/jobs/test_scheduler.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from campaigns.store.leases import acquire_lease, lease_holder, release_lease

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=60)


def test_one_holder_at_a_time_renewal_and_takeover_after_expiry(sqlite_engine):
    assert acquire_lease(sqlite_engine, "x", "a", now=T0, ttl=TTL)
    assert not acquire_lease(sqlite_engine, "x", "b", now=T0 + timedelta(seconds=10), ttl=TTL)
    # a renews: its lease now runs to T0 + 30 s + 60 s, and acquired_at stays.
    assert acquire_lease(sqlite_engine, "x", "a", now=T0 + timedelta(seconds=30), ttl=TTL)
    assert not acquire_lease(sqlite_engine, "x", "b", now=T0 + timedelta(seconds=80), ttl=TTL)
    holder = lease_holder(sqlite_engine, "x")
    assert (holder.holder, holder.acquired_at, holder.expires_at) == ("a", T0, T0 + timedelta(seconds=90))
    # a stops renewing (crashed): b takes over once the lease has run out.
    assert acquire_lease(sqlite_engine, "x", "b", now=T0 + timedelta(seconds=90), ttl=TTL)
    assert lease_holder(sqlite_engine, "x").acquired_at == T0 + timedelta(seconds=90)
    assert not acquire_lease(sqlite_engine, "x", "a", now=T0 + timedelta(seconds=91), ttl=TTL)


def test_release_hands_over_at_once_and_only_by_the_holder(sqlite_engine):
    assert acquire_lease(sqlite_engine, "x", "a", now=T0, ttl=TTL)
    assert not release_lease(sqlite_engine, "x", "b")
    assert release_lease(sqlite_engine, "x", "a")
    assert lease_holder(sqlite_engine, "x") is None
    assert acquire_lease(sqlite_engine, "x", "b", now=T0 + timedelta(seconds=1), ttl=TTL)
