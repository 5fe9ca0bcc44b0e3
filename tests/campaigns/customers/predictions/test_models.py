"""The model functions against the papers' closed forms, written out here independently
in plain ``math`` for a few (x, t_x, T) histories, and against each other."""

from __future__ import annotations

import math

import numpy as np
import pytest

from campaigns.customers.predictions import bgnbd, gammagamma

#: The BG/NBD paper's CDNOW estimates (weeks).
CDNOW = bgnbd.BgNbdParameters(r=0.2426, alpha=4.4136, a=0.7929, b=2.4259)
HISTORIES = [(0, 0.0, 38.86), (1, 2.0, 30.0), (2, 30.43, 38.86), (7, 35.0, 36.0), (15, 20.0, 60.0)]


def paper_likelihood(p: bgnbd.BgNbdParameters, x: int, t_x: float, T: float) -> float:
    """Equation (6): L(r, alpha, a, b | x, t_x, T)."""
    r, alpha, a, b = p.r, p.alpha, p.a, p.b
    beta = math.exp(math.lgamma(a) + math.lgamma(b + x) - math.lgamma(a + b + x)
                    - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)))
    gammas = math.exp(math.lgamma(r + x) - math.lgamma(r)) * alpha ** r
    dropout = (a / (b + x - 1)) * (alpha + t_x) ** -(r + x) if x > 0 else 0.0
    return beta * gammas * ((alpha + T) ** -(r + x) + dropout)


def paper_p_alive(p: bgnbd.BgNbdParameters, x: int, t_x: float, T: float) -> float:
    """P(alive | x, t_x, T) = 1 / (1 + [x > 0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))."""
    if x == 0:
        return 1.0
    return 1.0 / (1.0 + p.a / (p.b + x - 1) * ((p.alpha + T) / (p.alpha + t_x)) ** (p.r + x))


@pytest.mark.parametrize(("x", "t_x", "T"), HISTORIES)
def test_likelihood_and_p_alive_match_the_closed_forms(x, t_x, T):
    assert bgnbd.log_likelihood(CDNOW, [x], [t_x], [T])[0] == pytest.approx(
        math.log(paper_likelihood(CDNOW, x, t_x, T)), rel=1e-10)
    assert bgnbd.p_alive(CDNOW, [x], [t_x], [T])[0] == pytest.approx(paper_p_alive(CDNOW, x, t_x, T), rel=1e-12)


def test_a_customer_who_stopped_buying_long_ago_is_probably_gone():
    # Same frequency, last purchase long before the end: lower P(alive) than a recent one.
    recent, lapsed = bgnbd.p_alive(CDNOW, [5, 5], [37.0, 5.0], [38.0, 38.0])
    assert recent > 0.85 and lapsed < 0.1


def test_the_conditional_expectation_of_a_new_customer_is_the_unconditional_one():
    # Equation (10) at x = t_x = T = 0 is equation (9).
    for t in (1.0, 13.0, 39.0, 104.0):
        assert bgnbd.expected_purchases(CDNOW, t, [0], [0.0], [0.0])[0] == pytest.approx(
            bgnbd.expected_purchases_new(CDNOW, [t])[0], rel=1e-10)
    # ... and grows with the horizon, from nothing.
    assert bgnbd.expected_purchases(CDNOW, 0.0, [3], [20.0], [30.0])[0] == 0.0
    values = bgnbd.expected_purchases(CDNOW, 39.0, [3, 3], [20.0, 20.0], [30.0, 30.0])
    assert bgnbd.expected_purchases(CDNOW, 78.0, [3], [20.0], [30.0])[0] > values[0] > 0


def test_the_expectation_matches_hardie_s_worked_example():
    # Fader & Hardie's note "Implementing the BG/NBD model" computes E[Y(39) | 2, 30.43, 38.86] = 1.226.
    assert bgnbd.expected_purchases(CDNOW, 39.0, [2], [30.43], [38.86])[0] == pytest.approx(1.226, abs=5e-4)


def test_a_fit_recovers_the_parameters_of_simulated_customers():
    # Buyers simulated from the model itself (seeded): the fit finds its parameters again.
    truth = bgnbd.BgNbdParameters(r=0.5, alpha=6.0, a=0.8, b=3.0)
    rng = np.random.default_rng(7)
    n = 20_000
    rates = rng.gamma(truth.r, 1 / truth.alpha, n)
    drops = rng.beta(truth.a, truth.b, n)
    T = rng.integers(140, 365, n) / 7  # whole days, as the summary measures them
    x, t_x, t = np.zeros(n), np.zeros(n), np.zeros(n)
    buying = np.ones(n, dtype=bool)
    while buying.any():  # one purchase of every customer still buying per pass
        t[buying] += rng.exponential(1 / rates[buying])
        buying &= t <= T
        x[buying] += 1
        t_x[buying] = t[buying]
        buying &= rng.random(n) >= drops  # after each purchase, gone with probability p
    t_x = np.floor(t_x * 7) / 7
    histories, weights = np.unique(np.column_stack((x, t_x, T)), axis=0, return_counts=True)
    found = bgnbd.fit(histories[:, 0], histories[:, 1], histories[:, 2], weights)
    assert found.converged
    for name, value in truth.to_dict().items():
        assert getattr(found.parameters, name) == pytest.approx(value, rel=0.15), name


