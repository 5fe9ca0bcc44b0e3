"""Five members whose points lots and tiers are spelled out here, so every loyalty field,
function, template variable and reminder has an answer known by hand; shared by the
audience, sending and scheduler tests of points in campaigns.

Lots are written straight into ``points_lot`` (as the ledger would have left them), tiers
into ``loyalty_member``. At :data:`NOW`:

=====  ========================================================  =======  =========================
name   lots (source, points, remaining, earned, expires)         balance  tier
=====  ========================================================  =======  =========================
ann    order 500/300 (-355d, +10d); review 10/10 (-50d, +40d)    310      silver
bob    order 1000/1000 (-335d, +30d exactly); share 5/5 (-90d,   1000     gold
       expired exactly at NOW)
cat    none                                                      0        member (no member row)
dan    debt -50 (never expires); order 80/80 (-335d, +30d 1s);   30       member (no member row)
       order 200 reversed (-10d)
eve    order 100/0 spent (-100d, +5d); review 20/20 (-89d, +5d,  70       member (no member row)
       the same moment); adjustment 50/50 (-1d, +200d)
=====  ========================================================  =======  =========================
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from campaigns.config.loyalty import LoyaltyConfig
from campaigns.store.models import Customer, LoyaltyMember, PointsLot

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
#: The programme on, with the default tiers: member (0), silver (1000), gold (5000).
LOYALTY = LoyaltyConfig(enabled=True)


def at(days: float, seconds: float = 0) -> datetime:
    """``NOW`` moved by ``days`` (and ``seconds``): negative is the past."""
    return NOW + timedelta(days=days, seconds=seconds)


#: name -> lots as (source, ref, rule, points, remaining, earned days, expires days or
#: None, reversed); expiry as (days, seconds).
LOTS: dict[str, list[tuple[Any, ...]]] = {
    "ann": [("order", "A-1", "purchase", 500, 300, -355, (10, 0), False),
            ("event", "ann-rv", "review", 10, 10, -50, (40, 0), False)],
    "bob": [("order", "B-1", "purchase", 1000, 1000, -335, (30, 0), False),
            ("event", "bob-sh", "share", 5, 5, -90, (0, 0), False)],
    "cat": [],
    "dan": [("debt", "D-0", "refund", -50, -50, -5, None, False),
            ("order", "D-1", "purchase", 80, 80, -335, (30, 1), False),
            ("order", "D-2", "purchase", 200, 0, -10, (355, 0), True)],
    "eve": [("order", "E-1", "purchase", 100, 0, -100, (5, 0), False),
            ("event", "eve-rv", "review", 20, 20, -89, (5, 0), False),
            ("adjustment", "E-adj", "adjustment", 50, 50, -1, (200, 0), False)],
}
TIERS = {"ann": "silver", "bob": "gold"}
#: Contact and zone per name (dan has no zone: his phone's country, China, gives it).
PEOPLE = {
    "ann": {"email": "ann@x.cn", "timezone": "Asia/Shanghai"},
    "bob": {"email": "bob@x.cn", "timezone": "UTC"},
    "cat": {"email": "cat@x.cn", "timezone": "Europe/Paris"},
    "dan": {"email": "dan@x.cn", "phone": "+8613800000004", "timezone": None},
    "eve": {"email": "eve@x.cn", "timezone": "Asia/Shanghai"},
}


def add_members(engine: sa.Engine) -> dict[str, int]:
    """Write the five members; returns their customer ids by name."""
    ids: dict[str, int] = {}
    with engine.begin() as conn:
        for name, person in PEOPLE.items():
            ids[name] = conn.execute(sa.insert(Customer.__table__).values(
                external_id=name, created_at=at(-400), updated_at=NOW, attributes={}, **person,
            ).returning(Customer.__table__.c.id)).scalar_one()
            for source, ref, rule, points, remaining, earned, expires, reversed_ in LOTS[name]:
                conn.execute(sa.insert(PointsLot.__table__).values(
                    customer_id=ids[name], source=source, source_ref=ref, rule=rule, points=points,
                    remaining=remaining, spent=0, kinds=",coupons,goods," if source == "event" else ",coupons,goods,services,",
                    earned_at=at(earned), expires_at=None if expires is None else at(*expires),
                    reversed_at=at(-2) if reversed_ else None))
            if name in TIERS:
                conn.execute(sa.insert(LoyaltyMember.__table__).values(
                    customer_id=ids[name], tier=TIERS[name], tier_since=at(-30), computed_at=at(-1)))
    return ids


def lot_id(engine: sa.Engine, ref: str) -> int:
    """The id of the lot earned by ``ref``."""
    with engine.connect() as conn:
        return conn.execute(sa.select(PointsLot.id).where(PointsLot.source_ref == ref)).scalar_one()
