"""Conversion lift of a treated group over its holdout, with a confidence interval."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class Lift:
    """Treated vs holdout conversion; ``None`` where a group is empty."""

    treated_rate: float | None
    holdout_rate: float | None
    #: Absolute lift in conversion rate (treated - holdout), and its confidence interval.
    absolute: float | None
    low: float | None
    high: float | None
    #: Relative lift (absolute / holdout rate), None when the holdout never converted.
    relative: float | None
    confidence: float

    @property
    def significant(self) -> bool:
        """True when the interval excludes zero."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def conversion_lift(
    treated: int, treated_converted: int, holdout: int, holdout_converted: int, *, confidence: float = 0.95
) -> Lift:
    """Difference of two proportions with a Wald interval (normal approximation).

    >>> round(conversion_lift(1000, 120, 1000, 100).absolute, 3)
    0.02
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    treated_rate = treated_converted / treated if treated else None
    holdout_rate = holdout_converted / holdout if holdout else None
    if treated_rate is None or holdout_rate is None:
        return Lift(treated_rate, holdout_rate, None, None, None, None, confidence)
    absolute = treated_rate - holdout_rate
    error = math.sqrt(treated_rate * (1 - treated_rate) / treated + holdout_rate * (1 - holdout_rate) / holdout)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    relative = absolute / holdout_rate if holdout_rate else None
    return Lift(treated_rate, holdout_rate, absolute, absolute - z * error, absolute + z * error, relative, confidence)
