"""The leader lease under real concurrency on PostgreSQL: of many schedulers racing for
it at the same moment, exactly one wins, and a takeover race has one winner too."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from campaigns.store.db import make_engine
from campaigns.store.leases import acquire_lease, lease_holder

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=60)


def test_exactly_one_scheduler_wins_a_free_lease_and_one_wins_the_takeover(postgres_url):
    engine = make_engine(postgres_url, pool_size=10)
    try:
        for attempt in range(5):
            name = f"lease-{attempt}"
            winners = race_named(engine, name, T0, 8)
            assert len(winners) == 1, winners
            # The winner "crashes"; after expiry eight standbys race for the takeover.
            takeover = race_named(engine, name, T0 + TTL + timedelta(seconds=1), 8, exclude=winners[0])
            assert len(takeover) == 1, takeover
            assert lease_holder(engine, name).holder == takeover[0]
    finally:
        engine.dispose()


def race_named(engine, lease: str, moment: datetime, contenders: int, exclude: str | None = None) -> list[str]:
    barrier = threading.Barrier(contenders)
    winners: list[str] = []
    lock = threading.Lock()

    def contend(name: str) -> None:
        barrier.wait()
        if acquire_lease(engine, lease, name, now=moment, ttl=TTL):
            with lock:
                winners.append(name)

    names = [f"s{n}" for n in range(contenders + 1) if f"s{n}" != exclude][:contenders]
    threads = [threading.Thread(target=contend, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return winners
