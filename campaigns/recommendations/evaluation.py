"""Offline evaluation (``nurture recommend evaluate``): train as of a date, test on what
customers bought in the horizon after it, beside a popularity baseline from the same run.

Training is :func:`campaigns.recommendations.refresh.compute` on the orders before
``as_of``, into temporary tables: the live tables are not touched, and everything the
evaluation writes is rolled back. The customers evaluated are those with a paid order in
``[as_of, as_of + horizon)``; their test items are the distinct products of those orders.
For each k:

- hit rate@k: the share of them with at least one test item among their first k;
- recall@k: per customer, the share of their test items among their first k, averaged;
- coverage@k: the share of the catalogue's products (the products sold before ``as_of``
  when the catalogue is empty) among anyone's first k.

The baseline recommends everyone the best sellers of all channels, with the same
exclusions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.recommendations import RecommendationsConfig
from campaigns.recommendations.refresh import RefreshReport, compute
from campaigns.recommendations.work import (
    BASELINE_RECOMMENDATIONS,
    BUY,
    NEXT_ASSOCIATIONS,
    NEXT_RECOMMENDATIONS,
    drop_all,
    index,
    recreate,
)
from campaigns.store.models import Order, OrderItem, Product

#: The k of hit rate@k, recall@k and coverage@k unless ``--k`` says otherwise.
DEFAULT_KS = (3, 5, 10)

_ORDERS = Order.__table__
_ITEMS = OrderItem.__table__
_PRODUCTS = Product.__table__
_TEST = sa.Table("rec_test", sa.MetaData(), sa.Column("customer_id", sa.Integer, nullable=False),
                 sa.Column("sku", sa.String(128), nullable=False), prefixes=["TEMPORARY"])


@dataclass(frozen=True)
class Metrics:
    """One model's figures at one k."""

    k: int
    hit_rate: float
    recall: float
    coverage: float


