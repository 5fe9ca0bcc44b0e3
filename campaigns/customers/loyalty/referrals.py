"""Referrals: sign-ups carrying a code become referrer -> referee pairs, and the referrer is
rewarded once, when the referee first pays (or at sign-up), and loses it if that order is
refunded.

:func:`run_referrals` runs from the daily job and after every import or event
(:func:`~campaigns.customers.loyalty.daily.earn_now`), in three set-based steps, each safe
to repeat:

1. **record**: sign-up events (``[loyalty.referrals] signup_event``) since the last run
   (a ``points_cursor`` row ``referral``, by event id, like earning) whose
   ``code_property`` holds a code become ``referral`` rows, one per event (``event_id``
   UNIQUE: a replayed event records nothing). A row is ``pending``, or ``refused`` with
   its reason: ``mistyped_code`` (the check character is wrong), ``unknown_code`` (nobody
   holds it), ``self_referral`` (the code is the referee's own, a merged record's
   included), ``loop`` (the referee referred the referrer, directly or through a chain),
   ``already_referred`` (the referee has a referrer). The referee's welcome points
   (``referee_points``) are a lot at once.
2. **reward**: a live referral whose referee has a paid order placed since the sign-up is
   *converted* (``order_id``, ``converted_at``: the first such order); with ``reward_on =
   "first_paid_order"`` that makes it ``rewarded``, with ``"signup"`` every pending one is.
   The reward is a lot of the referrer's, ``source = "referral"``, ``source_ref`` = the
   referral's id: the ledger writes it once, whatever happens (it counts for tiers).
3. **reverse**: a referral rewarded by an order since refunded or cancelled (``[loyalty.
   orders] reversed_by``) is ``reversed``: its lot is taken back like an order's (what was
   spent becomes a debt with ``negative_balance = "carry"``). It is never rewarded again.

Decisions within a batch are taken in event order against what is stored and what the
batch already decided, so two sign-ups naming each other in one import are a pair and a
refused loop, as they would be one at a time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.config.loyalty import LoyaltyConfig
from campaigns.customers.loyalty.debts import settle_debts
from campaigns.customers.loyalty.ledger import (
    ENTRIES,
    LOTS,
    NewLot,
    add_lots,
    kinds_text,
    lock_customers,
)
from campaigns.customers.loyalty.refunds import RefundReport, take_back
from campaigns.customers.loyalty.referral_codes import holders, looks_valid, normalize_code
from campaigns.customers.loyalty.validity import expires_at
from campaigns.customers.timezones import customer_zone
from campaigns.store.bulk import insert_rows
from campaigns.store.chunks import chunks
from campaigns.store.db import dialect_insert
from campaigns.store.models import Customer, Event, Order, PointsCursor, Referral

REFERRALS = Referral.__table__
#: The ``points_cursor`` row of the record step.
CURSOR = "referral"
#: Rows read per batch (one transaction each).
BATCH_ROWS = 5000
#: Why a referral is refused.
REFUSALS = ("mistyped_code", "unknown_code", "self_referral", "loop", "already_referred")
#: Lot rules: the referrer's reward and the referee's welcome points.
REWARD_RULE = "referral"
WELCOME_RULE = "referral_welcome"
_LIVE = REFERRALS.c.status != "refused"


@dataclass
class ReferralReport:
    """What one :func:`run_referrals` call did."""

    recorded: int = 0
    #: Refused sign-ups, by reason.
    refused: dict[str, int] = field(default_factory=dict)
    converted: int = 0
    rewarded: int = 0
    reward_points: int = 0
    welcome_points: int = 0
    reversed: int = 0
    #: Points taken back (positive), debts included; of those, what was already spent.
    reversed_points: int = 0
    owed: int = 0
    #: Customers whose points changed (for the tier recompute).
    customers: set[int] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json``)."""
        return {"recorded": self.recorded, "refused": dict(sorted(self.refused.items())),
                "converted": self.converted, "rewarded": self.rewarded, "reward_points": self.reward_points,
                "welcome_points": self.welcome_points, "reversed": self.reversed,
                "reversed_points": self.reversed_points, "owed": self.owed}


