"""Every buyer's purchase history as the models read it, from one SQL aggregate.

As the papers count it: a customer's purchases are their **purchase days** (several orders
on one day are one purchase, of their summed value); ``x`` is the number of purchase days
after the first, ``t_x`` the time from the first to the last, ``T`` from the first to the
end of the period, in weeks; ``m`` the mean value of the repeat days (0 when ``x`` = 0).
Only paid orders count, and days are UTC calendar days.

The database does the grouping (orders by customer and day, then by customer); Python
receives one row per buyer as arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from campaigns.errors import PredictionError
from campaigns.store.models import Order
from campaigns.store.sqltime import utc_day

#: Days in the papers' unit of time.
DAYS_PER_WEEK = 7.0
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class Summary:
    """One entry per buyer (customer with a paid order in the period), in customer id order."""

    customer_id: NDArray[np.int64]
    #: Repeat purchase days.
    x: NDArray[np.float64]
    #: Weeks from the first purchase day to the last.
    t_x: NDArray[np.float64]
    #: Weeks from the first purchase day to the end of the period.
    T: NDArray[np.float64]
    #: Mean value of a repeat purchase day (0 without one).
    m: NDArray[np.float64]
    #: The last day of the period (inclusive).
    as_of: date

    def __len__(self) -> int:
        return len(self.customer_id)

    @property
    def repeaters(self) -> int:
        """Buyers with at least one repeat purchase day."""
        return int(np.count_nonzero(self.x > 0))


def day_number(day: date) -> int:
    """``day`` as whole days since 1970-01-01 (what :func:`~campaigns.store.sqltime.utc_day` gives)."""
    return (day - _EPOCH).days


def end_of(day: date) -> datetime:
    """The first instant after ``day`` (UTC): orders before it are in a period ending on ``day``."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def read_summary(conn: sa.Connection, *, as_of: date, since: date | None = None) -> Summary:
    """The summary of every buyer's paid orders up to and including ``as_of`` (UTC days);
    only buyers whose first purchase is on or after ``since`` when it is given.

    Raises:
        PredictionError: no paid order on or before ``as_of``.
    """
    o = Order.__table__
    day = utc_day(conn.dialect.name, o.c.ordered_at).label("day")
    days = (
        sa.select(o.c.customer_id, day, sa.func.sum(o.c.amount).label("spend"))
        .where(o.c.status == "paid", o.c.ordered_at < end_of(as_of))
        .group_by(o.c.customer_id, day)
        .subquery("days")
    )
    firsts = sa.select(days, sa.func.min(days.c.day).over(partition_by=days.c.customer_id).label("first")) \
        .subquery("firsts")
    repeat = firsts.c.day > firsts.c.first
    query = (
        sa.select(
            firsts.c.customer_id,
            (sa.func.count() - 1).label("x"),
            sa.func.min(firsts.c.day).label("first"),
            sa.func.max(firsts.c.day).label("last"),
            sa.func.coalesce(sa.func.sum(sa.case((repeat, firsts.c.spend), else_=0)), 0).label("repeat_spend"),
        )
        .group_by(firsts.c.customer_id)
        .order_by(firsts.c.customer_id)
    )
    if since is not None:
        query = query.having(sa.func.min(firsts.c.day) >= day_number(since))
    rows = conn.execute(query).all()
    if not rows and since is None:
        first = conn.execute(sa.select(sa.func.min(o.c.ordered_at)).where(o.c.status == "paid")).scalar()
        later = f"; the first is on {first:%Y-%m-%d}" if first is not None else "; there is none yet"
        raise PredictionError(f"no paid order on or before {as_of:%Y-%m-%d}{later}")
    # Amounts are in cents: rounded to them, the sums are the same on SQLite (which adds
    # binary floats) and PostgreSQL (exact NUMERIC), so the fits and scores are too.
    data = np.array([(r.customer_id, r.x, r.first, r.last, round(float(r.repeat_spend or 0), 2)) for r in rows],
                    dtype=np.float64).reshape(-1, 5)
    customer_id, x, first, last, repeat_spend = data.T
    end = day_number(as_of)
    return Summary(
        customer_id=customer_id.astype(np.int64),
        x=x,
        t_x=(last - first) / DAYS_PER_WEEK,
        T=(end - first) / DAYS_PER_WEEK,
        m=np.divide(repeat_spend, x, out=np.zeros_like(x), where=x > 0),
        as_of=as_of,
    )


__all__ = ["DAYS_PER_WEEK", "Summary", "day_number", "end_of", "read_summary"]
