"""The demo's points programme: the daily loyalty job over the imported history, and one
referral from sign-up to reward, printed as the demo goes (``nurture demo``).

The demo's orders, reviews and shares earn points with seed 004's rules; a few refunded
orders give theirs back; lots past their year (or their three or six months) expire;
members reach silver and gold. Then a member brings a friend: the friend signs up with the
member's code and buys, and the member earns the referral reward at once. The scheduler
tick that follows reminds members of points about to expire and gives a coupon to those
who just reached silver (``points_reminder`` and ``tier_gift`` in config.toml).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.schema import AppConfig
from campaigns.customers.demo_data import DemoFiles
from campaigns.customers.events import record_events
from campaigns.customers.importing.files import import_file
from campaigns.customers.loyalty.balances import standing
from campaigns.customers.loyalty.daily import earn_now, run_loyalty
from campaigns.customers.loyalty.refunds import reverse_refunds
from campaigns.customers.loyalty.referral_codes import issue_codes, referral_key
from campaigns.store.models import Customer, CustomerProfile, LoyaltyMember, Order, PointsLot
from workers.cli.common import console

#: The demo's own installation secret (coupon and referral codes are keyed with one): used
#: only when the environment gives none, and only by the demo, on its own database.
DEMO_SECRET = "nurture-demo-secret-not-for-production"


def run_programme(engine: Engine, cfg: AppConfig, files: DemoFiles, *, now: datetime) -> None:
    """Run the daily loyalty job over the imported history, then import the refunds (the
    orders again, with status refunded) and take their points back; say what it did."""
    report = run_loyalty(engine, cfg.loyalty, now=now)
    for source, path in files.refunds.items():
        import_file(engine, "orders", path, source=source, identity=cfg.identity)
    refunds = reverse_refunds(engine, cfg.loyalty, now=now)
    earn_now(engine, cfg.loyalty, now=now)  # tiers of the refunded, at once
    with engine.connect() as conn:
        tiers = dict(conn.execute(sa.select(LoyaltyMember.tier, sa.func.count())
                                  .group_by(LoyaltyMember.tier)).all())
        outstanding = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(PointsLot.remaining), 0))
                                   .where(PointsLot.remaining > 0, PointsLot.expires_at > now)).scalar()
    climbed = ", ".join(f"{tiers.get(tier.name, 0)} {tier.name}" for tier in cfg.loyalty.tiers[1:])
    console.print(f"   {report.earned.points:,} points earned in {report.earned.lots:,} lots (orders, reviews, "
                  f"shares); {report.expired.points:,} expired in {report.expired.lots:,} lots (a purchase's "
                  "points last a year, a review's 3 months, a share's 6)", highlight=False)
    owed = f" ({refunds.owed:,} already spent: owed until later purchases settle them)" if refunds.owed else ""
    console.print(f"   refunds imported: {refunds.lots} orders give back the {refunds.points:,} points they earned{owed}",
                  highlight=False)
    console.print(f"   tiers: {climbed}; {outstanding:,} points outstanding "
                  f"(liability ¥{outstanding * cfg.loyalty.point_value:,.2f} at ¥{cfg.loyalty.point_value} a point)",
                  highlight=False)


def show_referral(engine: Engine, cfg: AppConfig, *, now: datetime, data_dir: Path) -> str | None:
    """A member brings a friend: the friend (one who signed up today) signs up with the
    member's code, then buys; the member's reward is earned at once. Returns the member's
    external id, for the explore hint (None when the data has nobody to show)."""
    with engine.connect() as conn:
        member = conn.execute(
            sa.select(Customer.id, Customer.external_id, Customer.name)
            .join(CustomerProfile, CustomerProfile.customer_id == Customer.id)
            .where(CustomerProfile.rfm_segment == "champions").order_by(Customer.id).limit(1)).first()
        friend = conn.execute(
            sa.select(Customer.id, Customer.external_id, Customer.name)
            .join(CustomerProfile, CustomerProfile.customer_id == Customer.id)
            .where(CustomerProfile.stage == "prospect", CustomerProfile.stage_since > now - timedelta(days=1),
                   ~sa.exists().where(Order.customer_id == Customer.id))
            .order_by(Customer.id.desc()).limit(1)).first()
    if member is None or friend is None:
        return None
    referrals = cfg.loyalty.referrals
    with engine.begin() as conn:
        code = issue_codes(conn, referral_key(cfg), [member.id], length=referrals.code_length, now=now)[member.id]
    record_events(engine, [{"customer_id": friend.external_id, "name": referrals.signup_event,
                            "event_id": f"EV-{friend.external_id}-referred", "occurred_at": now.isoformat(),
                            "properties": {referrals.code_property: code}}], now=now, rules=cfg.identity)
    earn_now(engine, cfg.loyalty, now=now)
    first_order = data_dir / "referral_order.jsonl"
    first_order.write_text(json.dumps({
        # An order id of the demo's shape (the demo resets only data of its own shapes),
        # above any the generator numbers.
        "order_id": f"O9{friend.id:07d}", "customer_id": friend.external_id,
        "ordered_at": now.isoformat(), "amount": 168.0, "channel": "ecommerce",
    }) + "\n", encoding="utf-8")
    import_file(engine, "orders", first_order, identity=cfg.identity)
    earn_now(engine, cfg.loyalty, now=now)
    with engine.connect() as conn:
        balance = standing(conn, cfg.loyalty, member.id, now=now).balance
    console.print(f"   {member.name} ({member.external_id}) shares code {code}; {friend.name} "
                  f"({friend.external_id}) signs up with it and buys for ¥168: {member.name} earns "
                  f"{referrals.reward_points} points at once (balance {balance:,})", highlight=False)
    return member.external_id


__all__ = ["DEMO_SECRET", "run_programme", "show_referral"]
