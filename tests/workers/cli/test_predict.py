"""``nurture predict`` through the Typer app: the CDNOW sample imported with ``nurture
import`` and fitted as of the papers' calibration end reproduces the published BG/NBD and
Gamma-Gamma parameters within 1 %, on SQLite and PostgreSQL; the holdout check; a fit
without enough repeat buyers keeps the previous one and says why; mistakes end in a
message, not a traceback."""

from __future__ import annotations

import json
import re

import pytest

from tests.cdnow import cdnow_sample, write_import_files
from tests.workers.cli.win_back import Project, assert_no_crash, flat, invoke

#: Fader, Hardie & Lee (2005), "Counting your customers the easy way", Table 1: BG/NBD on
#: the 2,357-customer sample, calibration period to 1997-09-30, time in weeks.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
#: Fader, Hardie & Lee (2005), "RFM and CLV": Gamma-Gamma on the same customers' repeat
#: transactions in the calibration period.
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "v": 15.44}
#: The BG/NBD paper's log-likelihood at those parameters.
PUBLISHED_LOG_LIKELIHOOD = -9582.4


@pytest.fixture(params=["sqlite", "postgresql"])
def cdnow_project(request: pytest.FixtureRequest, make_project) -> Project:  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    project = make_project(url)
    purchases = cdnow_sample()
    assert len(purchases) == 6919 and len({p.customer for p in purchases}) == 2357
    customers, orders = write_import_files(project.root, purchases)
    for kind, path in (("customers", customers), ("orders", orders)):
        result = invoke("import", kind, path, "-c", project.config, "--json")
        assert result.exit_code == 0, result.output
    return project


def within(found: dict[str, float], published: dict[str, float], share: float) -> dict[str, tuple[float, float]]:
    """The parameters further than ``share`` from the published ones (name: found, published)."""
    return {name: (found[name], value) for name, value in published.items()
            if abs(found[name] - value) > share * abs(value)}


def test_the_cdnow_sample_gives_the_published_parameters(cdnow_project):
    result = invoke("predict", "-c", cdnow_project.config, "--as-of", "1997-09-30", "--json")
    assert result.exit_code == 0, result.output
    fit = json.loads(result.output)
    assert (fit["status"], fit["customers"], fit["current"]["kept_previous"]) == ("fitted", 2357, False)
    assert fit["bgnbd"]["converged"] and fit["gamma_gamma"]["converged"]
    assert within(fit["bgnbd"], PUBLISHED_BGNBD, 0.01) == {}
    assert within(fit["gamma_gamma"], PUBLISHED_GAMMA_GAMMA, 0.01) == {}
    assert fit["bgnbd"]["log_likelihood"] == pytest.approx(PUBLISHED_LOG_LIKELIHOOD, abs=0.1)
    # The Gamma-Gamma sample: the customers with a repeat purchase in calibration (946).
    assert fit["repeaters"] == fit["gamma_gamma"]["customers"] == 946
    assert fit["combinations"] < fit["customers"]  # the likelihood ran over distinct histories

    text = flat(invoke("predict", "-c", cdnow_project.config, "--as-of", "1997-09-30").output)
    assert re.search(r"BG/NBD r 0\.24\d*, alpha 4\.41\d* weeks, a 0\.79\d*, b 2\.42\d*; log-likelihood -9,582\.43; "
                     r"converged", text), text
    assert re.search(r"Gamma-Gamma p 6\.2\d*, q 3\.7\d*, v 15\.4\d*;", text) and "scores use this fit" in text
    # The scores' distribution under the fit: 2,357 buyers labelled, CLV summed.
    scores = fit["scores"]
    assert scores["customers"] == sum(scores["churn_risk"].values()) == 2357
    assert scores["p_alive_quantiles"]["p50"] == 1.0  # most CDNOW buyers bought once: alive for BG/NBD
    assert 0 < scores["expected_orders"] < 2357 and scores["predicted_clv"] > 0
    assert "churn risk low 1,702, medium 454, high 201" in text


def test_the_holdout_check_compares_the_holdout_with_the_calibration_fit(cdnow_project):
    result = invoke("predict", "-c", cdnow_project.config, "--holdout-from", "1997-10-01", "--as-of", "1998-06-30",
                    "--json")
    assert result.exit_code == 0, result.output
    check = json.loads(result.output)
    assert within(check["calibration"]["fit"], PUBLISHED_BGNBD, 0.01) == {}
    assert check["holdout_weeks"] == pytest.approx(39.0)
    groups = check["groups"]
    assert [g["calibration_repeats"] for g in groups] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert sum(g["customers"] for g in groups) == 2357
    # Actual repeat purchase days of the holdout, counted from the log itself.
    purchases = cdnow_sample()
    holdout_days = {(p.customer, p.day) for p in purchases if p.day.isoformat() >= "1997-10-01"}
    assert check["actual_total"] == len(holdout_days)
    # The groups add up to the total; the model's total is within 15 % of what happened
    # (it expects 1,653 of the 1,882 repeat purchase days: docs/predictions.md).
    assert sum(g["customers"] * g["predicted"] for g in groups) == pytest.approx(check["predicted_total"])
    assert check["predicted_total"] == pytest.approx(check["actual_total"], rel=0.15)
    # Customers who bought more in calibration buy more in the holdout, predicted and actual.
    assert groups[0]["predicted"] < groups[3]["predicted"] < groups[7]["predicted"]
    assert groups[0]["actual"] < groups[3]["actual"] < groups[7]["actual"]

    text = flat(invoke("predict", "-c", cdnow_project.config, "--holdout-from", "1997-10-01",
                       "--as-of", "1998-06-30").output)
    assert "holdout 1997-10-01 to 1998-06-30 (39.0 weeks)" in text and "7+" in text


def test_mistakes_end_in_a_message(project):
    for args, code, message in (
        (("--as-of", "1997-13-01"), 2, "'1997-13-01' is not a date"),
        (("--holdout-from", "soon"), 2, "'soon' is not a date"),
        (("--as-of", "1990-01-01"), 1, "no paid order on or before 1990-01-01; there is none yet"),
        (("--holdout-from", "2026-03-01", "--as-of", "2026-02-01"), 1,
         "the holdout must end after the calibration period"),
    ):
        result = invoke("predict", "-c", project.config, *args)
        assert_no_crash(result)
        assert result.exit_code == code and message in flat(result.output), result.output


def test_too_few_repeat_buyers_is_said_plainly(project, engine):
    from tests.conftest import TICK_NOW, seed_customers

    seed_customers(engine, count=10, now=TICK_NOW)  # one order each: nobody has repeated
    result = invoke("predict", "-c", project.config, "--as-of", "2026-03-01")
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "status too_few" in text and "0 customer(s) with a repeat purchase: a fit needs at least 50" in text
    assert "buyers 10 (0 with a repeat purchase) " in text  # no "0 distinct histories": none were fitted
    assert "scores use no fit yet" in text and "p_alive" not in text
