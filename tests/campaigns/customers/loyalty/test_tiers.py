"""Member tiers on a hand-computed timeline (SQLite and PostgreSQL): up at once, down only
after the grace period, back within it without a move, and each move in the tier history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from campaigns.config.loyalty import LoyaltyConfig, TierConfig
from campaigns.customers.loyalty.daily import earn_now
from campaigns.customers.loyalty.earning import earn
from campaigns.customers.loyalty.refunds import reverse_refunds
from campaigns.customers.loyalty.tiers import recompute_tiers, window_start
from campaigns.store.models import LoyaltyMember, ProfileTransition
from tests.campaigns.customers.loyalty.helpers import add_customer, add_order, set_status

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
LOYALTY = LoyaltyConfig(
    enabled=True,
    tiers=(TierConfig(name="member", minimum=0), TierConfig(name="silver", minimum=100, multiplier=2),
           TierConfig(name="gold", minimum=500)),
    tier_window="12mo", tier_grace=timedelta(days=30),
)


def member(engine: sa.Engine, customer: int) -> tuple[str, datetime | None] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(LoyaltyMember.tier, LoyaltyMember.below_since)
                           .where(LoyaltyMember.customer_id == customer)).first()
    return None if row is None else (row.tier, row.below_since)


def history(engine: sa.Engine, customer: int) -> list[tuple[str | None, str, datetime]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            sa.select(ProfileTransition.previous, ProfileTransition.value, ProfileTransition.entered_at)
            .where(ProfileTransition.customer_id == customer, ProfileTransition.kind == "tier")
            .order_by(ProfileTransition.id))]


def test_up_at_once_down_after_grace(engine: sa.Engine) -> None:
    ann = add_customer(engine, "ann", at=T0)
    add_order(engine, ann, "O-1", at=T0, amount=120)
    earn_now(engine, LOYALTY, now=T0)                       # 120 points: silver at once
    assert member(engine, ann) == ("silver", None)
    # In silver, points are doubled: 60 paid earn 120 (qualifying 240: still silver).
    add_order(engine, ann, "O-2", at=T0 + timedelta(days=1), amount=60)
    earn_now(engine, LOYALTY, now=T0 + timedelta(days=1))
    assert member(engine, ann) == ("silver", None)

    # O-1 refunded: 120 qualifying left (O-2), still silver; then O-2 refunded: 0 qualifying.
    set_status(engine, "O-1", "refunded")
    set_status(engine, "O-2", "refunded")
    day10 = T0 + timedelta(days=10)
    reverse_refunds(engine, LOYALTY, now=day10)
    report = recompute_tiers(engine, LOYALTY, now=day10)
    assert (report.in_grace, report.downgraded) == (1, 0)
    assert member(engine, ann) == ("silver", day10)
    # 29 days 23 hours later: still in grace. 30 days: down to member.
    assert recompute_tiers(engine, LOYALTY, now=day10 + timedelta(days=30, hours=-1)).downgraded == 0
    assert member(engine, ann) == ("silver", day10)
    down = recompute_tiers(engine, LOYALTY, now=day10 + timedelta(days=30))
    assert (down.downgraded, down.entered) == (1, {"member": 1})
    assert member(engine, ann) == ("member", None)
    assert history(engine, ann) == [("member", "silver", T0), ("silver", "member", day10 + timedelta(days=30))]


def test_qualifying_again_within_grace_keeps_the_tier(engine: sa.Engine) -> None:
    bo = add_customer(engine, "bo", at=T0)
    add_order(engine, bo, "O-1", at=T0, amount=150)
    earn_now(engine, LOYALTY, now=T0)
    # A year later the points leave the window: grace starts.
    year = T0 + timedelta(days=366)
    recompute_tiers(engine, LOYALTY, now=year)
    assert member(engine, bo) == ("silver", year)
    add_order(engine, bo, "O-2", at=year + timedelta(days=5), amount=60)   # x2: 120 qualifying
    earn_now(engine, LOYALTY, now=year + timedelta(days=5))
    report = recompute_tiers(engine, LOYALTY, now=year + timedelta(days=40))
    assert (report.recovered, report.downgraded) == (0, 0)  # already recovered at the upgrade check
    assert member(engine, bo) == ("silver", None)
    assert history(engine, bo) == [("member", "silver", T0)]


def test_a_jump_up_two_tiers_and_a_drop_to_the_tier_still_held(engine: sa.Engine) -> None:
    cy = add_customer(engine, "cy", at=T0)
    add_order(engine, cy, "big", at=T0, amount=600)
    earn(engine, LOYALTY, now=T0)
    assert recompute_tiers(engine, LOYALTY, now=T0).entered == {"gold": 1}
    add_order(engine, cy, "small", at=T0 + timedelta(days=200), amount=110)   # gold x1: 110
    earn(engine, LOYALTY, now=T0 + timedelta(days=200))
    later = T0 + timedelta(days=370)                       # only "small" (110) in the window
    recompute_tiers(engine, LOYALTY, now=later)
    recompute_tiers(engine, LOYALTY, now=later + timedelta(days=30))
    assert member(engine, cy) == ("silver", None)


def test_the_window_is_calendar_months() -> None:
    now = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
    assert window_start(LOYALTY, now) == datetime(2025, 3, 31, 12, 0, tzinfo=UTC)
    six = LoyaltyConfig(tier_window="6mo")
    assert window_start(six, datetime(2026, 8, 31, tzinfo=UTC)) == datetime(2026, 2, 28, tzinfo=UTC)
