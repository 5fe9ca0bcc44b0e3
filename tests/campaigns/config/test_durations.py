"""Tests for campaigns.config.durations: the durations config.toml writes ("1d12h", 3600)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from campaigns.config.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1d12h", timedelta(days=1, hours=12)),
        ("36h", timedelta(hours=36)),
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("2w", timedelta(weeks=2)),
        ("1d 2h", timedelta(days=1, hours=2)),
        (45, timedelta(seconds=45)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["2x", "", "d", "1.5h", "-1d", "1d twelve", True, 1.5, -3])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)  # type: ignore[arg-type]
