"""The daily loyalty job: earn, take back refunds, referrals, settle debts, expire, move tiers.

:func:`run_loyalty` is what the scheduler runs at each ``[loyalty] cron`` slot (claimed
like a campaign run, so two schedulers run it once) and ``nurture loyalty run`` runs by
hand; every step is set-based and safe to repeat. Expiry reminders are not sent here:
``points_expiring`` campaigns plan them at every tick from the lots' expiry dates.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from campaigns.config.loyalty import LoyaltyConfig
from campaigns.customers.loyalty.debts import settle_debts
from campaigns.customers.loyalty.earning import EarnReport, earn
from campaigns.customers.loyalty.expiry import ExpiryReport, expire_lots
from campaigns.customers.loyalty.referrals import ReferralReport, run_referrals
from campaigns.customers.loyalty.refunds import RefundReport, reverse_refunds
from campaigns.customers.loyalty.tiers import TierReport, recompute_tiers

#: The ``campaign_run`` name the scheduler claims each ``[loyalty] cron`` slot under, as
#: it claims profile recomputes under ``PROFILES_RUN``: two schedulers run a slot once.
LOYALTY_RUN = "__loyalty__"


@dataclass
class LoyaltyRunReport:
    """What one :func:`run_loyalty` did, step by step, with the seconds each took."""

    earned: EarnReport
    refunds: RefundReport
    settled: int
    expired: ExpiryReport
    tiers: TierReport
    seconds: dict[str, float] = field(default_factory=dict)
    referrals: ReferralReport = field(default_factory=ReferralReport)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json``)."""
        return {
            "earned": {"lots": self.earned.lots, "points": self.earned.points, "skipped": self.earned.skipped},
            "refunds": {"lots": self.refunds.lots, "points": self.refunds.points, "owed": self.refunds.owed,
                        "forgiven": self.refunds.forgiven},
            "settled": self.settled,
            "expired": asdict(self.expired),
            "tiers": asdict(self.tiers),
            "referrals": self.referrals.to_dict(),
            "seconds": {step: round(value, 3) for step, value in self.seconds.items()},
        }


def run_loyalty(engine: Engine, loyalty: LoyaltyConfig, *, now: datetime) -> LoyaltyRunReport:
    """Run every step of the daily job as of ``now``."""
    seconds: dict[str, float] = {}

    def timed(step: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = func(*args, **kwargs)
        seconds[step] = time.perf_counter() - started
        return result

    earned = timed("earn", earn, engine, loyalty, now=now)
    refunds = timed("refunds", reverse_refunds, engine, loyalty, now=now)
    referrals = timed("referrals", run_referrals, engine, loyalty, now=now)

    def settle() -> int:
        with engine.begin() as conn:
            return settle_debts(conn, now=now)

    settled = timed("settle", settle)
    expired = timed("expire", expire_lots, engine, now=now)
    tiers = timed("tiers", recompute_tiers, engine, loyalty, now=now)
    return LoyaltyRunReport(earned=earned, refunds=refunds, settled=settled, expired=expired, tiers=tiers,
                            seconds=seconds, referrals=referrals)


def earn_now(engine: Engine, loyalty: LoyaltyConfig, *, now: datetime) -> EarnReport:
    """Earn what arrived since the last run and upgrade the customers who earned, at once
    (after an import, ``nurture track``, ``POST /events``); refunds are taken back too."""
    report = earn(engine, loyalty, now=now)
    refunds = reverse_refunds(engine, loyalty, now=now)
    # Referral rewards are earnings too: their referrers move up at once.
    report.customers |= run_referrals(engine, loyalty, now=now).customers
    touched = report.customers | refunds.customers
    if touched:
        recompute_tiers(engine, loyalty, now=now, customer_ids=touched)
    return report


__all__ = ["LOYALTY_RUN", "LoyaltyRunReport", "earn_now", "run_loyalty"]
