"""The BG/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy way"):
how often a customer buys while alive, and the chance they are still alive.

A customer is described by ``x`` (repeat purchase days after the first), ``t_x`` (the time
from the first purchase to the last) and ``T`` (from the first purchase to the end of
the calibration period), time in weeks. While alive a customer buys at a Poisson rate
``lambda`` (gamma distributed across customers: shape ``r``, rate ``alpha``); after each
purchase they drop out with probability ``p`` (beta distributed: ``a``, ``b``).

Everything here is vectorised over arrays of customers (or of distinct (x, t_x, T)
combinations with weights, which is how the fit evaluates the likelihood: a million
customers have a few tens of thousands of distinct combinations). Formulas are the
paper's equations (6) (likelihood), (10) (conditional expectation) and the P(alive) of
its appendix, in logs where the terms overflow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln, gammaln, hyp2f1

from campaigns.customers.predictions.optimise import Fit, maximise

#: Where the search starts (log of each parameter = 0: every parameter 1).
_START = np.zeros(4)


@dataclass(frozen=True)
class BgNbdParameters:
    """Fitted BG/NBD parameters (time in weeks)."""

    r: float
    alpha: float
    a: float
    b: float

    def to_dict(self) -> dict[str, float]:
        """The parameters by name (as stored and printed)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BgNbdParameters:
        """Parameters as :meth:`to_dict` gave them."""
        return cls(r=float(values["r"]), alpha=float(values["alpha"]), a=float(values["a"]), b=float(values["b"]))


def _as_arrays(*values: ArrayLike) -> list[NDArray[np.float64]]:
    return [np.asarray(value, dtype=np.float64) for value in values]


def log_likelihood(parameters: BgNbdParameters, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> NDArray[np.float64]:
    """Each customer's log-likelihood (equation 6 of the paper), as an array."""
    x, t_x, T = _as_arrays(x, t_x, T)
    return _log_likelihood(parameters.r, parameters.alpha, parameters.a, parameters.b, x, t_x, T)


def _log_likelihood(r: float, alpha: float, a: float, b: float, x: NDArray[np.float64], t_x: NDArray[np.float64],
                    T: NDArray[np.float64]) -> NDArray[np.float64]:
    # L = B(a, b+x)/B(a, b) * G(r+x)/G(r) * alpha^r * [ (alpha+T)^-(r+x)
    #     + [x > 0] * a/(b+x-1) * (alpha+t_x)^-(r+x) ]
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    alive = -(r + x) * np.log(alpha + T)
    # For x = 0 the second term is absent; b + max(x, 1) - 1 keeps its log finite there.
    dropped = np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + t_x)
    top = np.maximum(alive, dropped)
    return common + top + np.log(np.exp(alive - top) + (x > 0) * np.exp(dropped - top))


def fit(x: ArrayLike, t_x: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None, *,
        max_iterations: int = 5000) -> Fit[BgNbdParameters]:
    """Maximum-likelihood parameters for customers (or weighted distinct combinations),
    by :func:`~campaigns.customers.predictions.optimise.maximise`."""
    x, t_x, T = _as_arrays(x, t_x, T)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    return maximise(lambda p: float(np.dot(w, _log_likelihood(p[0], p[1], p[2], p[3], x, t_x, T))), _START,
                    build=BgNbdParameters, max_iterations=max_iterations)


def p_alive(parameters: BgNbdParameters, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> NDArray[np.float64]:
    """P(alive at T | x, t_x, T): 1 for a customer with no repeat purchase (the model
    lets a customer drop out only right after a purchase)."""
    x, t_x, T = _as_arrays(x, t_x, T)
    r, alpha, a, b = parameters.r, parameters.alpha, parameters.a, parameters.b
    log_ratio = (np.log(a) - np.log(b + np.maximum(x, 1) - 1)
                 + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))
    return np.where(x > 0, 1.0 / (1.0 + np.exp(np.minimum(log_ratio, 700.0))), 1.0)


def expected_purchases(parameters: BgNbdParameters, t: float, x: ArrayLike, t_x: ArrayLike,
                       T: ArrayLike, *, alive: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """E[purchases in (T, T + t] | x, t_x, T] (equation 10), ``t`` in weeks; ``alive`` is
    :func:`p_alive` of the same customers when the caller has it (it does not depend on ``t``)."""
    x, t_x, T = _as_arrays(x, t_x, T)
    r, alpha, a, b = parameters.r, parameters.alpha, parameters.a, parameters.b
    if t <= 0:
        return np.zeros_like(x)
    z = t / (alpha + T + t)
    growth = 1.0 - np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t))) * hyp2f1(r + x, b + x,
                                                                                          a + b + x - 1, z)
    return (a + b + x - 1) / (a - 1) * growth * (p_alive(parameters, x, t_x, T) if alive is None else alive)


def expected_purchases_new(parameters: BgNbdParameters, t: ArrayLike) -> NDArray[np.float64]:
    """E[X(t)]: repeat purchases a new customer makes in their first ``t`` weeks
    (equation 9), the expectation the holdout check sums for each customer's own span."""
    (t,) = _as_arrays(t)
    r, alpha, a, b = parameters.r, parameters.alpha, parameters.a, parameters.b
    return (a + b - 1) / (a - 1) * (1.0 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))


__all__ = ["BgNbdParameters", "Fit", "expected_purchases", "expected_purchases_new", "fit", "log_likelihood",
           "p_alive"]
