"""Member tiers: reached by points earned (or spend) over a rolling window, upgraded at
once, downgraded only after a grace period.

:func:`recompute_tiers` works out, in one ``GROUP BY`` (full-joined to the members on
PostgreSQL, grouped with the member rows on SQLite), every member's qualifying points in
``[loyalty] tier_window`` (lots earned from orders, events and referrals and not reversed;
or paid spend, with ``tier_measure = "spend"``) and the tier they qualify for, and reads
back only the members whose tier row changes:

* qualifying for a higher tier: moved up at once;
* qualifying for a lower tier: ``below_since`` is set, and once it is ``tier_grace`` old
  (still below) they move down, to the tier they now qualify for;
* qualifying again before that: ``below_since`` is cleared.

Each move is a ``profile_transition`` row of kind ``tier`` (the tier history, like stage
history), which ``tier_entered`` campaigns read. Customers without a ``loyalty_member``
row are in the lowest tier.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.loyalty import LoyaltyConfig, validity_parts
from campaigns.customers.loyalty.ledger import LOTS
from campaigns.customers.loyalty.validity import add_months
from campaigns.store.bulk import insert_rows
from campaigns.store.chunks import chunks
from campaigns.store.models import LoyaltyMember, Order, ProfileTransition

MEMBERS = LoyaltyMember.__table__
#: Lot sources that count as points earned for tiers (adjustments and debts do not).
EARNED_SOURCES = ("order", "event", "referral")


@dataclass
class TierReport:
    """What one :func:`recompute_tiers` call did."""

    upgraded: int = 0
    downgraded: int = 0
    #: Members newly below their tier's minimum (their grace period started).
    in_grace: int = 0
    #: Members who qualified again within their grace period.
    recovered: int = 0
    #: The tiers entered, by name.
    entered: dict[str, int] = field(default_factory=dict)


def window_start(loyalty: LoyaltyConfig, now: datetime) -> datetime:
    """The start of the tier window ending at ``now``: ``now`` less ``tier_window``."""
    months, days = validity_parts(loyalty.tier_window)
    moved = add_months(now.date(), -months)
    return now.replace(year=moved.year, month=moved.month, day=moved.day) - timedelta(days=days)


def _window(loyalty: LoyaltyConfig, *, now: datetime) -> tuple[sa.ColumnElement[int], sa.ColumnElement[float],
                                                                 list[sa.ColumnElement[bool]]]:
    """What counts for tiers: ``(customer column, amount, conditions)`` of the lots earned
    (or the paid orders, with ``tier_measure = "spend"``) in the window ending at ``now``."""
    start = window_start(loyalty, now)
    if loyalty.tier_measure == "spend":
        o = Order.__table__
        return (o.c.customer_id, o.c.amount - sa.func.coalesce(o.c.shipping, 0),
                [o.c.status == "paid", o.c.ordered_at > start, o.c.ordered_at <= now])
    return (LOTS.c.customer_id, LOTS.c.points,
            [LOTS.c.source.in_(EARNED_SOURCES), LOTS.c.reversed_at.is_(None),
             LOTS.c.earned_at > start, LOTS.c.earned_at <= now])


def qualifying_query(loyalty: LoyaltyConfig, *, now: datetime, customer_ids: Iterable[int] | None = None) -> sa.Subquery:
    """``(customer_id, qualifying)`` for every customer with anything in the tier window."""
    customer, amount, conditions = _window(loyalty, now=now)
    query = (sa.select(customer, sa.func.sum(amount).label("qualifying"))
             .where(*conditions)
             .group_by(customer))
    if customer_ids is not None:
        query = query.where(customer.in_(sorted(customer_ids)))
    return query.subquery("qualifying")


def _rank_of_amount(loyalty: LoyaltyConfig, amount: sa.ColumnElement[float]) -> sa.ColumnElement[int]:
    whens = [(amount >= tier.minimum, rank) for rank, tier in reversed(list(enumerate(loyalty.tiers))) if rank > 0]
    return sa.case(*whens, else_=0) if whens else sa.literal(0)


def _rank_of_name(loyalty: LoyaltyConfig, name: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
    whens = [(name == tier.name, rank) for rank, tier in enumerate(loyalty.tiers) if rank > 0]
    return sa.case(*whens, else_=0) if whens else sa.literal(0)


def recompute_tiers(engine: Engine, loyalty: LoyaltyConfig, *, now: datetime,
                    customer_ids: Iterable[int] | None = None) -> TierReport:
    """Move members between tiers as of ``now``; with ``customer_ids``, only those (the
    upgrade right after they earned)."""
    report = TierReport()
    ids = None if customer_ids is None else sorted(set(customer_ids))
    if ids is not None and not ids:
        return report
    grace_start = now - loyalty.tier_grace
    for chunk in ([None] if ids is None else chunks(ids, 2000)):
        if engine.dialect.name == "postgresql":
            query = _changing_joined(loyalty, now=now, grace_start=grace_start, chunk=chunk)
        else:
            query = _changing_grouped(loyalty, now=now, grace_start=grace_start, chunk=chunk)
        with engine.begin() as conn:
            rows = conn.execute(query).all()
            _apply(conn, loyalty, rows, now=now, grace_start=grace_start, report=report)
    return report


def _changing(target: sa.ColumnElement[int], current: sa.ColumnElement[int], below_since: sa.ColumnElement[datetime],
              grace_start: datetime) -> sa.ColumnElement[bool]:
    # Only rows whose member row changes are read back: up, back in, newly below, or
    # below for the whole grace period.
    return sa.or_(
        target > current,
        sa.and_(target == current, below_since.is_not(None)),
        sa.and_(target < current, sa.or_(below_since.is_(None), below_since <= grace_start)),
    )


def _changing_joined(loyalty: LoyaltyConfig, *, now: datetime, grace_start: datetime,
                     chunk: list[int] | None) -> sa.Select:
    """``(customer_id, target, tier, below_since)`` of the members whose row changes, on
    PostgreSQL: the window's points grouped (in parallel) and full-joined to the members,
    so those with points and those without are found by one aggregation and one hash
    join (a CTE joined twice materialised and sorted ~800k groups at 1M customers)."""
    q = qualifying_query(loyalty, now=now, customer_ids=chunk)
    m = MEMBERS
    members = sa.select(m).where(m.c.customer_id.in_(chunk)).subquery("member") if chunk is not None else m
    target = _rank_of_amount(loyalty, sa.func.coalesce(q.c.qualifying, 0))
    current = _rank_of_name(loyalty, members.c.tier)
    return (sa.select(sa.func.coalesce(q.c.customer_id, members.c.customer_id).label("customer_id"),
                      target.label("target"), members.c.tier, members.c.below_since)
            .select_from(q.outerjoin(members, members.c.customer_id == q.c.customer_id, full=True))
            .where(_changing(target, current, members.c.below_since, grace_start)))


def _changing_grouped(loyalty: LoyaltyConfig, *, now: datetime, grace_start: datetime,
                      chunk: list[int] | None) -> sa.Select:
    """The same rows as :func:`_changing_joined`, without a FULL JOIN (SQLite has one only
    since 3.39): one GROUP BY over the window's points and the member rows together, each
    member's points (0 without any) beside its tier."""
    customer, amount, conditions = _window(loyalty, now=now)
    m = MEMBERS
    earned = sa.select(customer.label("customer_id"), amount.label("qualifying"),
                       sa.cast(sa.null(), m.c.tier.type).label("tier"),
                       sa.cast(sa.null(), m.c.below_since.type).label("below_since")).where(*conditions)
    held = sa.select(m.c.customer_id, sa.literal(0).label("qualifying"), m.c.tier, m.c.below_since)
    if chunk is not None:
        earned = earned.where(customer.in_(chunk))
        held = held.where(m.c.customer_id.in_(chunk))
    facts = sa.union_all(earned, held).subquery("facts")
    tier, below_since = sa.func.max(facts.c.tier), sa.func.max(facts.c.below_since)
    target = _rank_of_amount(loyalty, sa.func.sum(facts.c.qualifying))
    return (sa.select(facts.c.customer_id, target.label("target"), tier.label("tier"), below_since.label("below_since"))
            .group_by(facts.c.customer_id)
            .having(_changing(target, _rank_of_name(loyalty, tier), below_since, grace_start)))


