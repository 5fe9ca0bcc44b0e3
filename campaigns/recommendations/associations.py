"""Item-to-item co-purchase, "bought X, later bought Y", into a target shaped like
``product_association``.

A customer supports X -> Y when their first purchase of Y came strictly after their first
purchase of X. ``support`` counts those customers, ``confidence`` is support over X's
buyers, ``lift`` is confidence over Y's base rate (Y's buyers over every customer who
bought anything): about 1 for a best-seller that everyone buys anyway, high for a product
X's buyers go on to buy far more than others do. Pairs below ``min_support`` are not kept.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from campaigns.recommendations.work import ASSOCIATION_TOP, BUY, SKU, analyse, recreate
from campaigns.store.models import Order, Product

_TIME = Order.__table__.c.ordered_at.type
_PRODUCTS = Product.__table__


def write_associations(conn: sa.Connection, target: sa.Table, *, customers: int, min_support: int,
                       min_lift: float, score: str, keep: int, computed_at: datetime) -> int:
    """Measure every pair with at least ``min_support`` customers and keep, per antecedent,
    the ``keep`` best by ``score`` (``lift`` or ``confidence``; ties by consequent) of those
    with a lift above ``min_lift``, into ``target`` (emptied first); ``customers`` is how
    many customers bought anything. Returns the pairs written."""
    conn.execute(sa.delete(target))
    if not customers:
        return 0
    x, y = BUY.alias("x"), BUY.alias("y")
    # The one self-join: each customer's products paired with those first bought later
    # (one row per customer and product, so a pair counts a customer once).
    pairs = (
        sa.select(x.c.sku.label("antecedent"), y.c.sku.label("consequent"), sa.func.count().label("support"))
        .select_from(x.join(y, sa.and_(y.c.customer_id == x.c.customer_id, y.c.first_at > x.c.first_at)))
        .group_by(x.c.sku, y.c.sku)
        .having(sa.func.count() >= min_support)
        .subquery("pairs")
    )
    bx, by = SKU.alias("bx"), SKU.alias("by_")
    support = sa.cast(pairs.c.support, sa.Float)
    measured = sa.select(
        pairs.c.antecedent, pairs.c.consequent, pairs.c.support,
        (support / bx.c.buyers).label("confidence"),
        # Floats before multiplying: buyers x buyers overflows a 32-bit integer at 50k x 50k.
        (support * customers / (sa.cast(bx.c.buyers, sa.Float) * by.c.buyers)).label("lift"),
    ).select_from(pairs.join(bx, bx.c.sku == pairs.c.antecedent).join(by, by.c.sku == pairs.c.consequent)
                  ).subquery("measured")
    m = measured.c
    measure = m.lift if score == "lift" else m.confidence
    ranked = sa.select(
        m.antecedent, m.consequent, m.support, m.confidence, m.lift,
        sa.func.row_number().over(partition_by=m.antecedent, order_by=[measure.desc(), m.consequent])
        .label("place"),
    ).where(m.lift > min_lift).subquery("ranked")
    r = ranked.c
    rows = sa.select(r.antecedent, r.consequent, r.support, r.confidence, r.lift,
                     sa.literal(computed_at, type_=_TIME)).where(r.place <= keep)
    postgresql = conn.dialect.name == "postgresql"
    if postgresql:
        # A hash join of rec_buy with itself, not a nested loop of index probes: at 20k
        # customers the planner chose 481k probes of rec_buy's (customer_id, sku) index,
        # read through the 8 MB of temp_buffers a temporary table has (3.7M block reads,
        # 170 s, against 71 s for the whole bare co-occurrence query). SQLite needs that
        # index for the same join, and the ranking's anti-join uses it.
        conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
    result = conn.execute(
        sa.insert(target).from_select(
            ["antecedent", "consequent", "support", "confidence", "lift", "computed_at"], rows),
        execution_options={"preserve_rowcount": True},
    )
    if postgresql:
        conn.exec_driver_sql("SET LOCAL enable_nestloop = on")
    return max(result.rowcount, 0)


def write_association_heads(conn: sa.Connection, associations: sa.Table, *, score: str, pool: int) -> None:
    """``rec_association_top``: for each antecedent, its ``pool`` best kept associations by
    ``score`` (lift or confidence) whose consequent is an in-stock catalogue product, with
    the consequent's category: the co-purchase candidates."""
    recreate(conn, ASSOCIATION_TOP)
    a, p = associations.c, _PRODUCTS.c
    measure = a.lift if score == "lift" else a.confidence
    ranked = (
        sa.select(
            a.antecedent, a.consequent, p.category, measure.label("score"),
            sa.func.row_number().over(partition_by=a.antecedent, order_by=[measure.desc(), a.consequent])
            .label("place"),
        )
        .select_from(associations.join(_PRODUCTS, p.sku == a.consequent))
        .where(p.in_stock.is_(sa.true()))
        .subquery("ranked")
    )
    conn.execute(sa.insert(ASSOCIATION_TOP).from_select(
        ["antecedent", "consequent", "category", "score"],
        sa.select(ranked.c.antecedent, ranked.c.consequent, ranked.c.category, ranked.c.score)
        .where(ranked.c.place <= pool)))
    analyse(conn, ASSOCIATION_TOP)
