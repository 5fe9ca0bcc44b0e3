"""The points programme in figures: ``nurture report loyalty`` and the dashboard's loyalty
page (issue #16).

:func:`loyalty_report` answers, in a handful of ``GROUP BY`` statements on SQLite and
PostgreSQL whatever the number of customers:

* **outstanding points** at ``now``: what is left of the lots still valid then (the
  balance's own definition, :mod:`campaigns.customers.loyalty.balances`), the
  **liability** they stand for at ``[loyalty] point_value`` each, and how many of them
  expire within 30, 60 and 90 days. **Debts** (points taken back after they were spent,
  which later earnings settle) are shown apart: what one customer owes does not lower
  what another may redeem;
* **per month and source**: points earned, redeemed, expired, reversed (refunds) and
  adjusted by hand, each under the earn rule of the lot they belong to (``purchase``, an
  event rule such as ``review``, ``referral``, ``referral_welcome``, ``adjustment``). A
  redemption may span lots of several sources: it is split the way it was spent (its
  allocations). A positive adjustment is a lot of its own (source ``adjustment``); a
  negative one counts, signed, under the sources it took from. Redemptions are also
  counted per redeemed kind;
* **tiers**: customers per tier now (customers without a ``loyalty_member`` row are in
  the lowest tier) and, per month, the moves between tiers from the tier history
  (``profile_transition`` rows of kind ``tier``), up or down.

Months are calendar months in ``[loyalty] timezone``, named ``YYYY-MM``. Their limits are
worked out here, in Python, for the report's range (midnight on the first, in the zone,
as a UTC instant: a daylight-saving zone has two offsets a year), and the database puts
each row in its month with one ``CASE`` over those instants, the same SQL on both engines.
Only rows up to ``now`` are counted, so a report "as of" a past time leaves later ones out.

For every month, earned - redeemed - expired - reversed + adjusted is the change of the
ledger's sum over the month (every entry is counted once, a redemption's allocations
adding up to it).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.config.loyalty import LoyaltyConfig
from campaigns.customers.loyalty.debts import ALLOCATIONS
from campaigns.customers.loyalty.ledger import ENTRIES, LOTS
from campaigns.customers.loyalty.referrals import REWARD_RULE, WELCOME_RULE
from campaigns.customers.loyalty.tiers import MEMBERS
from campaigns.errors import NurtureError
from campaigns.store.models import Customer, ProfileTransition

#: How far ahead the expiry figures look, in days.
EXPIRING_WITHIN_DAYS: tuple[int, ...] = (30, 60, 90)
#: Months in the default range (this month and the eleven before it).
DEFAULT_MONTHS = 12
#: The longest range one report covers (each month is a branch of the bucketing CASE).
MAX_MONTHS = 240
#: The kind a redemption is counted under when it names none of ``[loyalty] kinds``.
OTHER_KIND = "(other)"
#: The measures counted per month and source, in the order reports show them.
MEASURES: tuple[str, ...] = ("earned", "redeemed", "expired", "reversed", "adjusted")

_MONTH = re.compile(r"(\d{4})-(\d{2})")
_TRANSITIONS = ProfileTransition.__table__


@dataclass(frozen=True)
class SourceMonth:
    """Points of one source (earn rule) in one month. All positive but ``adjusted``,
    which is signed (added less taken)."""

    month: str
    source: str
    earned: int = 0
    redeemed: int = 0
    expired: int = 0
    reversed: int = 0
    adjusted: int = 0


@dataclass(frozen=True)
class MonthTotals:
    """One month over every source, with the tier moves of the month."""

    month: str
    earned: int = 0
    redeemed: int = 0
    expired: int = 0
    reversed: int = 0
    adjusted: int = 0
    #: earned - redeemed - expired - reversed + adjusted: the ledger's change over the month.
    net: int = 0
    upgrades: int = 0
    downgrades: int = 0


@dataclass(frozen=True)
class KindMonth:
    """Points redeemed for one kind (goods, coupons ...) in one month."""

    month: str
    kind: str
    points: int


@dataclass(frozen=True)
class TierCount:
    """Customers in one tier now, and their share of all customers."""

    tier: str
    customers: int
    share: float | None


@dataclass(frozen=True)
class TierMove:
    """Customers who moved from one tier to another in one month."""

    month: str
    from_tier: str
    to_tier: str
    #: ``up`` or ``down`` (by the order of ``[[loyalty.tiers]]``).
    direction: str
    customers: int


@dataclass(frozen=True)
class LoyaltyReport:
    """What :func:`loyalty_report` found (see the module docstring for the definitions)."""

    now: datetime
    timezone: str
    point_value: float
    #: The months covered, oldest first (``YYYY-MM``).
    months: list[str]
    #: Points left in lots valid at ``now``, and the customers holding any.
    outstanding: int
    holders: int
    #: outstanding x point_value.
    liability: float
    #: Points owed (positive), and the customers owing any.
    debts: int
    debtors: int
    #: Of ``outstanding``, points that expire within N days of ``now``, by N.
    expiring: dict[int, int]
    by_source: list[SourceMonth]
    #: One row per month of ``months``, zeros included.
    totals: list[MonthTotals]
    redeemed_by_kind: list[KindMonth]
    #: Every configured tier, lowest first (then any tier a member holds that the
    #: configuration no longer names).
    tiers: list[TierCount]
    customers: int
    movements: list[TierMove] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json``, the dashboard); times stay datetimes for the caller."""
        data = asdict(self)
        data["expiring"] = [{"within_days": days, "points": points} for days, points in self.expiring.items()]
        data["debt_value"] = round(self.debts * self.point_value, 2)
        return data

    def csv_rows(self) -> list[list[Any]]:
        """The report as rows under :data:`CSV_COLUMNS`: section ``outstanding`` (one row
        per figure: name and points or value), ``source`` (month, source and the
        measures), ``kind`` (month, kind, points), ``tier`` (tier, customers, share) and
        ``movement`` (month, from tier in ``name``, to tier in ``other``, customers)."""
        blank = [""] * len(MEASURES)
        rows: list[list[Any]] = [
            ["outstanding", "", "outstanding", "", self.outstanding, "", "", *blank],
            ["outstanding", "", "liability", "", "", "", round(self.liability, 2), *blank],
            ["outstanding", "", "debts", "", self.debts, "", round(self.debts * self.point_value, 2), *blank],
            *(["outstanding", "", f"expiring_{days}d", "", points, "", "", *blank]
              for days, points in self.expiring.items()),
        ]
        rows += [["source", r.month, r.source, "", "", "", "", *(getattr(r, m) for m in MEASURES)]
                 for r in self.by_source]
        rows += [["kind", r.month, r.kind, "", r.points, "", "", *blank] for r in self.redeemed_by_kind]
        rows += [["tier", "", r.tier, "", "", r.customers, "" if r.share is None else round(r.share, 4), *blank]
                 for r in self.tiers]
        rows += [["movement", r.month, r.from_tier, r.to_tier, "", r.customers, "", *blank] for r in self.movements]
        return rows


