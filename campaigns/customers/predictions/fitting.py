"""Fitting the purchase models on every buyer's history, and keeping the fits.

:func:`fit_summary` fits BG/NBD on the distinct (x, t_x, T) combinations of a
:class:`~campaigns.customers.predictions.summary.Summary` weighted by how many buyers
share each (a million buyers have a few tens of thousands), and Gamma-Gamma on the
repeaters whose repeat purchases had a value. :func:`fit_and_store` reads the summary,
fits, and writes a ``prediction_fit`` row whatever happened: ``fitted`` (the scores use
the latest such row), ``not_converged`` or ``too_few`` (fewer repeaters than
``[predictions] min_repeat_customers``), so a failed fit keeps the previous parameters and
says why, and gives the distribution of the buyers' scores under the fit now current.
:func:`current_fit` is the fit the scores use.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.predictions import PredictionsConfig
from campaigns.customers.predictions import bgnbd, gammagamma
from campaigns.customers.predictions.optimise import Fit
from campaigns.customers.predictions.scores import ScoreSummary, score
from campaigns.customers.predictions.summary import Summary, read_summary
from campaigns.store.models import PredictionFit

FITTED = "fitted"
NOT_CONVERGED = "not_converged"
TOO_FEW = "too_few"


@dataclass(frozen=True)
class ModelFits:
    """What fitting a summary gave: both models' fits (None when not attempted)."""

    status: str
    customers: int
    repeaters: int
    bgnbd: Fit[bgnbd.BgNbdParameters] | None
    gamma_gamma: Fit[gammagamma.GammaGammaParameters] | None
    #: Repeaters Gamma-Gamma was fitted on (those whose repeat days had a value).
    gamma_gamma_customers: int
    #: Why the fit is not usable, or what was left out.
    message: str | None
    #: Distinct (x, t_x, T) the BG/NBD likelihood was evaluated over.
    combinations: int = 0


@dataclass(frozen=True)
class StoredFit:
    """A ``prediction_fit`` row the scores can use."""

    id: int
    as_of: date
    fitted_at: datetime
    customers: int
    repeaters: int
    bgnbd: bgnbd.BgNbdParameters
    bgnbd_log_likelihood: float
    gamma_gamma: gammagamma.GammaGammaParameters | None
    gamma_gamma_log_likelihood: float | None
    gamma_gamma_customers: int


