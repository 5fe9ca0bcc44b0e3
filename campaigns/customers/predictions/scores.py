"""Each buyer's scores from a fit: the probability they are still a customer, the purchases
to expect, their predicted customer lifetime value, and a churn-risk label.

* ``p_alive``: BG/NBD's P(alive | x, t_x, T). The model lets a customer drop out only
  right after a repeat purchase, so a buyer who has bought once has ``p_alive`` 1 however
  long ago that was: their ``expected_orders`` is what falls as time passes.
* ``expected_orders``: purchase days expected in the next ``horizon_days``.
* ``predicted_clv``: the value of the purchases expected over ``clv_horizon_days``, in
  30-day steps (the last one shorter), each step's expected purchases times the
  Gamma-Gamma expected purchase value times ``margin``, discounted at
  ``annual_discount_rate`` to today; None without a usable spend fit.
* ``churn_risk``: ``low`` from ``low_risk_p_alive`` up, ``high`` below
  ``high_risk_p_alive``, ``medium`` between.

Customers with no order have no scores at all (the caller labels them ``prospect``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from campaigns.config.predictions import PredictionsConfig
from campaigns.customers.predictions import bgnbd, gammagamma
from campaigns.customers.predictions.summary import DAYS_PER_WEEK, Summary

#: Days of one discounting step of the CLV.
CLV_STEP_DAYS = 30
LOW, MEDIUM, HIGH = "low", "medium", "high"


@dataclass(frozen=True)
class Scores:
    """The scores of a summary's buyers, aligned with its ``customer_id``."""

    customer_id: NDArray[np.int64]
    p_alive: NDArray[np.float64]
    expected_orders: NDArray[np.float64]
    #: None when the fit has no usable spend model.
    predicted_clv: NDArray[np.float64] | None
    churn_risk: list[str]


def churn_risk(p_alive: NDArray[np.float64], config: PredictionsConfig) -> list[str]:
    """The label of each ``p_alive`` by the configured bands."""
    return [LOW if p >= config.low_risk_p_alive else HIGH if p < config.high_risk_p_alive else MEDIUM
            for p in p_alive.tolist()]


def predicted_clv(purchases: bgnbd.BgNbdParameters, spend: gammagamma.GammaGammaParameters, summary: Summary,
                  config: PredictionsConfig, *, alive: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """Each buyer's discounted value over ``clv_horizon_days`` (``alive``: their p_alive,
    computed once for every step when not given)."""
    if alive is None:
        alive = bgnbd.p_alive(purchases, summary.x, summary.t_x, summary.T)
    value = gammagamma.expected_spend(spend, summary.x, summary.m) * config.margin
    total = np.zeros(len(summary))
    before = np.zeros(len(summary))
    steps = math.ceil(config.clv_horizon_days / CLV_STEP_DAYS)
    for step in range(1, steps + 1):
        days = min(step * CLV_STEP_DAYS, config.clv_horizon_days)
        upto = bgnbd.expected_purchases(purchases, days / DAYS_PER_WEEK, summary.x, summary.t_x, summary.T,
                                        alive=alive)
        # A step's purchases are valued at its end, discounted to today.
        total += (upto - before) * value / (1 + config.annual_discount_rate) ** (days / 365)
        before = upto
    return total


@dataclass(frozen=True)
class ScoreSummary:
    """How the scores of a population are distributed (``nurture predict`` prints it)."""

    customers: int
    #: Buyers per churn-risk label.
    churn_risk: dict[str, int]
    #: p_alive at the 10th, 50th and 90th percentiles.
    p_alive_quantiles: dict[str, float]
    #: Purchase days expected over the horizon, all buyers together.
    expected_orders: float
    #: Predicted CLV, all buyers together and per buyer (None without a spend fit).
    predicted_clv: float | None
    predicted_clv_mean: float | None

    @classmethod
    def of(cls, scores: Scores) -> ScoreSummary:
        """The distribution of ``scores``."""
        count = len(scores.customer_id)
        quantiles = np.quantile(scores.p_alive, [0.1, 0.5, 0.9]) if count else np.zeros(3)
        clv = scores.predicted_clv
        return cls(customers=count, churn_risk={label: scores.churn_risk.count(label) for label in (LOW, MEDIUM, HIGH)},
                   p_alive_quantiles=dict(zip(("p10", "p50", "p90"), (float(q) for q in quantiles), strict=True)),
                   expected_orders=float(scores.expected_orders.sum()),
                   predicted_clv=None if clv is None else float(clv.sum()),
                   predicted_clv_mean=None if clv is None or not count else float(clv.mean()))


def score(summary: Summary, purchases: bgnbd.BgNbdParameters, spend: gammagamma.GammaGammaParameters | None,
          config: PredictionsConfig) -> Scores:
    """Every buyer's scores under the fitted parameters."""
    alive = bgnbd.p_alive(purchases, summary.x, summary.t_x, summary.T)
    expected = bgnbd.expected_purchases(purchases, config.horizon_days / DAYS_PER_WEEK, summary.x, summary.t_x,
                                        summary.T, alive=alive)
    clv = predicted_clv(purchases, spend, summary, config, alive=alive) if spend is not None else None
    return Scores(customer_id=summary.customer_id, p_alive=alive, expected_orders=expected, predicted_clv=clv,
                  churn_risk=churn_risk(alive, config))


__all__ = ["CLV_STEP_DAYS", "HIGH", "LOW", "MEDIUM", "ScoreSummary", "Scores", "churn_risk", "predicted_clv",
           "score"]