#: Columns of :meth:`LoyaltyReport.csv_rows` (``value``: money, or a share for tiers).
CSV_COLUMNS: tuple[str, ...] = ("section", "month", "name", "other", "points", "customers", "value", *MEASURES)


def parse_month(text: str) -> date:
    """``"2026-03"`` as the first of that month; NurtureError for anything else."""
    match = _MONTH.fullmatch(text.strip())
    if match is None or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1:
        raise NurtureError(f"{text[:20]!r} is not a month: write it as YYYY-MM, e.g. 2026-03")
    return date(int(match[1]), int(match[2]), 1)


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _months_back(first: date, count: int) -> date:
    index = first.year * 12 + first.month - 1 - count
    return date(index // 12, index % 12 + 1, 1)


def month_range(zone: ZoneInfo, *, now: datetime, first: date | None = None,
                last: date | None = None) -> list[date]:
    """The first days of the months from ``first`` to ``last`` inclusive; by default the
    month holding ``now`` in ``zone`` and the :data:`DEFAULT_MONTHS` - 1 before it."""
    current = now.astimezone(zone).date().replace(day=1)
    last = last or (current if first is None or first <= current else first)
    first = first or _months_back(last, DEFAULT_MONTHS - 1)
    if first > last:
        raise NurtureError(f"--from {first:%Y-%m} is after --to {last:%Y-%m}")
    months = [first]
    while months[-1] < last:
        months.append(_next_month(months[-1]))
        if len(months) > MAX_MONTHS:
            raise NurtureError(f"a report covers {MAX_MONTHS} months at most")
    return months


def _instant(first: date, zone: ZoneInfo) -> datetime:
    # Midnight on the first, in the zone: where a daylight-saving change skips midnight,
    # zoneinfo reads it with the offset before the change, which is the day's first instant.
    return datetime(first.year, first.month, 1, tzinfo=zone).astimezone(UTC)


def _bucket(column: sa.ColumnElement[datetime], limits: list[tuple[str, datetime]]) -> sa.ColumnElement[str]:
    """The ``YYYY-MM`` of ``column``: ``limits`` are (month, its end) in order; rows are
    filtered to the range beforehand, so the last month is the ``else``."""
    if len(limits) == 1:
        return sa.literal(limits[0][0])
    return sa.case(*((column < end, month) for month, end in limits[:-1]), else_=limits[-1][0])


def _in_range(column: sa.ColumnElement[datetime], start: datetime, end: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(column >= start, column < end)


def _int(value: Any) -> int:
    # PostgreSQL sums BIGINT to NUMERIC (a Decimal): the report hands out ints.
    return int(value or 0)


def _outstanding(conn: Connection, now: datetime) -> tuple[int, int, int, int, dict[int, int]]:
    valid = sa.or_(LOTS.c.expires_at.is_(None), LOTS.c.expires_at > now)
    positive = LOTS.c.remaining > 0
    soon = [sa.func.coalesce(sa.func.sum(sa.case(
        (sa.and_(positive, LOTS.c.expires_at <= now + timedelta(days=days)), LOTS.c.remaining), else_=0)), 0)
        for days in EXPIRING_WITHIN_DAYS]
    row = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(sa.case((positive, LOTS.c.remaining), else_=0)), 0),
                  sa.func.count(sa.distinct(sa.case((positive, LOTS.c.customer_id)))),
                  sa.func.coalesce(sa.func.sum(sa.case((LOTS.c.remaining < 0, -LOTS.c.remaining), else_=0)), 0),
                  sa.func.count(sa.distinct(sa.case((LOTS.c.remaining < 0, LOTS.c.customer_id)))),
                  *soon)
        .where(LOTS.c.remaining != 0, valid)
    ).one()
    points, holders, debts, debtors, *expiring = (_int(value) for value in row)
    return points, holders, debts, debtors, dict(zip(EXPIRING_WITHIN_DAYS, expiring, strict=True))


