"""The demo shop's product catalogue and what its customers put in their baskets.

Good Tea sells tea, snacks, tea ware and gift boxes, and (since its customers asked) a
small baby corner and a shelf of books. The baskets carry the patterns a recommendation
engine should find (seed 004, issue #17):

* **planted co-purchase**: about one customer in seven becomes a parent at some order:
  from then on they buy baby products, and in their LATER orders parenting books
  (:data:`PARENTING_BOOKS`), which almost nobody else buys: "bought baby products, later
  bought a parenting book", a strong association that is no best-seller;
* a weaker one: buyers of the Yixing teapot later buy pu'er more often than others;
* **best-sellers** everybody buys (:data:`BEST_SELLERS`): a recommender that ranks by raw
  counts would show them to everyone;
* **category affinity**: each customer has one or two favourite categories, and
  distributors buy only tea, snacks and gift boxes, in bulk, at trade price;
* a few **out-of-stock** products (never to be recommended), and one discontinued sku
  (:data:`DISCONTINUED_SKU`) in old orders that today's catalogue no longer lists: the
  orders import keeps those items and reports the sku as not in the catalogue.

Everything is drawn from the generator it is given, so a seed gives the same baskets.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any


@dataclass(frozen=True, kw_only=True)
class DemoProduct:
    """One product of the demo catalogue (a row of ``products.csv``)."""

    sku: str
    name: str
    category: str
    price: float
    in_stock: bool = True
    #: How often it is picked within its category, relative to the others there.
    weight: float = 1.0
    #: Written as extra columns (``nurture import products`` keeps them as attributes).
    origin: str = ""
    topic: str = ""


#: The shop's web address: product pages and images live under it.
SHOP_URL = "https://goodtea.example"

PRODUCTS: tuple[DemoProduct, ...] = (
    DemoProduct(sku="TEA-LONGJING", name="西湖龙井 Longjing green tea 250 g", category="tea", price=268.0,
                weight=6, origin="Hangzhou"),
    DemoProduct(sku="TEA-PUER", name="普洱熟茶饼 Pu'er ripe tea cake 357 g", category="tea", price=198.0,
                weight=3, origin="Yunnan"),
    DemoProduct(sku="TEA-OOLONG", name="高山乌龙 High-mountain oolong 150 g", category="tea", price=158.0,
                weight=3, origin="Taiwan"),
    DemoProduct(sku="TEA-JASMINE", name="茉莉花茶 Jasmine green tea 200 g", category="tea", price=88.0,
                weight=2, origin="Fuzhou"),
    DemoProduct(sku="TEA-TIEGUANYIN", name="铁观音 Tieguanyin oolong 250 g", category="tea", price=176.0,
                weight=2, origin="Anxi"),
    DemoProduct(sku="TEA-BILUOCHUN", name="碧螺春 Biluochun green tea 100 g", category="tea", price=218.0,
                weight=1.5, origin="Suzhou"),
    DemoProduct(sku="TEA-DAHONGPAO", name="大红袍 Da Hong Pao rock tea 100 g", category="tea", price=388.0,
                in_stock=False, weight=1, origin="Wuyishan"),
    DemoProduct(sku="TEA-WHITE-PEONY", name="白牡丹 White peony tea 200 g", category="tea", price=148.0,
                weight=1.5, origin="Fuding"),
    DemoProduct(sku="SNK-NUTS", name="每日坚果 Daily mixed nuts, 30 bags", category="snacks", price=99.0, weight=5),
    DemoProduct(sku="SNK-DRIED-MANGO", name="芒果干 Dried mango 500 g", category="snacks", price=39.0, weight=3),
    DemoProduct(sku="SNK-MOONCAKE", name="莲蓉月饼礼盒 Lotus-seed mooncakes, box of 6", category="snacks",
                price=168.0, in_stock=False, weight=1),
    DemoProduct(sku="SNK-SESAME", name="黑芝麻糕 Black sesame bars 300 g", category="snacks", price=32.0, weight=2),
    DemoProduct(sku="SNK-PLUM", name="话梅 Salted plums 250 g", category="snacks", price=26.0, weight=2),
    DemoProduct(sku="KIT-TEAPOT", name="紫砂壶 Yixing clay teapot", category="kitchen", price=480.0, weight=2,
                origin="Yixing"),
    DemoProduct(sku="KIT-CUPS-6", name="青瓷茶杯 Celadon tea cups, set of 6", category="kitchen", price=128.0,
                weight=3, origin="Longquan"),
    DemoProduct(sku="KIT-KETTLE", name="温控电水壶 Temperature-control kettle", category="kitchen", price=299.0,
                in_stock=False, weight=1.5),
    DemoProduct(sku="KIT-TEA-TRAY", name="竹制茶盘 Bamboo tea tray", category="kitchen", price=188.0, weight=1.5),
    DemoProduct(sku="KIT-INFUSER", name="玻璃飘逸杯 Glass infuser mug", category="kitchen", price=68.0, weight=2),
    DemoProduct(sku="KIT-CADDY", name="锡制茶叶罐 Tin tea caddy", category="kitchen", price=96.0, weight=1.5),
    DemoProduct(sku="GFT-BOX-S", name="茶礼盒（小）Tea gift box, small", category="gift", price=198.0, weight=3),
    DemoProduct(sku="GFT-BOX-L", name="茶礼盒（大）Tea gift box, large", category="gift", price=598.0, weight=2),
    DemoProduct(sku="GFT-CARD-200", name="礼品卡 Gift card, 200 yuan", category="gift", price=200.0, weight=1),
    DemoProduct(sku="BBY-BOTTLE", name="玻璃奶瓶 Glass baby bottle 240 ml", category="baby", price=89.0, weight=3),
    DemoProduct(sku="BBY-WIPES", name="婴儿湿巾 Baby wipes, 6 packs", category="baby", price=59.0, weight=3),
    DemoProduct(sku="BBY-BLANKET", name="纯棉包被 Cotton swaddle blanket", category="baby", price=139.0, weight=2),
    DemoProduct(sku="BBY-TEETHER", name="硅胶牙胶 Silicone teether", category="baby", price=45.0, weight=2),
    DemoProduct(sku="BBY-ROMPER", name="有机棉连体衣 Organic cotton romper", category="baby", price=119.0, weight=2),
    DemoProduct(sku="BBY-CARRIER", name="婴儿背带 Baby carrier", category="baby", price=399.0, in_stock=False,
                weight=1),
    DemoProduct(sku="BK-FIRST-YEAR", name="《宝宝的第一年》Your baby's first year", category="books", price=58.0,
                weight=3, topic="parenting"),
    DemoProduct(sku="BK-TODDLER-SLEEP", name="《安睡宝宝》Sleep for babies and toddlers", category="books",
                price=45.0, weight=2, topic="parenting"),
    DemoProduct(sku="BK-BABY-FOOD", name="《婴儿辅食》First foods for babies", category="books", price=49.0,
                weight=2, topic="parenting"),
    DemoProduct(sku="BK-TEA-ATLAS", name="《中国茶叶地图》An atlas of Chinese tea", category="books", price=128.0,
                weight=2, topic="tea"),
    DemoProduct(sku="BK-TEA-CEREMONY", name="《茶道入门》The tea ceremony, a first book", category="books",
                price=68.0, weight=2, topic="tea"),
    DemoProduct(sku="BK-COOKBOOK", name="《家常菜》Home cooking", category="books", price=59.0, weight=1,
                topic="cooking"),
)
#: sku -> product.
CATALOGUE = {product.sku: product for product in PRODUCTS}
#: Bought by everybody: about every other order holds one of them.
BEST_SELLERS = ("TEA-LONGJING", "SNK-NUTS")
#: What parents buy in their orders after their first baby product (and hardly anyone else).
PARENTING_BOOKS = tuple(p.sku for p in PRODUCTS if p.topic == "parenting")
BABY_PRODUCTS = tuple(p.sku for p in PRODUCTS if p.category == "baby")
#: category -> what anyone may pick there: parenting books are on no one's shelf but the
#: parents' (that is the pattern), however fond of books they are.
SHELVES = {category: tuple(p.sku for p in PRODUCTS if p.category == category and p.sku not in PARENTING_BOOKS)
           for category in dict.fromkeys(p.category for p in PRODUCTS)}
#: A tea of an earlier harvest, sold until about a year ago and no longer in the catalogue.
DISCONTINUED_SKU = "TEA-HUANGSHAN-2024"
DISCONTINUED = {"sku": DISCONTINUED_SKU, "category": "tea", "price": 238.0}
#: Columns of ``products.csv``: the catalogue's own, then extras kept as attributes.
PRODUCT_COLUMNS = ["sku", "name", "category", "price", "url", "image_url", "in_stock", "origin", "topic"]

#: Share of people who become parents, and the chances per order once they are.
PARENT_SHARE = 0.15
#: Chance, per order of a parent-to-be, that the baby has come (the first baby product).
PARENT_ONSET_CHANCE = 0.5
BABY_CHANCE = 0.5
BOOK_AFTER_BABY_CHANCE = 0.55
#: Chances per order for everybody else: a baby gift for friends, a parenting book.
STRAY_BABY_CHANCE = 0.02
STRAY_BOOK_CHANCE = 0.01
BEST_SELLER_CHANCE = 0.5
PUER_AFTER_TEAPOT_CHANCE = 0.35
#: Trade price for distributors (a share of the list price).
TRADE_PRICE = 0.7
#: Categories people may favour, and those distributors buy.
TASTE_CATEGORIES = ("tea", "snacks", "kitchen", "gift", "books")
DISTRIBUTOR_CATEGORIES = ("tea", "snacks", "gift")


def write_products_file(path: Path) -> Path:
    """Write the catalogue as the CSV ``nurture import products`` reads."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PRODUCT_COLUMNS)
        for product in PRODUCTS:
            slug = product.sku.lower()
            writer.writerow([product.sku, product.name, product.category, f"{product.price:.2f}",
                             f"{SHOP_URL}/p/{slug}", f"{SHOP_URL}/img/{slug}.jpg",
                             "yes" if product.in_stock else "no", product.origin, product.topic])
    return path


