"""The dashboard's password throttle (workers.http.dashboard.FailureThrottle), with a pinned clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workers.http.dashboard import FailureThrottle

NOW = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)


class _Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def test_a_flood_of_addresses_within_the_window_keeps_memory_bounded():
    # Given a throttle remembering at most 100 addresses, and a clock that does not move
    # (so no failure ever expires: pruning expired keys frees nothing)
    throttle = FailureThrottle(max_failures=5, window_s=300, clock=_Clock())
    throttle.MAX_KEYS = 100

    # When 250 different addresses each guess once
    for index in range(250):
        throttle.failed(f"2001:db8::{index:x}")

    # Then no more than MAX_KEYS addresses are remembered
    assert len(throttle._failures) <= 100
    # and the throttle still works for the latest ones
    for _ in range(4):
        throttle.failed("2001:db8::f9")
    assert throttle.retry_after("2001:db8::f9") == 300


def test_expired_addresses_are_dropped_first_and_locked_out_ones_kept():
    # Given a locked-out address, then a window's worth of time, then a full table
    clock = _Clock()
    throttle = FailureThrottle(max_failures=2, window_s=300, clock=clock)
    throttle.MAX_KEYS = 10
    for index in range(9):
        throttle.failed(f"198.51.100.{index}")
    clock.now = NOW + timedelta(seconds=301)  # all of those expired
    throttle.failed("203.0.113.7")
    throttle.failed("203.0.113.7")
    assert throttle.retry_after("203.0.113.7") == 300

    # When more new addresses fail than the table holds expired ones
    for index in range(20):
        throttle.failed(f"192.0.2.{index}")

    # Then the table stays bounded, and the locked-out address is still locked out
    assert len(throttle._failures) <= 10
    assert throttle.retry_after("203.0.113.7") == 300