def _kind_of(loyalty: LoyaltyConfig) -> sa.ColumnElement[str]:
    """A redemption's kind from its entry's detail (``"goods"`` or ``"goods: a note"``)."""
    detail = ENTRIES.c.detail
    # substr, not LIKE: a kind may hold '_', which LIKE reads as a wildcard.
    whens = [(sa.or_(detail == kind, sa.func.substr(detail, 1, len(kind) + 1) == kind + ":"), kind)
             for kind in loyalty.kinds]
    return sa.case(*whens, else_=OTHER_KIND) if whens else sa.literal(OTHER_KIND)


def _flows(conn: Connection, loyalty: LoyaltyConfig, limits: list[tuple[str, datetime]], start: datetime,
           end: datetime) -> tuple[dict[tuple[str, str], dict[str, int]], list[KindMonth]]:
    """Points per (month, source) and measure, and redemptions per month and kind."""
    flows: dict[tuple[str, str], dict[str, int]] = {}

    def add(month: str, source: str, measure: str, points: int) -> None:
        cell = flows.setdefault((month, source), dict.fromkeys(MEASURES, 0))
        cell[measure] += points

    when = ENTRIES.c.occurred_at
    window = _in_range(when, start, end)
    # Entries of one lot: earns, expiries, reversals and positive adjustments. Bucketed in
    # an inner query so the outer GROUP BY names a plain column (PostgreSQL would not match
    # a CASE repeated with its own bound parameters).
    own = (sa.select(_bucket(when, limits).label("month"), LOTS.c.rule.label("source"),
                     ENTRIES.c.kind.label("kind"), ENTRIES.c.points.label("points"))
           .select_from(ENTRIES.join(LOTS, LOTS.c.id == ENTRIES.c.lot_id))
           .where(window, ENTRIES.c.kind.in_(("earn", "expire", "reverse", "adjust")))
           .subquery("own"))
    measure_of = {"earn": "earned", "expire": "expired", "reverse": "reversed", "adjust": "adjusted"}
    for month, source, kind, points in conn.execute(
            sa.select(own.c.month, own.c.source, own.c.kind, sa.func.sum(own.c.points))
            .group_by(own.c.month, own.c.source, own.c.kind)):
        # Stored signed; the report shows what went as positive figures.
        add(month, source, measure_of[kind], _int(points) if kind == "adjust" else abs(_int(points)))
    # Redemptions and negative adjustments span lots: split as they were spent. (Debt
    # settlements are allocations of reversal entries, moving points between lots: left out.)
    spent = (sa.select(_bucket(when, limits).label("month"), LOTS.c.rule.label("source"),
                       ENTRIES.c.kind.label("kind"), ALLOCATIONS.c.points.label("points"))
             .select_from(ENTRIES.join(ALLOCATIONS, ALLOCATIONS.c.entry_id == ENTRIES.c.id)
                          .join(LOTS, LOTS.c.id == ALLOCATIONS.c.lot_id))
             .where(window, ENTRIES.c.kind.in_(("redeem", "adjust")), ENTRIES.c.lot_id.is_(None))
             .subquery("spent"))
    for month, source, kind, points in conn.execute(
            sa.select(spent.c.month, spent.c.source, spent.c.kind, sa.func.sum(spent.c.points))
            .group_by(spent.c.month, spent.c.source, spent.c.kind)):
        if kind == "redeem":
            add(month, source, "redeemed", _int(points))
        else:
            add(month, source, "adjusted", -_int(points))
    kinds = (sa.select(_bucket(when, limits).label("month"), _kind_of(loyalty).label("kind"),
                       ENTRIES.c.points.label("points"))
             .where(window, ENTRIES.c.kind == "redeem").subquery("kinds"))
    by_kind = [KindMonth(month, kind, -_int(points)) for month, kind, points in conn.execute(
        sa.select(kinds.c.month, kinds.c.kind, sa.func.sum(kinds.c.points)).group_by(kinds.c.month, kinds.c.kind))]
    order = {kind: index for index, kind in enumerate(loyalty.kinds)}
    by_kind.sort(key=lambda row: (row.month, order.get(row.kind, len(order)), row.kind))
    return flows, by_kind