class Shopper:
    """One person's baskets, order after order: their tastes, and whether (and from which
    order on) they are a parent or own the teapot."""

    def __init__(self, rng: random.Random, *, channel: str) -> None:
        self.rng = rng
        self.channel = channel
        pool = DISTRIBUTOR_CATEGORIES if channel == "distributor" else TASTE_CATEGORIES
        self.favourites = rng.sample(pool, rng.choice((1, 2)))
        self.pool = pool
        self.will_be_parent = channel != "distributor" and rng.random() < PARENT_SHARE
        self.parent = False
        self.has_teapot = False

    def basket(self, count: int, *, ordered_at: datetime, now: datetime) -> list[dict[str, Any]]:
        """The items of one order of about ``count`` lines, placed at ``ordered_at``."""
        rng = self.rng
        skus: list[str] = []
        was_parent, had_teapot = self.parent, self.has_teapot
        if self.will_be_parent and not self.parent and rng.random() < PARENT_ONSET_CHANCE:
            self.parent = True  # the first order with a baby product
        if self.parent and (not was_parent or rng.random() < BABY_CHANCE):
            skus.append(self._pick(BABY_PRODUCTS))
        elif not self.parent and rng.random() < STRAY_BABY_CHANCE:
            skus.append(self._pick(BABY_PRODUCTS))
        # Books follow the baby products in later orders, never in the same one.
        if was_parent and rng.random() < BOOK_AFTER_BABY_CHANCE:
            skus.append(self._pick(PARENTING_BOOKS))
        elif not self.parent and rng.random() < STRAY_BOOK_CHANCE:
            skus.append(self._pick(PARENTING_BOOKS))
        if had_teapot and rng.random() < PUER_AFTER_TEAPOT_CHANCE:
            skus.append("TEA-PUER")
        if rng.random() < BEST_SELLER_CHANCE:
            skus.append(rng.choice(BEST_SELLERS))
        while len(skus) < count:
            category = rng.choice(self.favourites if rng.random() < 0.6 else self.pool)
            skus.append(self._pick(SHELVES[category]))
        self.has_teapot = self.has_teapot or "KIT-TEAPOT" in skus
        items: dict[str, dict[str, Any]] = {}
        for sku in skus:
            quantity = self._quantity()
            if sku in items:
                items[sku]["quantity"] += quantity
                continue
            product = CATALOGUE[sku]
            price = product.price * (TRADE_PRICE if self.channel == "distributor" else 1.0)
            items[sku] = {"sku": sku, "category": product.category, "quantity": quantity, "price": round(price, 2)}
        if now - ordered_at > timedelta(days=400) and rng.random() < 0.05:
            items[DISCONTINUED_SKU] = {**DISCONTINUED, "quantity": 1}
        return list(items.values())

    def _quantity(self) -> int:
        # Distributors restock in bulk, direct (company) accounts buy for an office.
        if self.channel == "distributor":
            return self.rng.randint(2, 10)
        if self.channel == "direct":
            return self.rng.randint(1, 5)
        return self.rng.choices((1, 2, 3), (6, 3, 1))[0]

    def _pick(self, skus: tuple[str, ...]) -> str:
        """One of ``skus``, by their weights; an out-of-stock product was sold before it ran out."""
        return self.rng.choices(skus, [CATALOGUE[sku].weight for sku in skus])[0]


__all__ = [
    "BABY_PRODUCTS",
    "BEST_SELLERS",
    "CATALOGUE",
    "DISCONTINUED_SKU",
    "PARENTING_BOOKS",
    "PRODUCTS",
    "PRODUCT_COLUMNS",
    "DemoProduct",
    "Shopper",
    "write_products_file",
]
