"""What the recommended products a campaign's messages showed led to: clicks and purchases.

Definitions (docs/recommendations.md, "In messages"):

* **shown**: the ``recommendation_sent`` rows of the campaign's sent messages (one per
  product per message; test sends write none), and the messages that showed any;
* **clicked**: shown products whose link was clicked in that message: a tracked click
  (``response`` of kind ``clicked`` on the delivery) whose URL is the product's ``url``;
* **bought**: shown products the customer bought in a paid order after the message and
  within the campaign's conversion window (``goal.within``, 14 days without a goal, as
  the report's conversions and attributed revenue), and no later than ``now``;
* **orders** and **revenue**: the paid orders holding such an item and the items' own
  value (price x quantity), each item counted once even when two messages showed it.

Every figure is also given per ``reason`` (co_purchase, category, popular), the signal
that put the product in the customer's list, except revenue (an item shown by two
messages for two reasons would count twice).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from campaigns.customers.masking import mask_text
from campaigns.store.models import Delivery, Order, OrderItem, Product, RecommendationSent, Response
from campaigns.store.sqltime import plus_interval

#: The longest URL a click response keeps (workers/http/links.py stores the masked URL cut there).
CLICK_URL_CHARS = 2048


def recommended_attribution(conn: sa.Connection, name: str, *, window: timedelta, now: datetime) -> dict[str, Any]:
    """Shown, clicked and bought recommended products of campaign ``name``'s messages,
    the orders and revenue they brought, overall and per reason.

    One statement when the messages showed no product, else five, each driven by the
    campaign's deliveries (``ix_delivery_campaign``)
    and reaching ``recommendation_sent`` by its (delivery_id, sku) key, orders by
    (customer_id, ordered_at) and items by order.
    """
    d = Delivery.__table__
    rs = RecommendationSent.__table__
    o = Order.__table__
    i = OrderItem.__table__
    r = Response.__table__
    p = Product.__table__
    sent = d.join(rs, rs.c.delivery_id == d.c.id)
    ours = sa.and_(d.c.campaign == name, d.c.is_test.is_(False))
    by_reason: dict[str, dict[str, int]] = {}

    def counted(reason: str) -> dict[str, int]:
        return by_reason.setdefault(reason, {"shown": 0, "clicked": 0, "bought": 0})

    for reason, shown in conn.execute(
        sa.select(rs.c.reason, sa.func.count()).select_from(sent).where(ours).group_by(rs.c.reason)
    ):
        counted(reason)["shown"] = int(shown)
    if not by_reason:  # nothing shown (the usual campaign): nothing more to read
        return {"messages": 0, "shown": 0, "clicked": 0, "bought": 0, "click_rate": None, "buy_rate": None,
                "orders": 0, "revenue": 0.0, "by_reason": []}
    messages = int(conn.execute(sa.select(sa.func.count(sa.distinct(rs.c.delivery_id)))
                                .select_from(sent).where(ours)).scalar_one())

    # Clicks: the tracked clicks on those messages beside the products they showed; a
    # click response keeps its URL masked (no address or phone number in a stored URL),
    # so a product's URL is masked the same way before the two are compared.
    clicked: dict[int, str] = {}
    for shown_id, reason, payload, url in conn.execute(
        sa.select(rs.c.id, rs.c.reason, r.c.payload, p.c.url)
        .select_from(sent.join(r, r.c.delivery_id == d.c.id).join(p, p.c.sku == rs.c.sku))
        .where(ours, r.c.kind == "clicked", p.c.url.is_not(None))
    ):
        if isinstance(payload, dict) and payload.get("url") == mask_text(url)[:CLICK_URL_CHARS]:
            clicked[shown_id] = reason
    for reason in clicked.values():
        counted(reason)["clicked"] += 1

    deadline = plus_interval(conn.dialect.name, rs.c.sent_at, window, rs.c.sent_at.type)
    bought_after = sa.and_(o.c.customer_id == rs.c.customer_id, o.c.status == "paid", o.c.ordered_at > rs.c.sent_at,
                           o.c.ordered_at <= deadline, o.c.ordered_at <= now)
    for reason, bought in conn.execute(
        sa.select(rs.c.reason, sa.func.count())
        .select_from(sent)
        .where(ours, sa.exists().where(bought_after, i.c.order_pk == o.c.id, i.c.sku == rs.c.sku))
        .group_by(rs.c.reason)
    ):
        counted(reason)["bought"] = int(bought)
    items = (
        sa.select(i.c.id.label("item"), o.c.id.label("order"), (i.c.price * i.c.quantity).label("value"))
        .select_from(sent.join(o, bought_after).join(i, sa.and_(i.c.order_pk == o.c.id, i.c.sku == rs.c.sku)))
        .where(ours)
        .distinct()
        .subquery("items")
    )
    orders, revenue = conn.execute(
        sa.select(sa.func.count(sa.distinct(items.c.order)), sa.func.sum(items.c.value))).one()
    totals = {kind: sum(row[kind] for row in by_reason.values()) for kind in ("shown", "clicked", "bought")}
    return {
        "messages": messages,
        **totals,
        "click_rate": totals["clicked"] / totals["shown"] if totals["shown"] else None,
        "buy_rate": totals["bought"] / totals["shown"] if totals["shown"] else None,
        "orders": int(orders or 0),
        "revenue": round(float(revenue or 0), 2),
        "by_reason": [{"reason": reason, **row} for reason, row in sorted(by_reason.items())],
    }


__all__ = ["recommended_attribution"]
