"""Reading the buyers' summary and fitting it, on SQLite and PostgreSQL: purchases
counted per day, refunds left out, the guard rails (no order before the date, too few
repeat buyers, a $0 basket, a same-day repeat), and a fit that cannot be used leaving the
previous one current."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from campaigns.config.predictions import PredictionsConfig
from campaigns.customers.predictions.fitting import FITTED, TOO_FEW, current_fit, fit_and_store, latest_attempt
from campaigns.customers.predictions.summary import read_summary
from campaigns.errors import PredictionError
from campaigns.store.models import Customer, Order

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
START = date(2025, 1, 1)


class Shop:
    """Customers and their orders, written straight to the tables."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.ids: dict[str, int] = {}
        self.orders = 0

    def order(self, customer: str, day: date, amount: float = 20.0, *, hour: int = 10,
              status: str = "paid") -> None:
        with self.engine.begin() as conn:
            if customer not in self.ids:
                self.ids[customer] = conn.execute(sa.insert(Customer).values(
                    external_id=customer, created_at=NOW, updated_at=NOW, attributes={}
                ).returning(Customer.id)).scalar_one()
            self.orders += 1
            conn.execute(sa.insert(Order).values(
                order_id=f"o{self.orders}", customer_id=self.ids[customer], amount=amount, status=status,
                ordered_at=datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=hour)))


def test_the_summary_counts_purchase_days_of_paid_orders(engine):
    shop = Shop(engine)
    shop.order("a", START, 10)
    shop.order("a", START, 5, hour=20)  # same day: one purchase of 15
    shop.order("a", START + timedelta(days=14), 30)
    shop.order("a", START + timedelta(days=14), 12, hour=23)  # same day again: 42
    shop.order("a", START + timedelta(days=21), 99, status="refunded")  # not a purchase
    shop.order("a", START + timedelta(days=28), 0)  # a $0 basket is a purchase day worth 0
    shop.order("b", START + timedelta(days=7), 50)
    shop.order("c", START + timedelta(days=70), 50)  # after the period
    with engine.connect() as conn:
        summary = read_summary(conn, as_of=START + timedelta(days=34))
    assert len(summary) == 2 and summary.repeaters == 1
    a, b = (list(summary.customer_id).index(shop.ids[name]) for name in ("a", "b"))
    assert (summary.x[a], summary.t_x[a], summary.T[a]) == (2, 4.0, 34 / 7)
    assert summary.m[a] == pytest.approx((42 + 0) / 2)
    assert (summary.x[b], summary.t_x[b], summary.T[b], summary.m[b]) == (0, 0.0, 27 / 7, 0.0)


def test_a_date_before_any_order_is_a_clear_error(engine):
    shop = Shop(engine)
    with engine.connect() as conn, pytest.raises(PredictionError, match="no paid order on or before 2024-12-31; "
                                                                        "there is none yet"):
        read_summary(conn, as_of=START - timedelta(days=1))
    shop.order("a", START)
    with engine.connect() as conn, pytest.raises(PredictionError, match="the first is on 2025-01-01"):
        read_summary(conn, as_of=START - timedelta(days=1))


def seed_buyers(shop: Shop, count: int, *, seed: int = 3) -> None:
    """``count`` buyers with a few orders each over 2025 (one in five buys once), each
    spending around a mean of their own (the heterogeneity Gamma-Gamma describes)."""
    rng = np.random.default_rng(seed)
    for n in range(count):
        first = START + timedelta(days=int(rng.integers(0, 120)))
        mean = float(rng.gamma(3.0, 15.0))
        shop.order(f"c{n}", first, round(float(rng.gamma(6.0, mean / 6.0)), 2))
        if n % 5:
            for _ in range(int(rng.integers(1, 6))):
                shop.order(f"c{n}", first + timedelta(days=int(rng.integers(1, 200))),
                           round(float(rng.gamma(6.0, mean / 6.0)), 2))
    # A free repeat basket and a same-day repeat break nothing.
    shop.order("c1", START + timedelta(days=150), 0.0)
    shop.order("c2", START + timedelta(days=150), 10.0)
    shop.order("c2", START + timedelta(days=150), 15.0, hour=18)


