"""``nurture predict``: fit the purchase models (BG/NBD, Gamma-Gamma) on every buyer's
history, or check a fit against a holdout period.

Presentation only: the work is :mod:`campaigns.customers.predictions`; docs/predictions.md.
"""

from __future__ import annotations

import sys
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from workers.cli.common import ConfigOption, JsonOption, console, engine_for, err_console, friendly_errors, \
    load_app_config
from workers.cli.tables import key_values, print_json, print_table, titled_table, when

if TYPE_CHECKING:  # the models (numpy, scipy) are imported by the command, not at start-up
    from campaigns.customers.predictions.holdout import HoldoutReport


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date, e.g. 1997-09-30", param_hint=option) from None


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


@friendly_errors
def predict(
    as_of: Annotated[str | None, typer.Option(
        "--as-of", metavar="DATE",
        help="Fit on the paid orders up to and including this day (UTC); default: yesterday.")] = None,
    holdout_from: Annotated[str | None, typer.Option(
        "--holdout-from", metavar="DATE",
        help="Check instead of fitting for the scores: fit on the orders before this day and compare the "
             "repeat purchases predicted from this day to --as-of with the actual ones. Nothing is stored.")] = None,
    config: ConfigOption = Path("config.toml"),
    as_json: JsonOption = False,
) -> None:
    """Fit BG/NBD and Gamma-Gamma on every buyer's purchase days and keep the fit.

    Prints the parameters (BG/NBD r, alpha, a, b in weeks; Gamma-Gamma p, q, v), the
    log-likelihoods, whether the optimiser converged, and how the buyers' scores under the
    fit are distributed (p_alive, churn risk, expected orders, predicted CLV). A fit that does not converge,
    or with fewer repeat buyers than `[predictions] min_repeat_customers`, is recorded
    with the reason and the previous fit stays the one the scores use.

    With --holdout-from: the calibration/holdout check of the papers, predicted against
    actual repeat purchase days in the holdout, in total and by repeat purchases in
    calibration (0, 1, ... 7+).
    """
    from campaigns.customers.predictions.fitting import fit_and_store
    from campaigns.customers.predictions.holdout import holdout_check
    from campaigns.store.models import utcnow

    now = utcnow()
    day = _day(as_of, "--as-of") or (now.date() - timedelta(days=1))
    holdout = _day(holdout_from, "--holdout-from")
    cfg = load_app_config(config)
    engine = engine_for(cfg)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console,
                  disable=as_json or not sys.stderr.isatty(), transient=True) as progress:
        progress.add_task("fitting" if holdout is None else "fitting on the calibration period", total=None)
        if holdout is not None:
            with engine.connect() as conn:
                check = holdout_check(conn, cfg.predictions, calibration_end=holdout - timedelta(days=1),
                                      holdout_end=day)
        else:
            report = fit_and_store(engine, cfg.predictions, as_of=day, now=now)
    if holdout is not None:
        _print_holdout(check, as_json=as_json)
        return
    if as_json:
        print_json(report.to_dict())
        return
    fits = report.fits
    rows = [
        ("as of", f"{report.as_of:%Y-%m-%d} (paid orders through this day, UTC)"),
        ("buyers", f"{fits.customers:,} ({fits.repeaters:,} with a repeat purchase"
                   + (f"; {fits.combinations:,} distinct histories)" if fits.combinations else ")")),
        ("status", fits.status),
    ]
    if fits.bgnbd is not None:
        b = fits.bgnbd
        rows.append(("BG/NBD", f"r {_number(b.parameters.r)}, alpha {_number(b.parameters.alpha)} weeks, "
                               f"a {_number(b.parameters.a)}, b {_number(b.parameters.b)}; "
                               f"log-likelihood {b.log_likelihood:,.2f}; "
                               f"{'converged' if b.converged else 'NOT converged'} "
                               f"({b.evaluations} likelihood evaluations)"))
    if fits.gamma_gamma is not None:
        g = fits.gamma_gamma
        rows.append(("Gamma-Gamma", f"p {_number(g.parameters.p)}, q {_number(g.parameters.q)}, "
                                    f"v {_number(g.parameters.v)}; log-likelihood {g.log_likelihood:,.2f}; "
                                    f"{fits.gamma_gamma_customers:,} customers; "
                                    f"{'converged' if g.converged else 'NOT converged'}"))
    if fits.message:
        rows.append(("note", fits.message))
    current = report.current
    if current is None:
        rows.append(("scores use", "no fit yet: the scores stay empty"))
    elif current.id == report.fit_id:
        rows.append(("scores use", "this fit"))
    else:
        rows.append(("scores use", f"the previous fit, as of {current.as_of:%Y-%m-%d} "
                                   f"(made {when(current.fitted_at)})"))
    scores = report.scores
    if scores is not None:
        p = scores.p_alive_quantiles
        risk = scores.churn_risk
        rows.append(("p_alive", f"10th percentile {p['p10']:.2f}, median {p['p50']:.2f}, 90th {p['p90']:.2f}"))
        rows.append(("churn risk", f"low {risk['low']:,}, medium {risk['medium']:,}, high {risk['high']:,} "
                                   f"(p_alive >= {cfg.predictions.low_risk_p_alive:g} / "
                                   f"< {cfg.predictions.high_risk_p_alive:g})"))
        rows.append(("expected orders", f"{scores.expected_orders:,.1f} purchase days in the next "
                                        f"{cfg.predictions.horizon_days} days"))
        rows.append(("predicted CLV", "-" if scores.predicted_clv is None else
                     f"{scores.predicted_clv:,.2f} over {cfg.predictions.clv_horizon_days} days "
                     f"({scores.predicted_clv_mean:,.2f} per buyer; margin {cfg.predictions.margin:g}, "
                     f"discount {cfg.predictions.annual_discount_rate:.0%} a year)"))
    rows.append(("time", ", ".join(f"{step} {seconds:.2f} s" for step, seconds in report.seconds.items())))
    console.print(key_values(rows))


