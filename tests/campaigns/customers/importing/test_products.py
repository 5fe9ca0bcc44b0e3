"""The product catalogue import (campaigns/customers/importing/products.py) and the skus the
orders import reports: upserted by sku, replays write nothing, other columns become
attributes, bad rows are listed by line while the good ones land, and order items whose sku
the catalogue lacks are kept and reported. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.customers.importing.files import import_file
from campaigns.customers.importing.report import UNKNOWN_SAMPLE_LINES, UNKNOWN_SAMPLE_SKUS, RowError
from campaigns.store.db import make_engine
from campaigns.store.models import OrderItem, Product
from tests.campaigns.customers.importing.import_files import count, order_items, seed_customers, write, write_jsonl

CATALOGUE = (
    "sku,name,category,price,url,image_url,in_stock,brand,weight_g\n"
    "TEA-1,Longjing 250 g,tea,268.00,https://shop.example/p/tea-1,https://shop.example/i/tea-1.jpg,yes,Good Tea,250\n"
    "BK-1,Your baby's first year,books,58,https://shop.example/p/bk-1,,no,,\n"
    "SNK-1,Mixed nuts,snacks,99.5,,,1,Nutty,\n"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> Iterator[Engine]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    engine = make_engine(url)
    yield engine
    engine.dispose()


def products(engine: Engine) -> dict[str, dict[str, Any]]:
    """sku -> the stored product's columns."""
    table = Product.__table__
    with engine.connect() as conn:
        return {row.sku: dict(row._mapping) for row in conn.execute(sa.select(table))}


def test_products_are_upserted_by_sku_and_a_replay_writes_nothing(db: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "products.csv", CATALOGUE)

    first = import_file(db, "products", path)
    stored = products(db)
    replay = import_file(db, "products", path)

    assert (first.imported, first.created, first.updated, first.unchanged, first.rejected) == (3, 3, 0, 0, [])
    assert (replay.imported, replay.created, replay.updated, replay.unchanged) == (3, 0, 0, 3)
    assert products(db) == stored  # updated_at too: nothing was written
    tea = stored["TEA-1"]
    assert (tea["name"], tea["category"], tea["price"], tea["in_stock"]) == ("Longjing 250 g", "tea", 268.0, True)
    assert (tea["url"], tea["image_url"]) == ("https://shop.example/p/tea-1", "https://shop.example/i/tea-1.jpg")
    assert stored["BK-1"]["in_stock"] is False and stored["BK-1"]["image_url"] is None
    assert stored["SNK-1"]["price"] == 99.5

    # A change updates in place: same row, created_at kept, updated_at moved on; an empty
    # value keeps the stored one; a row naming no in_stock keeps it too.
    change = write(tmp_path, "change.csv", "sku,name,price,url,in_stock\nTEA-1,,288,,no\nSNK-1,Mixed nuts,99.50,,\n")
    changed = import_file(db, "products", change)

    after = products(db)
    assert (changed.created, changed.updated, changed.unchanged) == (0, 1, 1)
    assert count(db, Product) == 3
    assert after["TEA-1"]["id"] == tea["id"] and after["TEA-1"]["created_at"] == tea["created_at"]
    assert after["TEA-1"]["updated_at"] >= tea["updated_at"]
    assert (after["TEA-1"]["name"], after["TEA-1"]["price"], after["TEA-1"]["in_stock"]) == (
        "Longjing 250 g", 288.0, False)
    assert after["TEA-1"]["url"] == "https://shop.example/p/tea-1"
    assert after["SNK-1"] == stored["SNK-1"]  # 99.50 is the 99.5 stored: not a change


def test_other_columns_are_attributes_merged_into_the_stored_ones(db: Engine, tmp_path: Path) -> None:
    import_file(db, "products", write(tmp_path, "products.csv", CATALOGUE))
    later = write_jsonl(tmp_path, "more.jsonl", [
        {"sku": "TEA-1", "origin": "Hangzhou", "attributes": {"harvest": "2026 spring", "organic": True}},
        {"sku": "SNK-1", "brand": "Crunchy"},
    ])

    report = import_file(db, "products", later)

    stored = products(db)
    assert (report.updated, report.rejected) == (2, [])
    # CSV extras are typed (250 is a number), keys the later file does not name are kept.
    assert stored["TEA-1"]["attributes"] == {"brand": "Good Tea", "weight_g": 250, "origin": "Hangzhou",
                                            "harvest": "2026 spring", "organic": True}
    assert stored["SNK-1"]["attributes"] == {"brand": "Crunchy"}
    assert stored["BK-1"]["attributes"] == {}  # empty extra columns are not attributes


