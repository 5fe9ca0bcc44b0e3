"""When a lot of points expires: its validity applied to the local date it was earned.

A lot is valid through whole local days: points earned at any time on 15 March 2026
(the customer's date) with a validity of ``"1y"`` can be spent through 14 March 2027 and
expire at 00:00 on 15 March 2027, the customer's time. A calendar rule ends the lot with
a period: ``"quarter_after"`` earned on 15 March 2026 expires at 00:00 on 1 July 2026
(the end of the quarter after the one it was earned in). Months are calendar months,
clamped to a shorter month's last day: earned on 30 November with ``"3mo"``, a lot
expires at 00:00 on 28 February (29th in a leap year).
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from campaigns.config.loyalty import validity_parts


def add_months(day: date, months: int) -> date:
    """``day`` moved by ``months`` calendar months, clamped to the end of a shorter month."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def _period_start(day: date, months: int) -> date:
    # The first day of the period of ``months`` months (1, 3 or 12) that holds ``day``.
    first_month = (day.month - 1) // months * months + 1
    return date(day.year, first_month, 1)


#: Calendar rules: (period length in months, periods after the current one).
_CALENDAR = {
    "month_end": (1, 0), "month_after": (1, 1),
    "quarter_end": (3, 0), "quarter_after": (3, 1),
    "year_end": (12, 0), "year_after": (12, 1),
}


def expiry_date(earned_on: date, validity: str) -> date:
    """The first local day on which a lot earned on ``earned_on`` is no longer valid."""
    if validity in _CALENDAR:
        months, after = _CALENDAR[validity]
        return add_months(_period_start(earned_on, months), months * (after + 1))
    months, days = validity_parts(validity)
    return add_months(earned_on, months) + timedelta(days=days)


def expires_at(earned_at: datetime, validity: str, zone: ZoneInfo) -> datetime:
    """When a lot earned at ``earned_at`` (aware) expires: local midnight of
    :func:`expiry_date` in ``zone``, in UTC."""
    local_day = earned_at.astimezone(zone).date()
    midnight = datetime.combine(expiry_date(local_day, validity), time(0), tzinfo=zone)
    return midnight.astimezone(UTC)


__all__ = ["add_months", "expires_at", "expiry_date"]