def test_weighted_distinct_histories_give_every_customer_s_likelihood():
    x = np.array([0, 0, 0, 1, 1, 2, 2, 2, 5, 0, 3, 1])
    t_x = np.array([0, 0, 0, 4, 4, 10, 10, 3, 30, 0, 12, 4.0])
    T = np.array([40, 40, 40, 40, 40, 40, 40, 20, 40, 10, 40, 40.0])
    histories, weights = np.unique(np.column_stack((x, t_x, T)), axis=0, return_counts=True)
    assert len(weights) == 7
    every = bgnbd.log_likelihood(CDNOW, x, t_x, T).sum()
    distinct = np.dot(weights, bgnbd.log_likelihood(CDNOW, histories[:, 0], histories[:, 1], histories[:, 2]))
    assert distinct == pytest.approx(every, rel=1e-12)


def paper_gamma_gamma(p: float, q: float, v: float, x: int, m: float) -> float:
    """The density of a mean m of x purchases (Colombo & Jiang), written out."""
    return math.exp(math.lgamma(p * x + q) - math.lgamma(p * x) - math.lgamma(q) + q * math.log(v)
                    + (p * x - 1) * math.log(m) + p * x * math.log(x) - (p * x + q) * math.log(x * m + v))


@pytest.mark.parametrize(("x", "m"), [(1, 20.0), (2, 35.5), (7, 12.25), (30, 80.0)])
def test_gamma_gamma_likelihood_and_expected_spend_match_the_closed_forms(x, m):
    params = gammagamma.GammaGammaParameters(p=6.25, q=3.74, v=15.44)
    assert gammagamma.log_likelihood(params, [x], [m])[0] == pytest.approx(
        math.log(paper_gamma_gamma(6.25, 3.74, 15.44, x, m)), rel=1e-10)
    # E[M | x, m] = (q-1)/(px+q-1) * pv/(q-1) + px/(px+q-1) * m: the population mean and
    # the customer's own, weighted by how many purchases the latter rests on.
    weight = 6.25 * x / (6.25 * x + 3.74 - 1)
    population = 6.25 * 15.44 / (3.74 - 1)
    assert gammagamma.expected_spend(params, [x], [m])[0] == pytest.approx(
        (1 - weight) * population + weight * m, rel=1e-12)


def test_expected_spend_without_a_repeat_purchase_is_the_population_mean():
    params = gammagamma.GammaGammaParameters(p=6.25, q=3.74, v=15.44)
    assert gammagamma.expected_spend(params, [0], [0.0])[0] == pytest.approx(6.25 * 15.44 / 2.74)
    assert np.isnan(gammagamma.expected_spend(gammagamma.GammaGammaParameters(p=1, q=0.9, v=1), [2], [5.0])[0])


def test_predicted_clv_adds_up_discounted_monthly_purchases_times_their_expected_value():
    from campaigns.config.predictions import PredictionsConfig
    from campaigns.customers.predictions.scores import churn_risk, score
    from campaigns.customers.predictions.summary import Summary

    spend = gammagamma.GammaGammaParameters(p=6.25, q=3.74, v=15.44)
    summary = Summary(customer_id=np.array([1, 2, 3]), x=np.array([2.0, 0.0, 6.0]), t_x=np.array([30.43, 0.0, 5.0]),
                      T=np.array([38.86, 20.0, 38.0]), m=np.array([35.0, 0.0, 20.0]), as_of=None)  # type: ignore[arg-type]
    config = PredictionsConfig(clv_horizon_days=70, margin=0.4, annual_discount_rate=0.2)
    scores = score(summary, CDNOW, spend, config)
    for i in range(3):
        x, t_x, T, m = summary.x[i], summary.t_x[i], summary.T[i], summary.m[i]
        value = gammagamma.expected_spend(spend, [x], [m])[0] * 0.4
        expected = 0.0
        # Steps of 30, 30 and 10 days, each valued at its end and discounted from there.
        for start, end in ((0, 30), (30, 60), (60, 70)):
            step = (bgnbd.expected_purchases(CDNOW, end / 7, [x], [t_x], [T])[0]
                    - bgnbd.expected_purchases(CDNOW, start / 7, [x], [t_x], [T])[0])
            expected += step * value / 1.2 ** (end / 365)
        assert scores.predicted_clv[i] == pytest.approx(expected, rel=1e-12)
    assert scores.expected_orders == pytest.approx(bgnbd.expected_purchases(CDNOW, 90 / 7, summary.x, summary.t_x,
                                                                            summary.T))
    # A one-time buyer is "alive" for BG/NBD; a frequent buyer silent for 33 weeks is not.
    assert scores.p_alive[1] == 1.0 and scores.p_alive[2] < 0.05
    assert scores.churn_risk == ["low", "low", "high"]
    bands = PredictionsConfig(low_risk_p_alive=0.8, high_risk_p_alive=0.5)
    assert churn_risk(np.array([0.8, 0.79, 0.5, 0.49]), bands) == ["low", "medium", "medium", "high"]
    assert score(summary, CDNOW, None, config).predicted_clv is None
