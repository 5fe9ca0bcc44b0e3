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
                       computed_at: datetime) -> int:
    """Measure every pair with at least ``min_support`` customers into ``target`` (emptied
    first); ``customers`` is how many customers bought anything. Returns the pairs written."""
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
    rows = sa.select(
        pairs.c.antecedent, pairs.c.consequent, pairs.c.support,
        support / bx.c.buyers,
        # Floats before multiplying: buyers x buyers overflows a 32-bit integer at 50k x 50k.
        support * customers / (sa.cast(bx.c.buyers, sa.Float) * by.c.buyers),
        sa.literal(computed_at, type_=_TIME),
    ).select_from(pairs.join(bx, bx.c.sku == pairs.c.antecedent).join(by, by.c.sku == pairs.c.consequent))
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


def write_association_heads(conn: sa.Connection, associations: sa.Table, *, score: str, min_lift: float,
                            pool: int) -> None:
    """``rec_association_top``: for each antecedent, its ``pool`` best associations by
    ``score`` (lift or confidence) whose consequent is an in-stock catalogue product and
    whose lift is above ``min_lift``: the co-purchase candidates."""
    recreate(conn, ASSOCIATION_TOP)
    a, p = associations.c, _PRODUCTS.c
    measure = a.lift if score == "lift" else a.confidence
    ranked = (
        sa.select(
            a.antecedent, a.consequent, measure.label("score"),
            sa.func.row_number().over(partition_by=a.antecedent, order_by=[measure.desc(), a.consequent])
            .label("place"),
        )
        .select_from(associations.join(_PRODUCTS, p.sku == a.consequent))
        .where(a.lift > min_lift, p.in_stock.is_(sa.true()))
        .subquery("ranked")
    )
    conn.execute(sa.insert(ASSOCIATION_TOP).from_select(
        ["antecedent", "consequent", "score"],
        sa.select(ranked.c.antecedent, ranked.c.consequent, ranked.c.score).where(ranked.c.place <= pool)))
    analyse(conn, ASSOCIATION_TOP)
