"""tests.clockshift, the runner of `make test-shifted`: which moment "HH:MM" names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.clockshift import main, target_moment


def test_a_clock_time_is_that_time_on_the_zones_current_day():
    # 16:00 UTC is already the next day in Shanghai: 22:30 there is 14:30 UTC that day.
    moment = target_moment("22:30", zone="Asia/Shanghai", now=datetime(2026, 12, 3, 16, 0, tzinfo=UTC))
    assert moment.astimezone(UTC) == datetime(2026, 12, 4, 14, 30, tzinfo=UTC)


def test_an_iso_time_is_taken_as_it_is_and_a_naive_one_in_the_zone():
    now = datetime(2026, 12, 3, 16, 0, tzinfo=UTC)
    assert target_moment("2026-07-01T14:00+08:00", zone="UTC", now=now) == datetime(2026, 7, 1, 6, 0, tzinfo=UTC)
    assert target_moment("2026-07-01T14:00", zone="Asia/Shanghai", now=now) == datetime(2026, 7, 1, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize("argv", [["25:00", "--", "-q"], ["22:30", "--zone", "Mars/Base", "--", "-q"]])
def test_an_unreadable_time_or_zone_is_one_usage_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "cannot read" in capsys.readouterr().err
