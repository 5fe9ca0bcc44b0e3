"""The Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value
curves for customer base analysis", after Colombo & Jiang 1999): what a customer's
purchases are worth on average.

Each repeat purchase day's value is gamma distributed around the customer's own mean
(shape ``p``); the customers' scale is itself gamma distributed (shape ``q``, scale ``v``).
Fitted on the customers with at least one repeat purchase: ``x`` repeat days and ``m``
their mean value. Independent of the purchase process by assumption (the paper checks
that the correlation between frequency and spend is weak; so can a user).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import gammaln

from campaigns.customers.predictions.optimise import Fit, maximise

_START = np.zeros(3)


@dataclass(frozen=True)
class GammaGammaParameters:
    """Fitted Gamma-Gamma parameters (in the currency of the orders)."""

    p: float
    q: float
    v: float

    def to_dict(self) -> dict[str, float]:
        """The parameters by name (as stored and printed)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GammaGammaParameters:
        """Parameters as :meth:`to_dict` gave them."""
        return cls(p=float(values["p"]), q=float(values["q"]), v=float(values["v"]))


def _log_likelihood(p: float, q: float, v: float, x: NDArray[np.float64],
                    m: NDArray[np.float64]) -> NDArray[np.float64]:
    # The density of the mean m of x gamma(p, nu) values, nu ~ gamma(q, v), up to the
    # constant the x values' own product contributes (the same for any parameters).
    px = p * x
    return (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + (px - 1) * np.log(m)
            + px * np.log(x) - (px + q) * np.log(x * m + v))


def log_likelihood(parameters: GammaGammaParameters, x: ArrayLike, m: ArrayLike) -> NDArray[np.float64]:
    """Each customer's log-likelihood (``x`` >= 1 repeat days of mean value ``m`` > 0)."""
    x, m = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
    return _log_likelihood(parameters.p, parameters.q, parameters.v, x, m)


def fit(x: ArrayLike, m: ArrayLike, weights: ArrayLike | None = None, *,
        max_iterations: int = 5000) -> Fit[GammaGammaParameters]:
    """Maximum-likelihood parameters for customers with repeat purchases.

    ``m`` must be positive: a customer whose repeat purchases were all free carries no
    information about spend and is left out by the caller (a log of 0 is not a value).
    """
    x, m = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    return maximise(lambda params: float(np.dot(w, _log_likelihood(params[0], params[1], params[2], x, m))),
                    _START, build=GammaGammaParameters, max_iterations=max_iterations)


def expected_spend(parameters: GammaGammaParameters, x: ArrayLike, m: ArrayLike) -> NDArray[np.float64]:
    """E[value of a purchase | x, m]: the customer's own mean, shrunk towards the
    population's ``p v / (q - 1)`` the fewer purchases it rests on (all the way for
    ``x`` = 0). Needs ``q`` > 1 (the population mean exists); NaN otherwise."""
    x, m = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
    p, q, v = parameters.p, parameters.q, parameters.v
    if q <= 1:
        return np.full_like(x, np.nan)
    m = np.where(x > 0, m, 0.0)
    return p * (v + x * m) / (p * x + q - 1)


__all__ = ["Fit", "GammaGammaParameters", "expected_spend", "fit", "log_likelihood"]