def run_referrals(engine: Engine, loyalty: LoyaltyConfig, *, now: datetime,
                  batch_rows: int = BATCH_ROWS) -> ReferralReport:
    """Record new sign-ups with a code, reward the converted, reverse the refunded."""
    report = ReferralReport()
    if not (loyalty.enabled and loyalty.referrals.enabled):
        return report
    fallback = ZoneInfo(loyalty.timezone)
    record_signups(engine, loyalty, now=now, report=report, fallback=fallback, batch_rows=batch_rows)
    reward_referrals(engine, loyalty, now=now, report=report, fallback=fallback, batch_rows=batch_rows)
    reverse_referrals(engine, loyalty, now=now, report=report)
    return report


# -- 1. record ---------------------------------------------------------------------------


def _cursor(conn: Connection) -> int:
    value = conn.execute(sa.select(PointsCursor.last_id).where(PointsCursor.source == CURSOR)).scalar()
    return int(value or 0)


def _advance(conn: Connection, last_id: int) -> None:
    insert = dialect_insert(conn, PointsCursor.__table__).values(source=CURSOR, last_id=last_id)
    conn.execute(insert.on_conflict_do_update(index_elements=["source"], set_={"last_id": last_id}))


def _zone(row: Any, fallback: ZoneInfo) -> ZoneInfo:
    return customer_zone({"timezone": row.timezone, "phone": row.phone}, fallback)


def ancestors(conn: Connection, customer_ids: list[int]) -> dict[int, int]:
    """``referee -> referrer`` for these customers and everyone up their referral chains
    (live referrals), in one recursive query. A chain a merge closed into a circle ends
    (UNION drops the pair seen twice)."""
    if not customer_ids:
        return {}
    r = REFERRALS.alias("r")
    parents: dict[int, int] = {}
    for chunk in chunks(sorted(set(customer_ids))):
        up = (sa.select(r.c.referee_id.label("child"), r.c.referrer_id.label("parent"))
              .where(r.c.referee_id.in_(chunk), r.c.status != "refused", r.c.referrer_id.is_not(None))
              .cte("up", recursive=True))
        step = REFERRALS.alias("step")
        up = up.union(
            sa.select(step.c.referee_id, step.c.referrer_id)
            .where(step.c.referee_id == up.c.parent, step.c.status != "refused", step.c.referrer_id.is_not(None)))
        parents.update(conn.execute(sa.select(up.c.child, up.c.parent)).all())
    return parents


def _decide(referee: int, code: str, referrer: int | None, parents: dict[int, int]) -> str | None:
    """The refusal reason of a sign-up, or None to accept it (``parents`` is updated)."""
    if referrer is None:
        return "unknown_code" if looks_valid(code) else "mistyped_code"
    if referrer == referee:
        return "self_referral"
    seen, node = set(), referrer
    while node in parents and node not in seen:
        seen.add(node)
        node = parents[node]
        if node == referee:
            return "loop"
    if referee in parents:
        return "already_referred"
    parents[referee] = referrer
    return None


