"""What the computation starts from: each customer's products (first and last purchase)
from the items of paid orders before the cutoff, each product's buyers, each customer's
purchase channel."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from campaigns.recommendations.work import BUY, CHANNEL, SKU, analyse, index, recreate
from campaigns.store.models import Customer, Order, OrderItem, Product

_ORDERS = Order.__table__
_ITEMS = OrderItem.__table__
_PRODUCTS = Product.__table__
_CUSTOMERS = Customer.__table__


def paid_before(as_of: datetime) -> sa.ColumnElement[bool]:
    """The orders the computation learns from: paid, placed before ``as_of``."""
    return sa.and_(_ORDERS.c.status == "paid", _ORDERS.c.ordered_at < as_of)


def write_buys(conn: sa.Connection, *, as_of: datetime) -> int:
    """``rec_buy``: one row per (customer, product) bought before ``as_of``; the product's
    category is the catalogue's, else the order item's. Returns how many customers bought."""
    recreate(conn, BUY)
    o, i, p = _ORDERS.c, _ITEMS.c, _PRODUCTS.c
    # Grouped before the catalogue is joined: one lookup per (customer, product), not per item.
    grouped = (
        sa.select(
            o.customer_id, i.sku, sa.func.max(i.category).label("category"),
            sa.func.min(o.ordered_at).label("first_at"), sa.func.max(o.ordered_at).label("last_at"),
        )
        .select_from(_ITEMS.join(_ORDERS, o.id == i.order_pk))
        .where(paid_before(as_of))
        .group_by(o.customer_id, i.sku)
        .subquery("bought")
    )
    rows = sa.select(
        grouped.c.customer_id, grouped.c.sku, sa.func.coalesce(p.category, grouped.c.category),
        grouped.c.first_at, grouped.c.last_at,
    ).select_from(grouped.outerjoin(_PRODUCTS, p.sku == grouped.c.sku))
    conn.execute(sa.insert(BUY).from_select(["customer_id", "sku", "category", "first_at", "last_at"], rows))
    index(conn, BUY, "customer_id", "sku", unique=True)

    recreate(conn, SKU)
    conn.execute(sa.insert(SKU).from_select(
        ["sku", "buyers"], sa.select(BUY.c.sku, sa.func.count()).group_by(BUY.c.sku)))
    analyse(conn, SKU)
    return int(conn.execute(sa.select(sa.func.count(sa.distinct(BUY.c.customer_id)))).scalar_one())


def write_channels(conn: sa.Connection, *, as_of: datetime, by_channel: bool = True) -> None:
    """``rec_channel``: every customer's purchase channel, the one of most of their paid
    orders before ``as_of`` (ties: the latest, then by name); ``*`` for a customer with
    none, or for everyone when ``by_channel`` is false."""
    recreate(conn, CHANNEL)
    if not by_channel:
        conn.execute(sa.insert(CHANNEL).from_select(
            ["customer_id", "channel"], sa.select(_CUSTOMERS.c.id, sa.literal("*"))))
        analyse(conn, CHANNEL)
        return
    o = _ORDERS.c
    ranked = (
        sa.select(
            o.customer_id, o.channel,
            sa.func.row_number().over(
                partition_by=o.customer_id,
                order_by=[sa.func.count().desc(), sa.func.max(o.ordered_at).desc(), o.channel],
            ).label("place"),
        )
        .where(paid_before(as_of), o.channel.is_not(None))
        .group_by(o.customer_id, o.channel)
        .subquery("ranked")
    )
    main = sa.select(ranked.c.customer_id, ranked.c.channel).where(ranked.c.place == 1).subquery("main")
    rows = sa.select(_CUSTOMERS.c.id, sa.func.coalesce(main.c.channel, "*")).select_from(
        _CUSTOMERS.outerjoin(main, main.c.customer_id == _CUSTOMERS.c.id))
    conn.execute(sa.insert(CHANNEL).from_select(["customer_id", "channel"], rows))
    analyse(conn, CHANNEL)