def _tiers(conn: Connection, loyalty: LoyaltyConfig) -> tuple[int, list[TierCount]]:
    customers = _int(conn.execute(sa.select(sa.func.count()).select_from(Customer.__table__)).scalar())
    held = {tier: _int(count) for tier, count in conn.execute(
        sa.select(MEMBERS.c.tier, sa.func.count()).group_by(MEMBERS.c.tier))}
    lowest = loyalty.lowest_tier
    # Customers without a member row are in the lowest tier.
    counts = {tier.name: held.pop(tier.name, 0) for tier in loyalty.tiers}
    counts[lowest] += customers - sum(counts.values()) - sum(held.values())
    counts.update(sorted(held.items()))  # tiers since renamed or removed from the config
    return customers, [TierCount(tier, count, count / customers if customers else None)
                       for tier, count in counts.items()]


def _movements(conn: Connection, loyalty: LoyaltyConfig, limits: list[tuple[str, datetime]], start: datetime,
               end: datetime) -> list[TierMove]:
    t = _TRANSITIONS.c
    moves = (sa.select(_bucket(t.entered_at, limits).label("month"),
                       sa.func.coalesce(t.previous, loyalty.lowest_tier).label("from_tier"), t.value.label("to_tier"))
             .where(t.kind == "tier", _in_range(t.entered_at, start, end)).subquery("moves"))
    rows = conn.execute(sa.select(moves.c.month, moves.c.from_tier, moves.c.to_tier, sa.func.count())
                        .group_by(moves.c.month, moves.c.from_tier, moves.c.to_tier)).all()
    result = [TierMove(month, old, new,
                       "up" if loyalty.tier_rank(new) > loyalty.tier_rank(old) else "down", _int(count))
              for month, old, new, count in rows]
    result.sort(key=lambda m: (m.month, m.direction != "up", loyalty.tier_rank(m.from_tier),
                               loyalty.tier_rank(m.to_tier), m.from_tier, m.to_tier))
    return result