def record_signups(engine: Engine, loyalty: LoyaltyConfig, *, now: datetime, report: ReferralReport,
                   fallback: ZoneInfo, batch_rows: int = BATCH_ROWS) -> None:
    """Step 1: every sign-up event since the last call that carries a code."""
    rules = loyalty.referrals
    start = (datetime.combine(loyalty.earn_from, time(0), tzinfo=fallback).astimezone(UTC)
             if loyalty.earn_from else None)
    e, c = Event.__table__, Customer.__table__
    while True:
        with engine.begin() as conn:
            after = _cursor(conn)
            # Only the sign-ups are read, by id up to the newest event now (the database
            # skips the rest of the events; the cursor moves past them all).
            top = conn.execute(sa.select(sa.func.max(e.c.id))).scalar()
            if top is None or top <= after:
                return
            rows = conn.execute(
                sa.select(e.c.id, e.c.customer_id, e.c.properties, e.c.occurred_at, c.c.acquisition_channel,
                          c.c.timezone, c.c.phone)
                .select_from(e.join(c, c.c.id == e.c.customer_id))
                .where(e.c.id > after, e.c.id <= top, e.c.name == rules.signup_event)
                .order_by(e.c.id).limit(batch_rows)
            ).all()
            signups: list[tuple[Any, str]] = []
            if rows:
                done = set(conn.execute(sa.select(REFERRALS.c.event_id).where(
                    REFERRALS.c.event_id >= rows[0].id, REFERRALS.c.event_id <= rows[-1].id)).scalars())
                for row in rows:
                    code = normalize_code((row.properties or {}).get(rules.code_property))
                    if code is None or row.id in done or (start is not None and row.occurred_at < start):
                        continue
                    signups.append((row, code))
            if signups:
                _record(conn, loyalty, signups, now=now, report=report, fallback=fallback)
            full = len(rows) == batch_rows
            _advance(conn, rows[-1].id if full else top)
        if not full:
            return


def _record(conn: Connection, loyalty: LoyaltyConfig, signups: list[tuple[Any, str]], *, now: datetime,
            report: ReferralReport, fallback: ZoneInfo) -> None:
    found = holders(conn, [code for _, code in signups])
    people = {row.customer_id for row, _ in signups} | set(found.values())
    parents = ancestors(conn, sorted(people))
    rows = []
    for event, code in signups:
        referrer = found.get(code)
        reason = _decide(event.customer_id, code, referrer, parents)
        channel = (event.properties or {}).get("channel")
        if not isinstance(channel, str) or not channel.strip():
            channel = event.acquisition_channel
        rows.append({
            "event_id": event.id, "referrer_id": referrer, "referee_id": event.customer_id, "code": code,
            "channel": channel.strip()[:32] if channel else None, "referred_at": event.occurred_at,
            "status": "refused" if reason else "pending", "reason": reason, "recorded_at": now,
        })
    written = []
    for chunk in chunks(rows):
        # No conflict target: the event recorded meanwhile (event_id) and a referee another
        # run just gave a referrer (uq_referral_referee) are both left as they are.
        written += insert_rows(conn, REFERRALS, chunk, finish=lambda insert: insert.on_conflict_do_nothing()
                               .returning(REFERRALS.c.id, REFERRALS.c.event_id, REFERRALS.c.status,
                                          REFERRALS.c.reason)).all()
    by_event = {event.id: event for event, _ in signups}
    welcome = []
    for row in written:
        if row.status == "refused":
            report.refused[row.reason] = report.refused.get(row.reason, 0) + 1
            continue
        report.recorded += 1
        event = by_event[row.event_id]
        if loyalty.referrals.referee_points:
            welcome.append(NewLot(
                customer_id=event.customer_id, source="referral", source_ref=f"{row.id}:welcome", rule=WELCOME_RULE,
                points=loyalty.referrals.referee_points, kinds=kinds_text(loyalty.referrals.redeemable),
                earned_at=event.occurred_at,
                expires_at=expires_at(event.occurred_at, loyalty.referrals.valid_for, _zone(event, fallback))))
    if welcome:
        lots = add_lots(conn, welcome, now=now)
        report.welcome_points += sum(lot.points for _, lot in lots)
        report.customers.update(lot.customer_id for _, lot in lots)
        settle_debts(conn, now=now)


# -- 2. reward ---------------------------------------------------------------------------


