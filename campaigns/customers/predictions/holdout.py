"""The calibration/holdout check of a BG/NBD fit, as the paper's tables show it.

Fit on the purchase history up to the end of a calibration period, then compare, for the
same buyers, the repeat purchase days the model expects in the holdout period that
follows with the ones they actually made: in total, and grouped by how many repeat
purchases each buyer made in calibration (0, 1, ... 7+), which is where a misfit shows
(the paper's Figure 4). Nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import sqlalchemy as sa

from campaigns.config.predictions import PredictionsConfig
from campaigns.customers.predictions import bgnbd
from campaigns.customers.predictions.fitting import ModelFits, fit_summary
from campaigns.customers.predictions.summary import DAYS_PER_WEEK, end_of, read_summary
from campaigns.errors import PredictionError
from campaigns.store.models import Order
from campaigns.store.sqltime import utc_day

#: Calibration repeat purchases from which buyers are grouped together ("7+").
TOP_GROUP = 7


@dataclass(frozen=True)
class HoldoutGroup:
    """Buyers with the same number of calibration repeat purchases (``7+`` for the rest)."""

    label: str
    customers: int
    #: Repeat purchase days in the holdout, mean per buyer.
    actual: float
    predicted: float


@dataclass(frozen=True)
class HoldoutReport:
    """The fit on the calibration period and its check on the holdout."""

    calibration_end: date
    holdout_end: date
    holdout_weeks: float
    fits: ModelFits
    #: Repeat purchase days in the holdout, summed over the calibration buyers.
    actual_total: int
    predicted_total: float
    groups: list[HoldoutGroup]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "calibration_end": self.calibration_end.isoformat(), "holdout_end": self.holdout_end.isoformat(),
            "holdout_weeks": self.holdout_weeks, "actual_total": self.actual_total,
            "predicted_total": self.predicted_total,
            "groups": [{"calibration_repeats": g.label, "customers": g.customers, "actual": g.actual,
                        "predicted": g.predicted} for g in self.groups],
        }


def holdout_purchases(conn: sa.Connection, customer_ids: np.ndarray, *, after: date, through: date) -> np.ndarray:
    """Each customer's paid purchase days in (``after``, ``through``], aligned with
    ``customer_ids``: one aggregate over the period's orders."""
    o = Order.__table__
    day = utc_day(conn.dialect.name, o.c.ordered_at)
    counts = dict(conn.execute(
        sa.select(o.c.customer_id, sa.func.count(sa.distinct(day)))
        .where(o.c.status == "paid", o.c.ordered_at >= end_of(after), o.c.ordered_at < end_of(through))
        .group_by(o.c.customer_id)).all())
    return np.array([counts.get(int(i), 0) for i in customer_ids], dtype=np.float64)


def holdout_check(conn: sa.Connection, config: PredictionsConfig, *, calibration_end: date,
                  holdout_end: date) -> HoldoutReport:
    """Fit on the history through ``calibration_end``; compare with (``calibration_end``,
    ``holdout_end``].

    Raises:
        PredictionError: the holdout ends before it starts, there is no paid order in the
            calibration period, or too few repeat buyers to fit.
    """
    if holdout_end <= calibration_end:
        raise PredictionError(f"the holdout must end after the calibration period: {holdout_end:%Y-%m-%d} is not "
                              f"after {calibration_end:%Y-%m-%d}")
    summary = read_summary(conn, as_of=calibration_end)
    fits = fit_summary(summary, config)
    if fits.bgnbd is None:
        raise PredictionError(f"no fit on the calibration period: {fits.message}")
    weeks = (holdout_end - calibration_end).days / DAYS_PER_WEEK
    predicted = bgnbd.expected_purchases(fits.bgnbd.parameters, weeks, summary.x, summary.t_x, summary.T)
    actual = holdout_purchases(conn, summary.customer_id, after=calibration_end, through=holdout_end)
    groups = []
    for repeats in range(TOP_GROUP + 1):
        chosen = summary.x >= repeats if repeats == TOP_GROUP else summary.x == repeats
        count = int(np.count_nonzero(chosen))
        groups.append(HoldoutGroup(label=f"{repeats}+" if repeats == TOP_GROUP else str(repeats), customers=count,
                                   actual=float(actual[chosen].mean()) if count else 0.0,
                                   predicted=float(predicted[chosen].mean()) if count else 0.0))
    return HoldoutReport(calibration_end=calibration_end, holdout_end=holdout_end, holdout_weeks=weeks, fits=fits,
                         actual_total=int(actual.sum()), predicted_total=float(predicted.sum()), groups=groups)


__all__ = ["TOP_GROUP", "HoldoutGroup", "HoldoutReport", "holdout_check", "holdout_purchases"]