def _apply(conn: sa.Connection, loyalty: LoyaltyConfig, rows: list[sa.Row], *, now: datetime,
           grace_start: datetime, report: TierReport) -> None:
    members, transitions = [], []
    for row in rows:
        current = loyalty.tier_rank(row.tier)
        target = int(row.target)
        old_name = row.tier or loyalty.lowest_tier
        if target > current or (target < current and row.below_since is not None and row.below_since <= grace_start):
            new_name = loyalty.tiers[target].name
            members.append({"customer_id": row.customer_id, "tier": new_name, "tier_since": now,
                            "below_since": None, "computed_at": now})
            transitions.append({"customer_id": row.customer_id, "kind": "tier", "value": new_name,
                                "previous": old_name, "entered_at": now})
            report.entered[new_name] = report.entered.get(new_name, 0) + 1
            if target > current:
                report.upgraded += 1
            else:
                report.downgraded += 1
        elif target < current:
            members.append({"customer_id": row.customer_id, "tier": old_name, "tier_since": None,
                            "below_since": now, "computed_at": now})
            report.in_grace += 1
        else:
            members.append({"customer_id": row.customer_id, "tier": old_name, "tier_since": None,
                            "below_since": None, "computed_at": now})
            report.recovered += 1
    for chunk in chunks(members):
        moved = [row for row in chunk if row["tier_since"] is not None]
        kept = [row for row in chunk if row["tier_since"] is None]
        if moved:
            insert_rows(conn, MEMBERS, moved, finish=lambda insert: insert.on_conflict_do_update(
                index_elements=["customer_id"],
                set_={"tier": insert.excluded.tier, "tier_since": insert.excluded.tier_since,
                      "below_since": None, "computed_at": insert.excluded.computed_at}))
        if kept:
            conn.execute(sa.update(MEMBERS).where(MEMBERS.c.customer_id == sa.bindparam("member"))
                         .values(below_since=sa.bindparam("new_below_since"), computed_at=now),
                         [{"member": row["customer_id"], "new_below_since": row["below_since"]} for row in kept])
    for chunk in chunks(transitions):
        insert_rows(conn, ProfileTransition.__table__, chunk)


__all__ = ["EARNED_SOURCES", "TierReport", "qualifying_query", "recompute_tiers", "window_start"]
