"""``[predictions]``: the purchase-prediction models (BG/NBD for how often and whether a
customer still buys, Gamma-Gamma for what their purchases are worth) and the scores they
give each buyer.

The models are :mod:`campaigns.customers.predictions`; docs/predictions.md explains
them and how to check a fit against a holdout period.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from campaigns.config.base import StrictModel
from campaigns.config.values import FiniteFloat


class PredictionsConfig(StrictModel):
    """How the models are fitted and what the scores look ahead to."""

    #: Fewest customers with at least one repeat purchase (a second purchase day) for a
    #: fit: below, the parameters say more about chance than about the customers, and
    #: the fit is recorded as ``too_few`` and the previous one stays current.
    min_repeat_customers: int = Field(default=50, ge=2, le=1_000_000_000)
    #: ``expected_orders`` counts the purchase days expected in the next this many days.
    horizon_days: int = Field(default=90, ge=1, le=3650)
    #: ``predicted_clv`` adds up the value expected over the next this many days ...
    clv_horizon_days: int = Field(default=365, ge=1, le=3650)
    #: ... times this share of each purchase's value that is profit (1: revenue) ...
    margin: FiniteFloat = Field(default=1.0, gt=0, le=1)
    #: ... discounted at this yearly rate (0.1: a purchase a year out is worth 1/1.1).
    annual_discount_rate: FiniteFloat = Field(default=0.10, ge=0, le=1)
    #: ``churn_risk`` is ``low`` from this ``p_alive`` up ...
    low_risk_p_alive: FiniteFloat = Field(default=0.7, gt=0, le=1)
    #: ... ``high`` below this one, ``medium`` between.
    high_risk_p_alive: FiniteFloat = Field(default=0.3, ge=0, lt=1)

    @model_validator(mode="after")
    def _ordered_bands(self) -> PredictionsConfig:
        if self.high_risk_p_alive >= self.low_risk_p_alive:
            raise ValueError("high_risk_p_alive must be below low_risk_p_alive (high risk is the lower p_alive)")
        return self
