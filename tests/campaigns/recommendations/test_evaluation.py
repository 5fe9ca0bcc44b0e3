"""``evaluate`` on a split small enough to work out by hand, on SQLite and PostgreSQL: the
model and the popularity baseline at k = 1 and 3, and the live tables untouched."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from campaigns.config.recommendations import RecommendationsConfig
from campaigns.recommendations.evaluation import Metrics, evaluate
from campaigns.recommendations.refresh import refresh_recommendations
from campaigns.store.models import ProductAssociation, Recommendation
from tests.campaigns.conftest import engine  # noqa: F401 (the fixture: SQLite, then PostgreSQL)
from tests.campaigns.recommendations.shop import Shop, day


def small_split(shop: Shop) -> None:
    """Before day 10: a1-a3 bought A then B, s1-s4 S1 then S2, x1 A, x2 S1. So A -> B
    (support 3, lift (3/4) / (3/9) = 2.25) and S1 -> S2 (4, lift 0.8 / (4/9) = 1.8);
    popularity S1 5, A 4, S2 4, B 3 (T: nobody). In [day 10, day 40): x1 buys B and T,
    x2 S2 (and a refunded A, ignored), s1 A, n1 (new) S2; a1's B on day 50 is after it.

    The model recommends x1 [B (co_purchase), S1, S2], x2 [S2 (co_purchase), A, B],
    s1 [A, B], n1 [S1, A, S2], a1-a3 [S1, S2], s1-s4 [A, B]; the baseline (best sellers,
    same exclusions) x1 [S1, S2, B], x2 [A, S2, B], s1 [A, B], n1 [S1, A, S2]."""
    shop.products(("A", "books"), ("B", "books"), ("S1", "daily"), ("S2", "daily"), ("T", "toys"))
    for n in range(1, 4):
        shop.order(f"a{n}", 1, "A")
        shop.order(f"a{n}", 3, "B")
    for n in range(1, 5):
        shop.order(f"s{n}", 1, "S1")
        shop.order(f"s{n}", 2, "S2")
    shop.order("x1", 2, "A")
    shop.order("x2", 2, "S1")
    shop.order("x1", 12, "B", "T")
    shop.order("x2", 15, "S2")
    shop.order("x2", 16, "A", status="refunded")
    shop.order("s1", 20, "A")
    shop.order("n1", 30, "S2")
    shop.order("a1", 50, "B")


def test_the_figures_are_those_worked_out_by_hand(engine):  # noqa: F811
    shop = Shop(engine)
    small_split(shop)
    config = RecommendationsConfig(min_support=3, top_n=2)
    report = evaluate(engine, config, as_of=day(10), horizon=timedelta(days=30), ks=[3, 1])

    assert (report.customers, report.test_items, report.catalogue) == (4, 5, 5)
    assert report.training.associations == 2 and report.training.buyers == 9
    # k=1, model: x1 B (hit, 1 of 2), x2 S2 (hit), s1 A (hit), n1 S1 (miss); shown: B, S2, S1, A.
    # k=1, baseline: x1 S1, x2 A, s1 A (hit), n1 S1; shown: S1, A.
    # k=3: both hit for everyone, x1 one item of two; shown: A, B, S1, S2 of 5.
    expected_model = [Metrics(k=1, hit_rate=3 / 4, recall=(0.5 + 1 + 1 + 0) / 4, coverage=4 / 5),
                      Metrics(k=3, hit_rate=1.0, recall=(0.5 + 1 + 1 + 1) / 4, coverage=4 / 5)]
    expected_baseline = [Metrics(k=1, hit_rate=1 / 4, recall=1 / 4, coverage=2 / 5),
                         Metrics(k=3, hit_rate=1.0, recall=(0.5 + 1 + 1 + 1) / 4, coverage=4 / 5)]
    assert _close(report.model, expected_model)
    assert _close(report.baseline, expected_baseline)
    # Trained with top_n 3 (the largest k), which the report says.
    assert report.notes == ["trained with top_n = 3 (the largest k), not the configured 2"]
    data = report.to_dict()
    assert data["model"]["1"] == {"hit_rate": 0.75, "recall": 0.625, "coverage": 0.8}
    assert data["baseline"]["1"] == {"hit_rate": 0.25, "recall": 0.25, "coverage": 0.4}


def _close(found: list[Metrics], expected: list[Metrics]) -> bool:
    assert [(m.k, round(m.hit_rate, 9), round(m.recall, 9), round(m.coverage, 9)) for m in found] == [
        (m.k, round(m.hit_rate, 9), round(m.recall, 9), round(m.coverage, 9)) for m in expected]
    return True


def test_evaluating_leaves_the_live_tables_alone(engine):  # noqa: F811
    shop = Shop(engine)
    small_split(shop)
    refresh_recommendations(engine, RecommendationsConfig(min_support=1), now=day(60))

    def live() -> tuple[list, list]:
        with engine.connect() as conn:
            return (conn.execute(sa.select(Recommendation.__table__).order_by("customer_id", "rank")).all(),
                    conn.execute(sa.select(ProductAssociation.__table__).order_by("antecedent", "consequent")).all())

    before = live()
    assert before[0] and before[1]
    evaluate(engine, RecommendationsConfig(min_support=3), as_of=day(10), horizon=timedelta(days=30))
    assert live() == before


def test_nobody_buying_in_the_horizon_gives_zeros_and_says_so(engine):  # noqa: F811
    shop = Shop(engine)
    small_split(shop)
    report = evaluate(engine, RecommendationsConfig(min_support=3), as_of=day(100), horizon=timedelta(days=7),
                      ks=[3])
    assert report.customers == 0 and report.model == [Metrics(k=3, hit_rate=0.0, recall=0.0,
                                                              coverage=report.model[0].coverage)]
    assert "nobody bought anything in the horizon: every figure is 0" in report.notes
