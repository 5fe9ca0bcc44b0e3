"""The ``recommendations(n=3, category=None)`` template function of a batch of messages,
read in one set-based query per 500 customers.

The recommendation refresh (:mod:`campaigns.recommendations`) writes each customer's
ranked products into ``recommendation``; a message shows the best of them that are in
stock *when it is rendered* (a product sold out since the refresh is left out, and the
next one moves up). A worker renders a batch at a time, so the batch's rows are read
together (:func:`recommendation_contexts`), joined to ``product`` for the name, price,
links and stock, never one query per message.

Each message gets its own :class:`MessageRecommendations`: the function its template
calls, which remembers what it returned. Only those products (the ``n`` a call asked
for, in the order first shown) count as shown: the worker writes them to
``recommendation_sent`` when the message is sent (:func:`shown_rows`), which is what the
refresh's "category recently sent" exclusion and the attribution in ``report campaign``
read.

A step with ``min_recommendations`` is not sent to a customer with fewer recommended
products in stock: the batch reports it in :attr:`RecommendationContexts.short` and the
worker skips it with the reason, as it skips an expiry reminder whose points are gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns.config.campaigns import MAX_RECOMMENDATIONS
from campaigns.config.schema import AppConfig
from campaigns.sending.renderbudget import MeasuredDict
from campaigns.store.bulk import in_values
from campaigns.store.models import Product, Recommendation

#: What a template sees of each recommended product (``product.name`` ...).
PRODUCT_FIELDS = ("sku", "name", "category", "price", "url", "image_url", "reason", "because_sku")


@dataclass(frozen=True)
class ShownProduct:
    """One product a message showed: what ``recommendation_sent`` records of it."""

    sku: str
    category: str | None
    #: Its place in the message, from 1 (the order the template first showed them in).
    position: int
    reason: str


class MessageRecommendations:
    """``recommendations(n=3, category=None)`` for one message: up to ``n`` of the
    customer's recommended products in stock, best first, only those of ``category``
    when given. Each product is a mapping of :data:`PRODUCT_FIELDS`, so a template
    reads ``product.name`` and a JSON part can ``tojson`` the list.

    Every product returned is remembered (:attr:`shown`), once however often the
    template (or its text and HTML parts) asks again.
    """

    def __init__(self, products: Sequence[dict[str, Any]]) -> None:
        self._products = list(products)
        self._shown: dict[str, ShownProduct] = {}
        #: Whether the template called the function at all (``nurture check`` renders a
        #: template that does for a customer with none, too).
        self.called = False

    def __call__(self, n: int = 3, category: str | None = None) -> list[dict[str, Any]]:
        """Up to ``n`` recommended products (of ``category`` when given), best first.

        Raises:
            ValueError: ``n`` is not a whole number from 0 to :data:`MAX_RECOMMENDATIONS`,
                or ``category`` is not a string (a template mistake: the render fails,
                naming the template's line).
        """
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_RECOMMENDATIONS:
            raise ValueError(f"recommendations(n=...) takes a whole number from 0 to {MAX_RECOMMENDATIONS}, "
                             f"not {n!r}")
        if category is not None and not isinstance(category, str):
            raise ValueError(f"recommendations(category=...) takes a category name, not {category!r}")
        self.called = True
        chosen = [p for p in self._products if category is None or p["category"] == category][:n]
        for product in chosen:
            if product["sku"] not in self._shown:
                self._shown[product["sku"]] = ShownProduct(sku=product["sku"], category=product["category"],
                                                           position=len(self._shown) + 1, reason=product["reason"])
        # The batch's own mappings, not copies: the immutable sandbox lets no template
        # change them, so another message (or call) always sees them as read.
        return chosen

    @property
    def shown(self) -> list[ShownProduct]:
        """The products the template showed, in the order it first showed them."""
        return list(self._shown.values())


class SampleRecommendations(MessageRecommendations):
    """``recommendations()`` as ``nurture check`` renders it, without a database: ``n``
    sample products of whatever category is asked for, so that every attribute a template
    reads of a product (in a category filter's loop too) is rendered and checked."""

    def __init__(self) -> None:
        super().__init__(())

    def __call__(self, n: int = 3, category: str | None = None) -> list[dict[str, Any]]:
        """``n`` sample products (of ``category`` when given); the arguments are checked
        as the real function checks them."""
        super().__call__(n, category)
        return [{"sku": f"SAMPLE-{index}", "name": f"Sample product {index}",
                 "category": category if category is not None else "sample", "price": 99.0,
                 "url": f"https://shop.example/products/SAMPLE-{index}",
                 "image_url": f"https://shop.example/images/SAMPLE-{index}.jpg",
                 "reason": "co_purchase", "because_sku": "SAMPLE-0"} for index in range(1, n + 1)]


@dataclass
class RecommendationContexts:
    """The recommended products in stock of each customer of a batch (best first), and
    the messages whose step requires more than their customer has."""

    #: Customer id -> products (mappings of :data:`PRODUCT_FIELDS`), best first.
    products: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    #: Delivery id -> why it is not sent (its step's ``min_recommendations`` is not met).
    short: dict[int, str] = field(default_factory=dict)

    def for_message(self, customer_id: int) -> MessageRecommendations:
        """A fresh ``recommendations`` function for one message to ``customer_id``."""
        return MessageRecommendations(self.products.get(customer_id, ()))


def read_recommendations(conn: sa.Connection, customer_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """The recommended products in stock of ``customer_ids``, best first.

    Two index look-ups (per 500 customers on SQLite): their ranked rows
    (``recommendation``'s primary key is (customer_id, rank)), then those products by sku.
    Not one join: for a batch's few hundred rows PostgreSQL's planner prefers hashing the
    whole catalogue to probing its sku index (a sequential scan of 50,000 products, 20 ms
    per 50-message batch, was most of what recommendations added to a message;
    docs/benchmarks.md).
    """
    r = Recommendation.__table__
    p = Product.__table__
    found: dict[int, list[dict[str, Any]]] = {}
    for customers in in_values(conn, r.c.customer_id, sorted(set(customer_ids))):
        ranked = conn.execute(
            sa.select(r.c.customer_id, r.c.sku, r.c.category, r.c.reason, r.c.because_sku)
            .where(customers).order_by(r.c.customer_id, r.c.rank)
        ).all()
        products: dict[str, tuple[Any, ...]] = {}
        for skus in in_values(conn, p.c.sku, sorted({row.sku for row in ranked})):
            # Stock is checked now, not at the refresh: a product sold out since is left out.
            products.update((sku, rest) for sku, *rest in conn.execute(
                sa.select(p.c.sku, p.c.name, p.c.category, p.c.price, p.c.url, p.c.image_url)
                .where(skus, p.c.in_stock.is_(True))).all())
        for customer_id, sku, category, reason, because_sku in ranked:
            if sku not in products:
                continue
            name, product_category, price, url, image_url = products[sku]
            # SQLite hands a NUMERIC 39.00 back as the integer 39: a price is always a float.
            price = float(price) if price is not None else None
            # Measured once here, not in every message's render that shows it.
            found.setdefault(customer_id, []).append(MeasuredDict(zip(PRODUCT_FIELDS, (
                sku, name, product_category if product_category is not None else category, price, url, image_url,
                reason, because_sku), strict=True)))
    return found


def recommendation_contexts(conn: sa.Connection, config: AppConfig, deliveries: Sequence[Any], *,
                            now: datetime, uses: Callable[[str], bool] | None = None) -> RecommendationContexts:
    """The ``recommendations`` of ``deliveries`` (rendered at ``now``).

    ``deliveries`` are :class:`~campaigns.sending.ledger.ClaimedDelivery` rows, or
    anything with their ``id``, ``campaign``, ``step``, ``template`` and ``customer``
    (``{"id": ...}``). ``uses`` says whether a template may call ``recommendations()``
    (:meth:`~campaigns.sending.rendering.TemplateRenderer.references`): only the
    customers of messages whose template may, or whose step requires them, are read, so
    a batch that shows none costs no query. One query per 500 of those customers.
    """
    del now  # the refresh decided what is recommended; stock is read as it is now
    found = RecommendationContexts()
    steps = {c.name: c.steps for c in config.campaigns}

    def needed(delivery: Any) -> int:
        campaign_steps = steps.get(delivery.campaign)
        if campaign_steps is None or not 0 <= delivery.step < len(campaign_steps):
            return 0
        return campaign_steps[delivery.step].min_recommendations

    wanted = [d for d in deliveries if uses is None or needed(d) or uses(d.template)]
    if not wanted:
        return found
    found.products = read_recommendations(conn, (d.customer["id"] for d in wanted))
    for delivery in wanted:
        needed_here = needed(delivery)
        have = len(found.products.get(delivery.customer["id"], ()))
        if needed_here and have < needed_here:
            found.short[delivery.id] = short_reason(needed_here, have)
    return found


def short_reason(needed: int, have: int) -> str:
    """Why a message whose step needs ``needed`` recommended products is not sent."""
    return (f"the step needs at least {needed} recommended product(s) in stock (min_recommendations) "
            f"and the customer has {have or 'none'}")


def shown_rows(delivery: Any, shown: Sequence[ShownProduct], *, sent_at: datetime) -> list[dict[str, Any]]:
    """The ``recommendation_sent`` rows of one sent message (a ledger ``ClaimedDelivery``)."""
    return [{"delivery_id": delivery.id, "customer_id": delivery.customer["id"], "campaign": delivery.campaign,
             "sku": product.sku, "category": product.category, "position": product.position,
             "reason": product.reason, "sent_at": sent_at} for product in shown]


__all__ = [
    "PRODUCT_FIELDS",
    "MessageRecommendations",
    "RecommendationContexts",
    "SampleRecommendations",
    "ShownProduct",
    "read_recommendations",
    "recommendation_contexts",
    "short_reason",
    "shown_rows",
]
