"""The demo's catalogue and baskets (campaigns/customers/demo_catalogue.py, issue #17): a few
dozen products over several categories, some out of stock; every order has items, of the
catalogue but for one discontinued sku; and the patterns a recommender should find are in
the data: baby products, then parenting books that are no best-sellers. Files only; the
import of them is in tests/e2e/test_demo.py."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from campaigns.customers.demo_catalogue import (
    BABY_PRODUCTS,
    BEST_SELLERS,
    CATALOGUE,
    DISCONTINUED_SKU,
    PARENTING_BOOKS,
)
from campaigns.customers.demo_data import DemoFiles, write_demo_files

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return write_demo_files(tmp_path_factory.mktemp("demo"), customers=1500, seed=7, now=NOW)


def histories(demo: DemoFiles) -> dict[str, list[tuple[str, list[dict[str, object]]]]]:
    """customer id -> (ordered_at, items) of each order, in time order."""
    found: dict[str, list[tuple[str, list[dict[str, object]]]]] = defaultdict(list)
    for source, path in demo.orders.items():
        for line in path.read_text(encoding="utf-8").splitlines():
            order = json.loads(line)
            found[f"{source}:{order['customer_id']}"].append((order["ordered_at"], order["items"]))
    return {customer: sorted(orders, key=lambda order: str(order[0])) for customer, orders in found.items()}


def test_the_catalogue_file_has_a_few_dozen_products_over_several_categories(demo):
    with demo.products.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))

    assert 30 <= len(rows) <= 60 and len({row["sku"] for row in rows}) == len(rows)
    assert len({row["category"] for row in rows}) >= 5
    assert {row["in_stock"] for row in rows} == {"yes", "no"}
    assert all(float(row["price"]) > 0 and row["url"].startswith("https://") and row["image_url"].endswith(".jpg")
               for row in rows)
    assert {row["topic"] for row in rows if row["sku"] in PARENTING_BOOKS} == {"parenting"}


def test_every_order_has_items_of_the_catalogue_and_its_amount_is_theirs(demo):
    orders = [order for path in demo.orders.values()
              for order in map(json.loads, path.read_text(encoding="utf-8").splitlines())]
    skus = Counter(item["sku"] for order in orders for item in order["items"])

    assert orders and all(order["items"] for order in orders)
    assert all(order["amount"] == round(sum(i["price"] * i["quantity"] for i in order["items"]), 2)
               for order in orders)
    assert set(skus) - set(CATALOGUE) == {DISCONTINUED_SKU}  # in old orders only, and rarely
    assert skus[DISCONTINUED_SKU] < 0.02 * sum(skus.values())
    assert any(not CATALOGUE[sku].in_stock for sku in skus if sku in CATALOGUE)  # sold before it ran out


def test_baby_buyers_later_buy_parenting_books_which_are_no_best_sellers(demo):
    parents = later_books = others = others_books = 0
    buyers: dict[str, set[str]] = defaultdict(set)
    for customer, orders in histories(demo).items():
        baskets = [{str(item["sku"]) for item in items} for _, items in orders]
        for basket in baskets:
            for sku in basket:
                buyers[sku].add(customer)
        first_baby = next((n for n, basket in enumerate(baskets) if basket & set(BABY_PRODUCTS)), None)
        if first_baby is None:
            others += 1
            others_books += any(basket & set(PARENTING_BOOKS) for basket in baskets)
        else:
            parents += 1
            later_books += any(basket & set(PARENTING_BOOKS) for basket in baskets[first_baby + 1:])

    # Strongly associated: a baby buyer is many times likelier to buy a parenting book later.
    assert parents >= 100 and later_books >= 30
    assert later_books / parents > 5 * (others_books / others)
    # ... yet each parenting book has far fewer buyers than the best-sellers.
    least_bought_best_seller = min(len(buyers[sku]) for sku in BEST_SELLERS)
    assert all(len(buyers[sku]) * 4 < least_bought_best_seller for sku in PARENTING_BOOKS)