def test_a_fit_is_stored_and_becomes_current(engine):
    shop = Shop(engine)
    seed_buyers(shop, 120)
    report = fit_and_store(engine, PredictionsConfig(min_repeat_customers=50), as_of=date(2025, 9, 30), now=NOW)
    assert report.fits.status == FITTED and report.fits.bgnbd.converged and report.fits.gamma_gamma.converged
    assert (report.fits.customers, report.fits.repeaters) == (120, 96)
    assert report.current is not None and report.current.id == report.fit_id
    with engine.connect() as conn:
        stored = current_fit(conn)
    assert stored.bgnbd == report.fits.bgnbd.parameters and stored.gamma_gamma == report.fits.gamma_gamma.parameters
    assert stored.as_of == date(2025, 9, 30) and stored.gamma_gamma_customers == 96
    assert all(np.isfinite(value) and value > 0 for value in stored.bgnbd.to_dict().values())


def test_too_few_repeat_buyers_keep_the_previous_fit_and_say_why(engine):
    shop = Shop(engine)
    seed_buyers(shop, 120)
    first = fit_and_store(engine, PredictionsConfig(min_repeat_customers=50), as_of=date(2025, 9, 30), now=NOW)
    # As of a day when only a few had bought twice: too few for a fit.
    later = fit_and_store(engine, PredictionsConfig(min_repeat_customers=50), as_of=date(2025, 1, 20), now=NOW)
    assert later.fits.status == TOO_FEW and later.fits.bgnbd is None
    assert "a fit needs at least 50 ([predictions] min_repeat_customers)" in later.fits.message
    assert later.current is not None and later.current.id == first.fit_id
    with engine.connect() as conn:
        attempt = latest_attempt(conn)
        assert current_fit(conn).id == first.fit_id
    assert attempt["status"] == TOO_FEW and "min_repeat_customers" in attempt["message"]


def test_without_any_usable_fit_there_is_no_current_one(engine):
    shop = Shop(engine)
    shop.order("a", START)
    shop.order("a", START + timedelta(days=3))
    report = fit_and_store(engine, PredictionsConfig(), as_of=date(2025, 3, 1), now=NOW)
    assert report.fits.status == TOO_FEW and report.current is None
    assert report.to_dict()["current"] is None and report.to_dict()["bgnbd"] is None


def test_the_summary_and_the_scores_are_the_same_on_sqlite_and_postgresql(sqlite_url, postgres_url):
    from campaigns.customers.predictions.scores import score
    from campaigns.store.db import make_engine

    config = PredictionsConfig(min_repeat_customers=20)
    results = []
    for url in (sqlite_url, postgres_url):
        engine = make_engine(url)
        try:
            shop = Shop(engine)
            seed_buyers(shop, 60, seed=11)
            shop.order("late", date(2025, 9, 30), 12.5, hour=23)  # the as-of day's last hour counts
            shop.order("late", date(2025, 10, 1), 99.0, hour=0)  # the next day's first does not
            with engine.connect() as conn:
                summary = read_summary(conn, as_of=date(2025, 9, 30))
            report = fit_and_store(engine, config, as_of=date(2025, 9, 30), now=NOW)
            scored = score(summary, report.current.bgnbd, report.current.gamma_gamma, config)
            # Customers by external id (row ids are per database, and happen to agree).
            results.append((summary, report, scored))
        finally:
            engine.dispose()
    (lite, lite_report, lite_scores), (pg, pg_report, pg_scores) = results
    for name in ("customer_id", "x", "t_x", "T", "m"):
        assert np.array_equal(getattr(lite, name), getattr(pg, name)), name
    assert lite_report.fits.bgnbd.parameters == pg_report.fits.bgnbd.parameters
    assert lite_report.fits.gamma_gamma.parameters == pg_report.fits.gamma_gamma.parameters
    assert np.array_equal(lite_scores.p_alive, pg_scores.p_alive)
    assert np.array_equal(lite_scores.predicted_clv, pg_scores.predicted_clv)
    assert lite_scores.churn_risk == pg_scores.churn_risk
    assert lite.m[-1] == 0 and lite.T[-1] == 0  # "late" bought once, on the as-of day