def _source_order(loyalty: LoyaltyConfig) -> dict[str, int]:
    names = ["purchase", *loyalty.events, REWARD_RULE, WELCOME_RULE, "adjustment"]
    return {name: index for index, name in enumerate(dict.fromkeys(names))}


def loyalty_report(engine: Engine, loyalty: LoyaltyConfig, *, now: datetime, first: date | None = None,
                   last: date | None = None) -> LoyaltyReport:
    """The loyalty figures as of ``now``, the monthly ones for the months ``first`` to
    ``last`` (first days of months, in ``[loyalty] timezone``; by default the last 12
    months up to ``now``'s). NurtureError for a range that is backwards or too long."""
    zone = ZoneInfo(loyalty.timezone)
    months = month_range(zone, now=now, first=first, last=last)
    names = [f"{month:%Y-%m}" for month in months]
    ends = [_instant(_next_month(month), zone) for month in months]
    limits = list(zip(names, ends, strict=True))
    start = _instant(months[0], zone)
    # Nothing after `now`: a report as of a past time leaves later rows out.
    end = min(ends[-1], now + timedelta(microseconds=1))
    with engine.connect() as conn:
        outstanding, holders, debts, debtors, expiring = _outstanding(conn, now)
        if start < end:
            flows, by_kind = _flows(conn, loyalty, limits, start, end)
            movements = _movements(conn, loyalty, limits, start, end)
        else:  # the whole range is after `now`
            flows, by_kind, movements = {}, [], []
        customers, tiers = _tiers(conn, loyalty)
    order = _source_order(loyalty)
    by_source = [SourceMonth(month, source, **values) for (month, source), values in sorted(
        flows.items(), key=lambda item: (item[0][0], order.get(item[0][1], len(order)), item[0][1]))]
    totals = []
    for month in names:
        sums = {m: sum(getattr(row, m) for row in by_source if row.month == month) for m in MEASURES}
        moved = [move for move in movements if move.month == month]
        totals.append(MonthTotals(
            month=month, **sums,
            net=sums["earned"] - sums["redeemed"] - sums["expired"] - sums["reversed"] + sums["adjusted"],
            upgrades=sum(move.customers for move in moved if move.direction == "up"),
            downgrades=sum(move.customers for move in moved if move.direction == "down")))
    return LoyaltyReport(
        now=now, timezone=loyalty.timezone, point_value=loyalty.point_value, months=names,
        outstanding=outstanding, holders=holders, liability=round(outstanding * loyalty.point_value, 2),
        debts=debts, debtors=debtors, expiring=expiring, by_source=by_source, totals=totals,
        redeemed_by_kind=by_kind, tiers=tiers, customers=customers, movements=movements,
    )


__all__ = [
    "CSV_COLUMNS", "DEFAULT_MONTHS", "EXPIRING_WITHIN_DAYS", "MAX_MONTHS", "MEASURES", "OTHER_KIND",
    "KindMonth", "LoyaltyReport", "MonthTotals", "SourceMonth", "TierCount", "TierMove", "loyalty_report",
    "month_range", "parse_month",
]