def test_bad_rows_are_listed_by_line_and_the_good_ones_land(db: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "products.csv",
                 "sku,name,price,url,in_stock\n"
                 "OK-1,Good,10,https://shop.example/ok-1,yes\n"
                 ",No sku,10,,\n"
                 "BAD-PRICE,Bad,-3,,\n"
                 "BAD-STOCK,Bad,1,,maybe\n"
                 "\n"
                 "BAD-URL,Bad,1,javascript:alert(1),\n"
                 "NO-NAME,,1,,\n"
                 "OK-2,Also good,0,http://shop.example/ok-2,0\n")

    report = import_file(db, "products", path)

    assert (report.rows_read, report.imported) == (7, 2)
    assert report.rejected == [
        RowError(3, "sku: required"),
        RowError(4, 'price: must be a non-negative number, got "-3"'),
        RowError(5, 'in_stock: expected true/false, yes/no or 1/0, got "maybe"'),
        RowError(7, "url: expected an absolute http:// or https:// address"),
        RowError(8, "name: required for a product not in the catalogue yet"),
    ]
    assert sorted(products(db)) == ["OK-1", "OK-2"]
    # A stock file names known products only by sku: no name needed for them.
    stock = import_file(db, "products", write(tmp_path, "stock.csv", "sku,in_stock\nOK-1,no\nNEW,yes\n"))
    assert (stock.updated, stock.rejected) == (1, [RowError(3, "name: required for a product not in the catalogue yet")])
    assert products(db)["OK-1"]["in_stock"] is False


def test_a_products_file_needs_a_sku_column(db: Engine, tmp_path: Path) -> None:
    from campaigns.errors import DataImportError

    with pytest.raises(DataImportError, match="lacks required column"):
        import_file(db, "products", write(tmp_path, "products.csv", "name,price\nTea,1\n"))


def _order(order_id: str, *skus: str, customer: str = "c1") -> dict[str, Any]:
    return {"order_id": order_id, "customer_id": customer, "ordered_at": "2026-03-01T10:00:00+08:00",
            "amount": 10 * len(skus), "items": [{"sku": sku, "price": 10} for sku in skus]}


def test_items_whose_sku_is_not_in_the_catalogue_are_kept_and_reported_with_their_lines(
        db: Engine, tmp_path: Path) -> None:
    import_file(db, "products", write(tmp_path, "products.csv", CATALOGUE))
    seed_customers(db, tmp_path, "c1")
    path = write_jsonl(tmp_path, "orders.jsonl", [
        _order("o1", "TEA-1", "OLD-1"),
        _order("o2", "OLD-1", "OLD-2", "BK-1"),
        _order("o3", "TEA-1", customer="nobody"),  # rejected: its items are not counted
        _order("o4", "OLD-2"),
    ])

    report = import_file(db, "orders", path)

    assert (report.imported, [error.line for error in report.rejected]) == (3, [3])
    assert (report.items, report.unknown_items, report.unknown_skus) == (6, 4, {"OLD-1", "OLD-2"})
    assert report.unknown_sample == {"OLD-1": [1, 2], "OLD-2": [2, 4]}
    assert not report.catalogue_empty
    assert order_items(db, "o2") == [("BK-1", None, 1, 10.0), ("OLD-1", None, 1, 10.0), ("OLD-2", None, 1, 10.0)]
    assert report.to_dict()["unknown_skus"] == {
        "items": 4, "skus": 2, "catalogue_empty": False,
        "sample": [{"sku": "OLD-1", "lines": [1, 2]}, {"sku": "OLD-2", "lines": [2, 4]}]}
    # Importing the catalogue's missing products makes the replay quiet.
    import_file(db, "products", write(tmp_path, "more.csv", "sku,name\nOLD-1,Old one\nOLD-2,Old two\n"))
    assert import_file(db, "orders", path).unknown_items == 0


def test_the_sample_is_bounded_and_an_empty_catalogue_is_said_once(db: Engine, tmp_path: Path) -> None:
    seed_customers(db, tmp_path, "c1")
    many = [_order(f"o{n}", f"SKU-{n % (UNKNOWN_SAMPLE_SKUS + 3)}") for n in range(60)]
    path = write_jsonl(tmp_path, "orders.jsonl", many)

    empty = import_file(db, "orders", path)

    assert empty.catalogue_empty and empty.unknown_sample == {}
    assert (empty.items, empty.unknown_items, len(empty.unknown_skus)) == (60, 60, UNKNOWN_SAMPLE_SKUS + 3)
    assert count(db, OrderItem) == 60  # kept, not dropped

    import_file(db, "products", write(tmp_path, "products.csv", CATALOGUE))
    known = import_file(db, "orders", path)

    assert not known.catalogue_empty and known.unknown_items == 60
    assert len(known.unknown_sample) == UNKNOWN_SAMPLE_SKUS
    assert all(len(lines) <= UNKNOWN_SAMPLE_LINES for lines in known.unknown_sample.values())
    assert known.unknown_sample["SKU-0"] == [1, 14, 27, 40, 53][:UNKNOWN_SAMPLE_LINES]