def _print_holdout(check: HoldoutReport, *, as_json: bool) -> None:
    fits = check.fits
    if as_json:
        print_json({"calibration": {"fit": None if fits.bgnbd is None else {
            **fits.bgnbd.parameters.to_dict(), "log_likelihood": fits.bgnbd.log_likelihood,
            "converged": fits.bgnbd.converged}, "customers": fits.customers, "repeaters": fits.repeaters},
            **check.to_dict()})
        return
    assert fits.bgnbd is not None
    b = fits.bgnbd.parameters
    console.print(key_values([
        ("calibration", f"paid orders through {check.calibration_end:%Y-%m-%d}: {fits.customers:,} buyers, "
                        f"{fits.repeaters:,} with a repeat purchase"),
        ("fit", f"r {_number(b.r)}, alpha {_number(b.alpha)}, a {_number(b.a)}, b {_number(b.b)}; "
                f"{'converged' if fits.bgnbd.converged else 'NOT converged'}"),
        ("holdout", f"{check.calibration_end + timedelta(days=1):%Y-%m-%d} to {check.holdout_end:%Y-%m-%d} "
                    f"({check.holdout_weeks:.1f} weeks)"),
        ("repeat purchases", f"actual {check.actual_total:,}, predicted {check.predicted_total:,.1f} "
                             f"({(check.predicted_total / check.actual_total - 1) if check.actual_total else 0:+.1%})"),
    ]))
    print_table(titled_table(
        "holdout repeat purchases per buyer, by repeat purchases in calibration",
        ["calibration repeats", "buyers", "actual", "predicted"],
        [[g.label, f"{g.customers:,}", f"{g.actual:.3f}", f"{g.predicted:.3f}"] for g in check.groups],
        right=("buyers", "actual", "predicted")))


__all__ = ["predict"]