@dataclass
class EvaluationReport:
    """The model and the popularity baseline at each k, and what they were measured on."""

    as_of: datetime
    horizon: timedelta
    #: Customers with a paid order in the horizon (the ones measured).
    customers: int
    #: Their distinct (customer, product) purchases in the horizon.
    test_items: int
    #: Products coverage is the share of.
    catalogue: int
    model: list[Metrics]
    baseline: list[Metrics]
    training: RefreshReport
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json``)."""
        def figures(rows: list[Metrics]) -> dict[str, dict[str, float]]:
            return {str(row.k): {"hit_rate": round(row.hit_rate, 4), "recall": round(row.recall, 4),
                                 "coverage": round(row.coverage, 4)} for row in rows}

        return {
            "as_of": self.as_of.isoformat(),
            "horizon_days": self.horizon.total_seconds() / 86_400,
            "customers": self.customers,
            "test_items": self.test_items,
            "catalogue": self.catalogue,
            "model": figures(self.model),
            "baseline": figures(self.baseline),
            "training": self.training.to_dict(),
            "seconds": round(self.seconds, 3),
        }


def evaluate(engine: Engine, config: RecommendationsConfig, *, as_of: datetime, horizon: timedelta,
             ks: Sequence[int] = DEFAULT_KS) -> EvaluationReport:
    """Train on the paid orders before ``as_of``, test on those in ``[as_of, as_of +
    horizon)``, and measure the model and the popularity baseline at each of ``ks``."""
    started = time.perf_counter()
    ks = sorted(set(ks))
    top_n = max(ks)
    with engine.connect() as conn:
        try:
            with conn.begin() as transaction:
                recreate(conn, NEXT_ASSOCIATIONS)
                recreate(conn, NEXT_RECOMMENDATIONS)
                recreate(conn, BASELINE_RECOMMENDATIONS)
                # The baseline first: the model's computation then rewrites the shared work tables.
                compute(conn, config, as_of=as_of, associations=NEXT_ASSOCIATIONS,
                        recommendations=BASELINE_RECOMMENDATIONS, top_n=top_n, reasons=("popular",),
                        by_channel=False)
                training = compute(conn, config, as_of=as_of, associations=NEXT_ASSOCIATIONS,
                                   recommendations=NEXT_RECOMMENDATIONS, top_n=top_n)
                customers, test_items = _write_test(conn, as_of=as_of, until=as_of + horizon)
                catalogue = int(conn.execute(sa.select(sa.func.count()).select_from(_PRODUCTS)).scalar_one()) or int(
                    conn.execute(sa.select(sa.func.count(sa.distinct(BUY.c.sku)))).scalar_one())
                model = [_measure(conn, NEXT_RECOMMENDATIONS, k, customers=customers, catalogue=catalogue)
                         for k in ks]
                baseline = [_measure(conn, BASELINE_RECOMMENDATIONS, k, customers=customers, catalogue=catalogue)
                            for k in ks]
                # Only temporary tables were written; nothing of the evaluation is kept.
                transaction.rollback()
        finally:
            with conn.begin():
                drop_all(conn, _TEST, NEXT_ASSOCIATIONS, NEXT_RECOMMENDATIONS, BASELINE_RECOMMENDATIONS)
    report = EvaluationReport(as_of=as_of, horizon=horizon, customers=customers, test_items=test_items,
                              catalogue=catalogue, model=model, baseline=baseline, training=training,
                              seconds=time.perf_counter() - started)
    if top_n > config.top_n:
        report.notes.append(f"trained with top_n = {top_n} (the largest k), not the configured {config.top_n}")
    if not customers:
        report.notes.append("nobody bought anything in the horizon: every figure is 0")
    return report


def _write_test(conn: sa.Connection, *, as_of: datetime, until: datetime) -> tuple[int, int]:
    """``rec_test``: the distinct (customer, product) of the paid orders in ``[as_of, until)``."""
    recreate(conn, _TEST)
    o, i = _ORDERS.c, _ITEMS.c
    conn.execute(sa.insert(_TEST).from_select(["customer_id", "sku"], sa.select(o.customer_id, i.sku).distinct()
                 .select_from(_ITEMS.join(_ORDERS, o.id == i.order_pk))
                 .where(o.status == "paid", o.ordered_at >= as_of, o.ordered_at < until)))
    index(conn, _TEST, "customer_id", "sku")
    customers, items = conn.execute(sa.select(sa.func.count(sa.distinct(_TEST.c.customer_id)), sa.func.count())
                                    .select_from(_TEST)).one()
    return int(customers), int(items)


def _measure(conn: sa.Connection, recommendations: sa.Table, k: int, *, customers: int, catalogue: int) -> Metrics:
    r, t = recommendations.c, _TEST.c
    per_customer = (
        sa.select(t.customer_id, sa.func.count(r.sku).label("hits"), sa.func.count().label("bought"))
        .select_from(_TEST.outerjoin(recommendations, sa.and_(
            r.customer_id == t.customer_id, r.sku == t.sku, r.rank <= k)))
        .group_by(t.customer_id)
        .subquery("per_customer")
    )
    p = per_customer.c
    hit, recall = conn.execute(sa.select(
        sa.func.coalesce(sa.func.sum(sa.case((p.hits > 0, 1), else_=0)), 0),
        sa.func.coalesce(sa.func.sum(sa.cast(p.hits, sa.Float) / p.bought), 0.0),
    )).one()
    shown = conn.execute(sa.select(sa.func.count(sa.distinct(r.sku))).where(r.rank <= k)).scalar_one()
    return Metrics(
        k=k,
        hit_rate=int(hit) / customers if customers else 0.0,
        recall=float(recall) / customers if customers else 0.0,
        coverage=int(shown) / catalogue if catalogue else 0.0,
    )


__all__ = ["DEFAULT_KS", "EvaluationReport", "Metrics", "evaluate"]