@dataclass(frozen=True)
class FitReport:
    """What :func:`fit_and_store` did: this fit, and the fit now current."""

    as_of: date
    fits: ModelFits
    #: The row written for this fit.
    fit_id: int
    #: The fit the scores use after this one: this one when it is usable, else the
    #: previous usable one (None if there never was one).
    current: StoredFit | None
    #: The distribution of the buyers' scores under the current fit (None without one).
    scores: ScoreSummary | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``nurture predict --json``)."""
        fits = self.fits
        return {
            "as_of": self.as_of.isoformat(),
            "status": fits.status,
            "message": fits.message,
            "customers": fits.customers,
            "repeaters": fits.repeaters,
            "combinations": fits.combinations,
            "bgnbd": None if fits.bgnbd is None else {
                **fits.bgnbd.parameters.to_dict(), "log_likelihood": fits.bgnbd.log_likelihood,
                "converged": fits.bgnbd.converged, "evaluations": fits.bgnbd.evaluations},
            "gamma_gamma": None if fits.gamma_gamma is None else {
                **fits.gamma_gamma.parameters.to_dict(), "log_likelihood": fits.gamma_gamma.log_likelihood,
                "converged": fits.gamma_gamma.converged, "evaluations": fits.gamma_gamma.evaluations,
                "customers": fits.gamma_gamma_customers},
            "fit_id": self.fit_id,
            "current": None if self.current is None else {
                "fit_id": self.current.id, "as_of": self.current.as_of.isoformat(),
                "kept_previous": self.current.id != self.fit_id},
            "scores": None if self.scores is None else asdict(self.scores),
            "seconds": self.seconds,
        }


def fit_summary(summary: Summary, config: PredictionsConfig) -> ModelFits:
    """Fit both models on ``summary``; :data:`TOO_FEW` without enough repeaters."""
    customers, repeaters = len(summary), summary.repeaters
    if repeaters < config.min_repeat_customers:
        return ModelFits(status=TOO_FEW, customers=customers, repeaters=repeaters, bgnbd=None, gamma_gamma=None,
                         gamma_gamma_customers=0,
                         message=f"{repeaters:,} customer(s) with a repeat purchase: a fit needs at least "
                                 f"{config.min_repeat_customers:,} ([predictions] min_repeat_customers)")
    # Buyers with the same history have the same likelihood: evaluate each once, weighted.
    combinations, weights = np.unique(np.column_stack((summary.x, summary.t_x, summary.T)), axis=0,
                                      return_counts=True)
    purchases = bgnbd.fit(combinations[:, 0], combinations[:, 1], combinations[:, 2], weights)
    valued = (summary.x > 0) & (summary.m > 0)
    spend = gammagamma.fit(summary.x[valued], summary.m[valued]) if np.count_nonzero(valued) >= 2 else None
    notes = []
    if not purchases.converged:
        notes.append(f"BG/NBD did not converge ({purchases.message})")
    if spend is None:
        notes.append("Gamma-Gamma not fitted: fewer than 2 repeat customers whose repeat purchases had a value")
    elif not spend.converged:
        notes.append(f"Gamma-Gamma did not converge ({spend.message}): no predicted CLV")
    elif spend.parameters.q <= 1:
        notes.append(f"Gamma-Gamma's q = {spend.parameters.q:.3f} <= 1 (no population mean spend): no predicted CLV")
    return ModelFits(status=FITTED if purchases.converged else NOT_CONVERGED, customers=customers,
                     repeaters=repeaters, bgnbd=purchases, gamma_gamma=spend,
                     gamma_gamma_customers=int(np.count_nonzero(valued)) if spend is not None else 0,
                     message="; ".join(notes) or None, combinations=len(weights))


def _usable_spend(fits: ModelFits) -> Fit[gammagamma.GammaGammaParameters] | None:
    spend = fits.gamma_gamma
    return spend if spend is not None and spend.converged and spend.parameters.q > 1 else None


def fit_and_store(engine: Engine, config: PredictionsConfig, *, as_of: date, now: datetime) -> FitReport:
    """Read the summary as of ``as_of``, fit, and record the fit (usable or not).

    Raises:
        PredictionError: no paid order on or before ``as_of``.
    """
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with engine.connect() as conn:
        summary = read_summary(conn, as_of=as_of)
    seconds["summary"] = time.perf_counter() - started
    started = time.perf_counter()
    fits = fit_summary(summary, config)
    seconds["fit"] = time.perf_counter() - started
    spend = _usable_spend(fits)
    with engine.begin() as conn:
        fit_id = conn.execute(sa.insert(PredictionFit.__table__).values(
            as_of=as_of, fitted_at=now, status=fits.status, customers=fits.customers, repeaters=fits.repeaters,
            bgnbd=fits.bgnbd.parameters.to_dict() if fits.bgnbd else None,
            bgnbd_log_likelihood=fits.bgnbd.log_likelihood if fits.bgnbd else None,
            gamma_gamma=spend.parameters.to_dict() if spend else None,
            gamma_gamma_log_likelihood=spend.log_likelihood if spend else None,
            gamma_gamma_customers=fits.gamma_gamma_customers if spend else 0,
            message=(fits.message or "")[:512] or None,
        ).returning(PredictionFit.__table__.c.id)).scalar_one()
        current = current_fit(conn)
    scores = None
    if current is not None:
        started = time.perf_counter()
        scores = ScoreSummary.of(score(summary, current.bgnbd, current.gamma_gamma, config))
        seconds["scores"] = time.perf_counter() - started
    return FitReport(as_of=as_of, fits=fits, fit_id=fit_id, current=current, scores=scores, seconds=seconds)


def current_fit(conn: sa.Connection) -> StoredFit | None:
    """The latest usable fit (the one with the latest ``as_of``, then the latest made)."""
    f = PredictionFit.__table__
    row = conn.execute(sa.select(f).where(f.c.status == FITTED).order_by(f.c.as_of.desc(), f.c.id.desc())
                       .limit(1)).mappings().first()
    if row is None:
        return None
    return StoredFit(
        id=row["id"], as_of=row["as_of"], fitted_at=row["fitted_at"], customers=row["customers"],
        repeaters=row["repeaters"], bgnbd=bgnbd.BgNbdParameters.from_dict(row["bgnbd"]),
        bgnbd_log_likelihood=row["bgnbd_log_likelihood"],
        gamma_gamma=gammagamma.GammaGammaParameters.from_dict(row["gamma_gamma"]) if row["gamma_gamma"] else None,
        gamma_gamma_log_likelihood=row["gamma_gamma_log_likelihood"],
        gamma_gamma_customers=row["gamma_gamma_customers"],
    )


def latest_attempt(conn: sa.Connection) -> dict[str, Any] | None:
    """The last fit attempted, usable or not (``nurture status`` says why scores are empty)."""
    f = PredictionFit.__table__
    row = conn.execute(sa.select(f.c.id, f.c.as_of, f.c.fitted_at, f.c.status, f.c.message, f.c.repeaters)
                       .order_by(f.c.id.desc()).limit(1)).mappings().first()
    return dict(row) if row is not None else None


__all__ = ["FITTED", "NOT_CONVERGED", "TOO_FEW", "FitReport", "ModelFits", "StoredFit", "current_fit",
           "fit_and_store", "fit_summary", "latest_attempt"]
