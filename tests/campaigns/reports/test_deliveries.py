"""Delivery summaries of campaigns/reports/deliveries.py (``nurture status``): why messages
are held back, counted per campaign and reason, in the send-time policy world."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.campaigns.sending.policy_world import world  # noqa: F401 (world: fixture)


def test_status_says_why_messages_are_held_back(world):
    from campaigns.reports.deliveries import held_back_summary

    night = datetime(2026, 6, 1, 14, 30, tzinfo=UTC)  # 22:30 in Shanghai
    world.add("sh", email="sh@x.cn")
    world.add("tokyo", email="tokyo@x.cn", timezone="Asia/Tokyo")  # 23:30 there
    world.add("never", email="never@x.cn", consent=())
    world.run("promo_a", at=night)

    assert held_back_summary(world.engine) == [
        {"campaign": "promo_a", "status": "queued", "reason": "inside quiet hours 21:00-08:00", "count": 2},
    ]