def _set_referrals(conn: Connection, changes: list[dict[str, Any]]) -> None:
    """Write new values to referral rows: dicts with ``ref_pk`` and the same keys."""
    if not changes:
        return
    names = sorted(name for name in changes[0] if name != "ref_pk")
    statement = (sa.update(REFERRALS).where(REFERRALS.c.id == sa.bindparam("ref_pk"))
                 .values({name: sa.bindparam(f"new_{name}") for name in names}))
    for chunk in chunks(changes):
        conn.execute(statement, [{"ref_pk": change["ref_pk"], **{f"new_{name}": change[name] for name in names}}
                                 for change in chunk])


def _reward_lot(loyalty: LoyaltyConfig, row: Any, earned_at: datetime, fallback: ZoneInfo) -> NewLot:
    rules = loyalty.referrals
    return NewLot(customer_id=row.referrer_id, source="referral", source_ref=str(row.id), rule=REWARD_RULE,
                  points=rules.reward_points, kinds=kinds_text(rules.redeemable), earned_at=earned_at,
                  expires_at=expires_at(earned_at, rules.valid_for, _zone(row, fallback)))


def _grant(conn: Connection, lots: list[NewLot], *, now: datetime, report: ReferralReport) -> None:
    if not lots:
        return
    written = add_lots(conn, lots, now=now)
    report.reward_points += sum(lot.points for _, lot in written)
    report.customers.update(lot.customer_id for _, lot in written)
    if written:
        settle_debts(conn, now=now)


def reward_referrals(engine: Engine, loyalty: LoyaltyConfig, *, now: datetime, report: ReferralReport,
                     fallback: ZoneInfo, batch_rows: int = BATCH_ROWS) -> None:
    """Step 2: conversions (the referee's first paid order since the sign-up) and rewards."""
    rules = loyalty.referrals
    on_order = rules.reward_on == "first_paid_order"
    r, o, c = REFERRALS, Order.__table__, Customer.__table__
    if not on_order:
        _reward_at_signup(engine, loyalty, now=now, report=report, fallback=fallback, batch_rows=batch_rows)
    first_order = (sa.select(o.c.id)
                   .where(o.c.customer_id == r.c.referee_id, o.c.status == "paid", o.c.ordered_at >= r.c.referred_at)
                   .order_by(o.c.ordered_at, o.c.id).limit(1).correlate(r).scalar_subquery())
    after = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(
                sa.select(r.c.id, r.c.referrer_id, r.c.status, o.c.order_id, o.c.ordered_at, c.c.timezone, c.c.phone)
                .select_from(r.join(o, o.c.id == first_order).outerjoin(c, c.c.id == r.c.referrer_id))
                .where(r.c.id > after, r.c.converted_at.is_(None), _LIVE)
                .order_by(r.c.id).limit(batch_rows)
            ).all()
            if not rows:
                return
            rewards, conversions, lots = [], [], []
            for row in rows:
                conversion = {"ref_pk": row.id, "order_id": row.order_id, "converted_at": row.ordered_at}
                if on_order and row.status == "pending":
                    rewards.append(conversion | {"status": "rewarded", "reason": "first_paid_order",
                                                 "rewarded_at": now})
                    if rules.reward_points and row.referrer_id is not None:
                        lots.append(_reward_lot(loyalty, row, row.ordered_at, fallback))
                else:  # rewarded at sign-up already, or tracked only: the conversion is all
                    conversions.append(conversion)
            report.converted += len(rows)
            report.rewarded += len(rewards)
            _set_referrals(conn, rewards)
            _set_referrals(conn, conversions)
            _grant(conn, lots, now=now, report=report)
            after = rows[-1].id
        if len(rows) < batch_rows:
            return


