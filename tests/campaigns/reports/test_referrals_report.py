"""``report referrals`` on a hand-counted history, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from campaigns.config.keys import derive_key
from campaigns.config.loyalty import LoyaltyConfig, ReferralConfig
from campaigns.customers.loyalty.coupon_codes import check_character
from campaigns.customers.loyalty.referral_codes import CODE_PURPOSE, issue_codes
from campaigns.customers.loyalty.referrals import run_referrals
from campaigns.reports.customers import UNKNOWN
from campaigns.reports.referrals import referral_report
from campaigns.store.models import Customer, Event
from tests.campaigns.customers.loyalty.helpers import add_customer, add_order, set_status

KEY = derive_key("a test installation secret", CODE_PURPOSE)
NOW = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)
LOYALTY = LoyaltyConfig(enabled=True, events={}, referrals=ReferralConfig(referee_points=10))


def at(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


def signup(engine: sa.Engine, customer_id: int, key: str, *, when: datetime, code: str,
           channel: str | None = None) -> None:
    properties = {"referral_code": code} | ({"channel": channel} if channel else {})
    with engine.begin() as conn:
        conn.execute(sa.insert(Event).values(customer_id=customer_id, name="signup", occurred_at=when,
                                             properties=properties, dedupe_key=key))


def test_referrals_by_channel_by_hand(engine):
    ann, bob, cat, dan, eve = (add_customer(engine, name, at=NOW) for name in ("ann", "bob", "cat", "dan", "eve"))
    with engine.begin() as conn:
        conn.execute(sa.update(Customer).where(Customer.id == cat).values(acquisition_channel="store"))
        code = issue_codes(conn, KEY, [ann], length=8, now=NOW)[ann]
    # Hand count: wechat bob (bought: 100), dan (pending), eve (unknown code); store cat
    # (bought, refunded: 100 back); ann's own code (no channel). 10 welcome points each.
    signup(engine, bob, "1", when=at(1), code=code, channel="wechat")
    signup(engine, cat, "2", when=at(2), code=code)                       # store, by acquisition
    signup(engine, dan, "3", when=at(3), code=code, channel="wechat")
    signup(engine, eve, "4", when=at(4), code="22222222" + check_character("22222222"), channel="wechat")
    signup(engine, ann, "5", when=at(5), code=code)                       # ann's own: no channel
    add_order(engine, bob, "O-bob", at=at(6), amount=50)
    add_order(engine, cat, "O-cat", at=at(6), amount=50)
    run_referrals(engine, LOYALTY, now=at(7))
    set_status(engine, "O-cat", "refunded")
    run_referrals(engine, LOYALTY, now=at(8))

    with engine.connect() as conn:
        data = referral_report(conn)
    zero = dict.fromkeys(("signups", "referrals", "pending", "converted", "rewarded", "reversed", "refused",
                          "points_granted", "points_reversed", "welcome_points"), 0)
    assert data["channels"] == [
        zero | {"channel": "wechat", "signups": 3, "referrals": 2, "pending": 1, "converted": 1, "rewarded": 1,
                "refused": 1, "points_granted": 100, "welcome_points": 20, "refused_by": {"unknown_code": 1}},
        zero | {"channel": UNKNOWN, "signups": 1, "refused": 1, "refused_by": {"self_referral": 1}},
        zero | {"channel": "store", "signups": 1, "referrals": 1, "reversed": 1, "points_granted": 100,
                "points_reversed": 100, "welcome_points": 10, "refused_by": {}},
    ]
    assert data["total"] == zero | {
        "signups": 5, "referrals": 3, "pending": 1, "converted": 1, "rewarded": 1, "reversed": 1, "refused": 2,
        "points_granted": 200, "points_reversed": 100, "welcome_points": 30, "referrers": 1, "advocates": 1,
        "refused_by": {"unknown_code": 1, "self_referral": 1},
    }
    # Sign-ups from the third hour on: dan, eve, ann.
    with engine.connect() as conn:
        later = referral_report(conn, since=at(3))
    assert (later["total"]["signups"], later["total"]["pending"], later["total"]["refused"]) == (3, 1, 2)
    with engine.connect() as conn:
        assert referral_report(conn, until=at(1))["channels"] == []
