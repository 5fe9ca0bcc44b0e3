"""``nurture report referrals``: what members' referrals brought, by channel.

:func:`referral_report` counts, per channel (the sign-up event's ``channel`` property,
else the referee's acquisition channel; :data:`~campaigns.reports.customers.UNKNOWN`
when neither), in one ``GROUP BY`` on SQLite and PostgreSQL:

* ``signups``: sign-ups that carried a code, refused ones included;
* ``referrals``: those recorded (not refused), and of them ``pending`` (waiting for a
  first paid order, or a reward), ``converted`` (the referee bought: a paid order since
  the sign-up, not refunded since), ``rewarded`` and ``reversed`` (the rewarding order
  refunded or cancelled);
* ``refused``, and by reason (``mistyped_code``, ``unknown_code``, ``self_referral``,
  ``loop``, ``already_referred``);
* points: ``points_granted`` to referrers, ``points_reversed`` of those taken back,
  ``welcome_points`` given to referees.

The total line adds ``referrers`` (customers with a recorded referral) and
``advocates`` (customers with a converted, rewarded one: the ``advocate`` segment).
``since``/``until`` select sign-ups by time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from campaigns.customers.loyalty.ledger import ENTRIES, LOTS
from campaigns.customers.loyalty.referrals import REFERRALS, REFUSALS, REWARD_RULE, WELCOME_RULE
from campaigns.reports.customers import UNKNOWN

#: The counts of a report row, in column order.
COUNTS = ("signups", "referrals", "pending", "converted", "rewarded", "reversed", "refused",
          "points_granted", "points_reversed", "welcome_points")


def _window(since: datetime | None, until: datetime | None) -> list[sa.ColumnElement[bool]]:
    where = []
    if since is not None:
        where.append(REFERRALS.c.referred_at >= since)
    if until is not None:
        where.append(REFERRALS.c.referred_at < until)
    return where


def referral_report(conn: Connection, *, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """The report as a JSON-ready dict: ``channels`` (one row per channel, most sign-ups
    first, each with ``refused_by`` reason), ``total`` (the same over all, with
    ``referrers`` and ``advocates``), ``since``, ``until``."""
    r = REFERRALS
    ref = sa.cast(r.c.id, sa.String)
    reward = LOTS.alias("reward")
    welcome = LOTS.alias("welcome")
    taken = (sa.select(ENTRIES.c.source_ref, sa.func.sum(-ENTRIES.c.points).label("points"))
             .where(ENTRIES.c.kind == "reverse", ENTRIES.c.source == "referral")
             .group_by(ENTRIES.c.source_ref).subquery("taken"))
    channel = sa.func.coalesce(r.c.channel, UNKNOWN).label("channel")
    live = r.c.status != "refused"

    def count(condition: sa.ColumnElement[bool]) -> Any:
        return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

    def total(column: Any) -> Any:
        return sa.func.coalesce(sa.func.sum(column), 0)

    joined = (r.outerjoin(reward, sa.and_(reward.c.source == "referral", reward.c.rule == REWARD_RULE,
                                           reward.c.source_ref == ref))
              .outerjoin(welcome, sa.and_(welcome.c.source == "referral", welcome.c.rule == WELCOME_RULE,
                                          welcome.c.source_ref == ref.concat(":welcome")))
              .outerjoin(taken, taken.c.source_ref == ref))
    columns = [
        sa.func.count().label("signups"), count(live).label("referrals"),
        count(r.c.status == "pending").label("pending"),
        count(sa.and_(live, r.c.converted_at.is_not(None), r.c.status != "reversed")).label("converted"),
        count(r.c.status == "rewarded").label("rewarded"), count(r.c.status == "reversed").label("reversed"),
        count(r.c.status == "refused").label("refused"),
        total(reward.c.points).label("points_granted"), total(taken.c.points).label("points_reversed"),
        total(welcome.c.points).label("welcome_points"),
    ]
    where = _window(since, until)
    rows = conn.execute(sa.select(channel, *columns).select_from(joined).where(*where).group_by(channel)).all()
    reasons = conn.execute(
        sa.select(channel, r.c.reason, sa.func.count()).where(r.c.status == "refused", *where)
        .group_by(channel, r.c.reason)
    ).all()
    refused_by: dict[str, dict[str, int]] = {}
    for name, reason, number in reasons:
        refused_by.setdefault(name, {})[reason or UNKNOWN] = int(number)
    people = conn.execute(sa.select(
        sa.func.count(sa.distinct(sa.case((live, r.c.referrer_id)))),
        sa.func.count(sa.distinct(sa.case((sa.and_(r.c.status == "rewarded", r.c.converted_at.is_not(None)),
                                           r.c.referrer_id)))),
    ).where(*where)).one()

    def ordered(by: dict[str, int]) -> dict[str, int]:
        known = {reason: by[reason] for reason in REFUSALS if reason in by}
        return known | {reason: n for reason, n in sorted(by.items()) if reason not in known}

    channels = [{"channel": row.channel, **{name: int(getattr(row, name)) for name in COUNTS},
                 "refused_by": ordered(refused_by.get(row.channel, {}))} for row in rows]
    channels.sort(key=lambda row: (-row["signups"], row["channel"]))
    summed: dict[str, int] = {}
    for row in channels:
        for reason, number in row["refused_by"].items():
            summed[reason] = summed.get(reason, 0) + number
    totals = {name: sum(row[name] for row in channels) for name in COUNTS}
    return {
        "since": since, "until": until, "channels": channels,
        "total": totals | {"refused_by": ordered(summed), "referrers": int(people[0]), "advocates": int(people[1])},
    }


__all__ = ["COUNTS", "referral_report"]