def _reward_at_signup(engine: Engine, loyalty: LoyaltyConfig, *, now: datetime, report: ReferralReport,
                      fallback: ZoneInfo, batch_rows: int) -> None:
    """``reward_on = "signup"``: every pending referral is rewarded, earned at its sign-up."""
    r, c = REFERRALS, Customer.__table__
    while True:
        with engine.begin() as conn:
            rows = conn.execute(
                sa.select(r.c.id, r.c.referrer_id, r.c.referred_at, c.c.timezone, c.c.phone)
                .select_from(r.outerjoin(c, c.c.id == r.c.referrer_id))
                .where(r.c.status == "pending").order_by(r.c.id).limit(batch_rows)
            ).all()
            if not rows:
                return
            _set_referrals(conn, [{"ref_pk": row.id, "status": "rewarded", "reason": "signup", "rewarded_at": now}
                                  for row in rows])
            report.rewarded += len(rows)
            if loyalty.referrals.reward_points:
                _grant(conn, [_reward_lot(loyalty, row, row.referred_at, fallback) for row in rows
                              if row.referrer_id is not None], now=now, report=report)
        if len(rows) < batch_rows:
            return


# -- 3. reverse --------------------------------------------------------------------------


def reverse_referrals(engine: Engine, loyalty: LoyaltyConfig, *, now: datetime, report: ReferralReport) -> None:
    """Step 3: take back the rewards of referrals whose rewarding order was refunded or
    cancelled (orders not ``paid`` are few; a partial index finds them)."""
    statuses = list(loyalty.orders.reversed_by)
    if not statuses:
        return
    r, o = REFERRALS, Order.__table__
    with engine.begin() as conn:
        refunded = conn.execute(
            sa.select(r.c.id, r.c.referrer_id, o.c.order_id, o.c.status)
            .select_from(o.join(r, r.c.order_id == o.c.order_id))
            .where(o.c.status != "paid", o.c.status.in_(statuses), r.c.status == "rewarded",
                   r.c.reason == "first_paid_order")
            .order_by(r.c.id)
        ).all()
        if not refunded:
            return
        # A redemption spending these lots meanwhile would be overwritten: take its lock.
        lock_customers(conn, [row.referrer_id for row in refunded if row.referrer_id is not None])
        by_ref = {str(row.id): row for row in refunded}
        lots = []
        for chunk in chunks(sorted(by_ref)):
            lots += conn.execute(
                sa.select(LOTS.c.id, LOTS.c.customer_id, LOTS.c.source_ref, LOTS.c.points, LOTS.c.remaining,
                          LOTS.c.spent)
                .where(LOTS.c.source == "referral", LOTS.c.source_ref.in_(chunk), LOTS.c.reversed_at.is_(None))
            ).all()
        taken = RefundReport()

        def detail(lot: Any) -> str:
            order = by_ref[lot.source_ref]
            return f"order {order.order_id} {order.status}: referral reward of {lot.points} points, " \
                   f"{lot.spent} already spent"

        take_back(conn, loyalty, lots, source="referral", now=now, report=taken, detail=detail)
        report.reversed_points += taken.points
        report.owed += taken.owed
        report.customers |= taken.customers
        _set_referrals(conn, [{"ref_pk": row.id, "status": "reversed", "reason": row.status[:32], "reversed_at": now}
                              for row in refunded])
        report.reversed += len(refunded)


# -- merges, audiences, views ------------------------------------------------------------


class MergeRecord(Protocol):
    """What a merge records of the values it changes (identity.merging's record)."""

    def change(self, table: sa.Table, key: Any, column: str, old: Any) -> None:
        """Remember ``column``'s old value of row ``key`` (an unmerge restores it)."""


