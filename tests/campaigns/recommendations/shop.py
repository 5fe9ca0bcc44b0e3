"""A small shop for the recommendation tests: customers, a catalogue and paid orders
with items, inserted directly; times are pinned (``T0`` plus whole days)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from campaigns.store.models import Customer, Order, OrderItem, Product

#: Day 0 of every test's history.
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def day(n: float) -> datetime:
    """``T0`` plus ``n`` days."""
    return T0 + timedelta(days=n)


class Shop:
    """Writes customers, products and orders into ``engine``, naming customers by external id."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.ids: dict[str, int] = {}
        self._orders = 0

    def products(self, *rows: tuple[str, str | None] | tuple[str, str | None, bool]) -> None:
        """(sku, category[, in_stock]) rows."""
        with self.engine.begin() as conn:
            for row in rows:
                sku, category = row[0], row[1]
                conn.execute(sa.insert(Product.__table__).values(
                    sku=sku, name=f"product {sku}", category=category, price=10, url=f"https://shop/{sku}",
                    in_stock=row[2] if len(row) > 2 else True, attributes={}, created_at=T0, updated_at=T0))

    def customer(self, name: str) -> int:
        """The customer called ``name``, created on first use."""
        if name not in self.ids:
            with self.engine.begin() as conn:
                self.ids[name] = conn.execute(sa.insert(Customer.__table__).values(
                    external_id=name, created_at=T0, updated_at=T0, attributes={},
                ).returning(Customer.__table__.c.id)).scalar_one()
        return self.ids[name]

    def order(self, name: str, when: float, *skus: str, channel: str | None = "online", status: str = "paid") -> None:
        """One order of ``name`` on day ``when`` with one item per sku (category from the sku's prefix)."""
        customer_id = self.customer(name)
        self._orders += 1
        with self.engine.begin() as conn:
            order_pk = conn.execute(sa.insert(Order.__table__).values(
                order_id=f"O{self._orders}", customer_id=customer_id, ordered_at=day(when), amount=10 * len(skus),
                channel=channel, status=status).returning(Order.__table__.c.id)).scalar_one()
            conn.execute(sa.insert(OrderItem.__table__), [
                {"order_pk": order_pk, "sku": sku, "category": None, "quantity": 1, "price": 10} for sku in skus])

    def sent(self, name: str, when: float, sku: str, category: str) -> None:
        """A message on day ``when`` showed ``name`` the product ``sku`` of ``category``."""
        from campaigns.store.models import Delivery, RecommendationSent

        customer_id = self.customer(name)
        with self.engine.begin() as conn:
            delivery_id = conn.execute(sa.insert(Delivery.__table__).values(
                send_key=f"k-{name}-{when}-{sku}", campaign="news", customer_id=customer_id, channel="mail",
                template="t", status="sent", due_at=day(when), dispatch_after=day(when), created_at=day(when),
                updated_at=day(when), sent_at=day(when)).returning(Delivery.__table__.c.id)).scalar_one()
            conn.execute(sa.insert(RecommendationSent.__table__).values(
                delivery_id=delivery_id, customer_id=customer_id, campaign="news", sku=sku, category=category,
                position=1, reason="category", sent_at=day(when)))

    def recommended(self, name: str, table: sa.Table | None = None) -> list[tuple[str, str, str | None]]:
        """(sku, reason, because_sku) of ``name``'s recommendations, by rank."""
        from campaigns.store.models import Recommendation

        table = table if table is not None else Recommendation.__table__
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(
                sa.select(table.c.sku, table.c.reason, table.c.because_sku)
                .where(table.c.customer_id == self.ids[name]).order_by(table.c.rank))]


def planted(shop: Shop) -> None:
    """Issue 17's planted pattern: every buyer of A (a1-a6) later buys B; B is not a
    best-seller (only they buy it) while S1-S3 are bought by nearly everyone; x1-x3 bought
    A (and a best-seller) but not B yet. Catalogue: A and B are books, S1-S3 daily goods,
    T a toy nobody bought."""
    shop.products(("A", "books"), ("B", "books"), ("S1", "daily"), ("S2", "daily"), ("S3", "daily"), ("T", "toys"))
    for n in range(1, 7):
        shop.order(f"a{n}", 1, "A", "S1")
        shop.order(f"a{n}", 5, "B")
    for n in range(1, 21):
        shop.order(f"s{n}", 2, "S1", "S2")
        shop.order(f"s{n}", 6, "S3")
    for n in range(1, 4):
        shop.order(f"x{n}", 3, "A", "S1")
