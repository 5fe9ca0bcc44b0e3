"""``nurture import products`` through the Typer app, and what ``nurture import orders`` says
of items whose sku the catalogue lacks (text and ``--json``), on a throwaway project. The
import itself, on SQLite and PostgreSQL: tests/campaigns/customers/importing/test_products.py."""

from __future__ import annotations

import json

import sqlalchemy as sa

from campaigns.store.models import OrderItem, Product
from tests.campaigns.customers.importing.import_files import count
from tests.workers.cli.win_back import assert_no_crash, invoke

PRODUCTS_CSV = """
sku,name,category,price,url,in_stock,origin
TEA-1,Longjing,tea,268,https://shop.example/p/tea-1,yes,Hangzhou
TEA-2,,tea,88,,no,
TEA-3,Oolong,tea,abc,,1,
BK-1,First year,books,58,,false,
"""


def test_import_products_lists_bad_rows_by_line_and_a_replay_changes_nothing(project, engine):
    file = project.write("products.csv", PRODUCTS_CSV)

    first = invoke("import", "products", file, "-c", project.config)
    replay = invoke("import", "products", file, "-c", project.config, "--json")

    assert_no_crash(first)
    assert first.exit_code == 3, first.output  # rows were rejected
    assert "products: 2 imported, 2 rejected of 4 rows" in first.output
    assert "2 new, 0 updated, 0 unchanged" in first.output
    assert f"{file}:3: name: required for a product not in the catalogue yet" in first.output
    assert f"{file}:4: price: must be a non-negative number" in first.output
    report = json.loads(replay.stdout)
    assert (report["kind"], report["imported"], report["created"], report["updated"], report["unchanged"]) == (
        "products", 2, 0, 0, 2)
    assert [entry["line"] for entry in report["rejected"]] == [3, 4]
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(Product.sku, Product.attributes)).all())
    assert stored == {"TEA-1": {"origin": "Hangzhou"}, "BK-1": {}}


def test_a_clean_products_file_exits_0(project):
    file = project.write("products.csv", "sku,name\nA,Tea\n")

    result = invoke("import", "products", file, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    assert "1 new, 0 updated, 0 unchanged" in result.output


def test_import_orders_names_the_skus_not_in_the_catalogue_and_keeps_their_items(project, engine):
    customers = project.write("customers.csv", "customer_id\nc1\n")
    orders = project.write("orders.jsonl", "".join(
        json.dumps({"order_id": f"o{n}", "customer_id": "c1", "ordered_at": "2026-03-01", "amount": 10,
                    "items": [{"sku": sku, "price": 10}]}) + "\n"
        for n, sku in enumerate(["TEA-1", "GONE-1", "GONE-1", "TEA-1"], start=1)))
    assert invoke("import", "customers", customers, "-c", project.config).exit_code == 0

    empty = invoke("import", "orders", orders, "-c", project.config)
    invoke("import", "products", project.write("products.csv", "sku,name\nTEA-1,Tea\n"), "-c", project.config)
    text = invoke("import", "orders", orders, "-c", project.config)
    as_json = invoke("import", "orders", orders, "-c", project.config, "--json")

    assert_no_crash(empty)
    assert empty.exit_code == 0, empty.output  # reported, not rejected
    assert "the catalogue is empty, so the skus of 4 of 4 item(s) (2 distinct) were not checked" in empty.output
    assert "GONE-1" not in empty.output  # said once, not sku by sku
    assert text.exit_code == 0, text.output
    assert "items: 2 of 4 item(s) name 1 sku(s) not in the catalogue (kept, not dropped" in text.output
    assert f"GONE-1: {orders}:2, 3" in text.output
    assert json.loads(as_json.stdout)["unknown_skus"] == {
        "items": 2, "skus": 1, "catalogue_empty": False, "sample": [{"sku": "GONE-1", "lines": [2, 3]}]}
    assert count(engine, OrderItem) == 4
