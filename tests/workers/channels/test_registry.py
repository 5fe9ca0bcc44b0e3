"""Channels built from config: the ``[rate_limits]`` wrapper around a configured channel."""

from __future__ import annotations

import pytest

from campaigns.sending.messages import OutboundMessage, Outcome


def message(**parts: str) -> OutboundMessage:
    return OutboundMessage(
        send_key="win_back:0:42:once", delivery_id=1, campaign="win_back", step=0, channel="x",
        recipient="li@example.com", customer_external_id="C42", parts=parts or {"txt": "hello"},
    )


def test_a_rate_limited_channel_defers_what_exceeds_the_limit_until_a_slot_frees(tmp_path):
    from datetime import UTC, datetime

    from campaigns.project.loading import parse_config
    from workers.channels.registry import build_channels

    config = parse_config(f"""
[channels.mail]
kind = "outbox"
dir = "{tmp_path}"
[rate_limits]
mail = {{ limit = 2, per = "1m" }}
""")
    fixed = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    channel = build_channels(config, clock=lambda: fixed)["mail"]

    results = [channel.send(message(txt=f"n{n}")) for n in range(3)]

    assert [r.outcome for r in results] == [Outcome.OK, Outcome.OK, Outcome.DEFER]
    assert 0 < (results[2].defer_until - fixed).total_seconds() <= 60


def test_a_rate_limit_for_an_unknown_channel_is_a_config_error():
    from campaigns.errors import ConfigError
    from campaigns.project.loading import parse_config

    with pytest.raises(ConfigError) as caught:
        parse_config('[rate_limits]\nsms = { limit = 5 }\n')
    assert "rate_limits.sms" in str(caught.value)
