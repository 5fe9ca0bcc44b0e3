"""``[predictions]``: the purchase-prediction models (BG/NBD for how often and whether a
customer still buys, Gamma-Gamma for what their purchases are worth).

The models are :mod:`campaigns.customers.predictions`; docs/predictions.md explains
them and how to check a fit against a holdout period.
"""

from __future__ import annotations

from pydantic import Field

from campaigns.config.base import StrictModel


class PredictionsConfig(StrictModel):
    """How the models are fitted."""

    #: Fewest customers with at least one repeat purchase (a second purchase day) for a
    #: fit: below, the parameters say more about chance than about the customers, and
    #: the fit is recorded as ``too_few`` and the previous one stays current.
    min_repeat_customers: int = Field(default=50, ge=2, le=1_000_000_000)
