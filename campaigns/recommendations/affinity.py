"""Category affinity (the categories each customer buys) and popularity within each
purchase channel: the category and popular candidates."""

from __future__ import annotations

import sqlalchemy as sa

from campaigns.recommendations.work import AFFINITY, BUY, CHANNEL, POPULAR, SKU, analyse, index, recreate
from campaigns.store.models import Product

_PRODUCTS = Product.__table__


#: The categories per customer the category tier draws from: their main ones. A customer
#: who bought in twenty categories would otherwise bring twenty pools of candidates, of
#: which the ranking keeps a handful.
TOP_CATEGORIES = 3


def write_affinity(conn: sa.Connection) -> None:
    """``rec_affinity``: per customer, the share of their distinct products in each of
    their :data:`TOP_CATEGORIES` main categories (ties: by name)."""
    recreate(conn, AFFINITY)
    b = BUY.c
    per_category = sa.func.count()
    shares = (
        sa.select(b.customer_id, b.category,
                  (sa.cast(per_category, sa.Float) / sa.func.sum(per_category).over(partition_by=b.customer_id))
                  .label("weight"),
                  sa.func.row_number().over(partition_by=b.customer_id, order_by=[per_category.desc(), b.category])
                  .label("place"))
        .where(b.category.is_not(None))
        .group_by(b.customer_id, b.category)
        .subquery("shares")
    )
    rows = sa.select(shares.c.customer_id, shares.c.category, shares.c.weight).where(
        shares.c.place <= TOP_CATEGORIES)
    conn.execute(sa.insert(AFFINITY).from_select(["customer_id", "category", "weight"], rows))
    index(conn, AFFINITY, "customer_id")


def write_popularity(conn: sa.Connection, *, pool: int) -> None:
    """``rec_popular``: in-stock catalogue products by buyers, among the customers of each
    purchase channel and among everyone (``*``), ranked within their category and within
    the channel; kept only where either rank is within ``pool``."""
    recreate(conn, POPULAR)
    p = _PRODUCTS.c
    in_stock = p.in_stock.is_(sa.true())
    by_channel = (
        sa.select(CHANNEL.c.channel, p.category, BUY.c.sku, sa.func.count().label("buyers"))
        .select_from(BUY.join(CHANNEL, CHANNEL.c.customer_id == BUY.c.customer_id)
                     .join(_PRODUCTS, p.sku == BUY.c.sku))
        .where(in_stock, CHANNEL.c.channel != "*")
        .group_by(CHANNEL.c.channel, p.category, BUY.c.sku)
    )
    everyone = (
        sa.select(sa.literal("*").label("channel"), p.category, SKU.c.sku, SKU.c.buyers)
        .select_from(SKU.join(_PRODUCTS, p.sku == SKU.c.sku))
        .where(in_stock)
    )
    counted = sa.union_all(by_channel, everyone).subquery("counted")
    c = counted.c
    ranked = sa.select(
        c.channel, c.category, c.sku, c.buyers,
        sa.func.row_number().over(partition_by=[c.channel, c.category], order_by=[c.buyers.desc(), c.sku])
        .label("category_rank"),
        sa.func.row_number().over(partition_by=c.channel, order_by=[c.buyers.desc(), c.sku]).label("channel_rank"),
    ).subquery("ranked")
    r = ranked.c
    conn.execute(sa.insert(POPULAR).from_select(
        ["channel", "category", "sku", "buyers", "category_rank", "channel_rank"],
        sa.select(r.channel, r.category, r.sku, r.buyers, r.category_rank, r.channel_rank)
        .where(sa.or_(r.category_rank <= pool, r.channel_rank <= pool))))
    index(conn, POPULAR, "channel", "category")