def merge_referrals(conn: Connection, record: MergeRecord, *, survivor_id: int, merged_id: int) -> None:
    """A merge's referrals: the merged customer's, as referrer and referee, become the
    survivor's. A referral that now names the survivor twice is refused
    (``self_referral``); of the live referrals of either record as referee, the earliest
    stands and the others are refused (``already_referred``). Rewards already granted
    stay; every value changed is recorded, so an unmerge puts it back."""
    r = REFERRALS.c
    pair = [merged_id, survivor_id]
    rows = conn.execute(
        sa.select(r.id, r.referrer_id, r.referee_id, r.status, r.reason, r.referred_at)
        .where(sa.or_(r.referrer_id.in_(pair), r.referee_id.in_(pair)))
    ).all()
    if not any(merged_id in (row.referrer_id, row.referee_id) for row in rows):
        return
    values: dict[int, dict[str, Any]] = {}
    live_referee = []
    for row in rows:
        changed: dict[str, Any] = {}
        if row.referrer_id == merged_id:
            changed["referrer_id"] = survivor_id
        if row.referee_id == merged_id:
            changed["referee_id"] = survivor_id
        referrer = changed.get("referrer_id", row.referrer_id)
        referee = changed.get("referee_id", row.referee_id)
        if row.status != "refused" and referrer == referee:
            changed.update(status="refused", reason="self_referral")
        elif row.status != "refused" and referee == survivor_id:
            live_referee.append(row)
        values[row.id] = changed
    # One referrer per person: the earliest referral of either record stands.
    for row in sorted(live_referee, key=lambda row: (row.referred_at, row.id))[1:]:
        values[row.id].update(status="refused", reason="already_referred")
    changes = [(ref_id, changed) for ref_id, changed in values.items() if changed]
    by_id = {row.id: row for row in rows}
    for ref_id, changed in changes:
        for column in changed:
            record.change(REFERRALS, ref_id, column, getattr(by_id[ref_id], column))
    # The refusals first, so the partial UNIQUE index never sees two live referrals.
    for ref_id, changed in sorted(changes, key=lambda item: (item[1].get("status") != "refused", item[0])):
        conn.execute(sa.update(REFERRALS).where(r.id == ref_id).values(changed))


def converted_referrals_of(customer_id: Any) -> sa.ScalarSelect[int]:
    """SQL: how many of the customer's referrals bought (converted and rewarded, not
    reversed): ``referrals_converted >= 1`` is the ``advocate`` segment."""
    return (sa.select(sa.func.count()).select_from(REFERRALS)
            .where(REFERRALS.c.referrer_id == customer_id, REFERRALS.c.status == "rewarded",
                   REFERRALS.c.converted_at.is_not(None))
            .scalar_subquery())


def customer_referrals(conn: Connection, customer_id: int) -> dict[str, Any]:
    """One customer's referrals, for the customer view: who referred them (``referred_by``:
    external id, status, or None) and the referrals they made, by status, with the points
    their rewards earned (net of reversals)."""
    r, c = REFERRALS, Customer.__table__
    by = conn.execute(
        sa.select(c.c.external_id, r.c.status, r.c.referred_at)
        .select_from(r.join(c, c.c.id == r.c.referrer_id))
        .where(r.c.referee_id == customer_id, _LIVE)
    ).first()
    counts = Counter(dict(conn.execute(
        sa.select(r.c.status, sa.func.count()).where(r.c.referrer_id == customer_id).group_by(r.c.status)
    ).all()))
    ids = sa.select(sa.cast(r.c.id, sa.String)).where(r.c.referrer_id == customer_id)
    points = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(ENTRIES.c.points), 0))
        .where(ENTRIES.c.source == "referral", ENTRIES.c.customer_id == customer_id,
               ENTRIES.c.source_ref.in_(ids))
    ).scalar_one()
    return {
        "referred_by": {"customer_id": by.external_id, "status": by.status, "referred_at": by.referred_at}
        if by else None,
        "referrals": {status: counts.get(status, 0) for status in ("pending", "rewarded", "reversed", "refused")},
        "points": int(points),
    }


__all__ = [
    "BATCH_ROWS",
    "CURSOR",
    "REFERRALS",
    "REFUSALS",
    "REWARD_RULE",
    "WELCOME_RULE",
    "MergeRecord",
    "ReferralReport",
    "ancestors",
    "converted_referrals_of",
    "customer_referrals",
    "merge_referrals",
    "record_signups",
    "reverse_referrals",
    "reward_referrals",
    "run_referrals",
]
