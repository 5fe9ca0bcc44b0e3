"""Fields (campaigns/customers/importing/fields.py) against hostile input: every unstorable
value is rejected by line, naming the field and never its value; the rows around it are
imported; nothing raises."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.customers.importing.files import import_file
from campaigns.store.models import Customer
from tests.campaigns.customers.importing.import_files import customer, seed_customers, write

UNSTORABLE_CUSTOMERS = [
    '{"customer_id": "h1", "email": "h1@example.com", "attributes": {"tier": "gold"}}',
    '{"customer_id": "h2", "email": "h2@example.com", "attributes": {"score": NaN}}',
    '{"customer_id": "h3", "attributes": {"score": -Infinity}}',
    '{"customer_id": "h4", "name": "nul\\u0000byte"}',
    '{"customer_id": "h5", "name": "lone \\ud800 surrogate"}',
    '{"customer_id": "h6", "attributes": {"n": ' + "7" * 5000 + "}}",
    '{"customer_id": "h7", "attributes": {"n": 9223372036854775808}}',
    '{"customer_id": "h8", "attributes": {"deep": ' + "[" * 40 + "]" * 40 + "}}",
    '{"customer_id": "h9", "attributes": ' + "[" * 100_000 + "]" * 100_000 + "}",
    '{"customer_id": "h10", "created_at": "0001-01-01T00:00:00+08:00"}',
    '{"customer_id": "h11", "created_at": "9999-12-31T23:00:00-05:00"}',
    '{"customer_id": "h12", "attributes": {"k\\u0000ey": 1}}',
    '{"customer_id": "h13", "email": "h13@example.com", "attributes": {"tier": "silver", "n": 9223372036854775807}}',
]


def test_unstorable_json_values_are_rejected_by_line_and_the_rest_imported(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "c.jsonl", "\n".join(UNSTORABLE_CUSTOMERS) + "\n")

    report = import_file(engine, "customers", path, batch_size=3)

    assert report.rows_read == 13
    assert report.imported == 2
    reasons = {error.line: error.reason for error in report.rejected}
    assert sorted(reasons) == list(range(2, 13))
    assert reasons[2].startswith("attributes.score: NaN")
    assert reasons[3].startswith("attributes.score: -Infinity")
    assert reasons[4].startswith("name: contains a NUL character")
    assert reasons[5].startswith("name: contains a lone surrogate")
    assert reasons[6].startswith("attributes.n: integer of 5000 digits")
    assert reasons[7].startswith("attributes.n: integer outside the storable range")
    assert reasons[8].startswith("attributes.deep") and "nested deeper than 32" in reasons[8]
    assert "nested deeper than 32" in reasons[9]
    assert reasons[10].startswith("created_at:") and "out of range" in reasons[10]
    assert reasons[11].startswith("created_at:") and "out of range" in reasons[11]
    assert reasons[12].startswith("attributes: a key contains a NUL")
    assert not any("example.com" in reason for reason in reasons.values())
    # The stored JSON stays valid: an attributes.* audience still works on every row.
    from campaigns.store.jsonattr import typed_attribute

    with engine.connect() as conn:
        tiers = conn.execute(
            sa.select(Customer.external_id, typed_attribute(Customer.attributes, "tier", "str"))
            .order_by(Customer.external_id)
        ).all()
    assert tiers == [("h1", "gold"), ("h13", "silver")]
    assert customer(engine, "h13").attributes["n"] == 2**63 - 1


def test_csv_numbers_that_do_not_fit_stay_text_and_json_columns_are_checked(engine: Engine, tmp_path: Path) -> None:
    long_int, long_float = "9" * 5000, "1" * 400 + ".5"
    path = write(tmp_path, "c.csv", (
        "customer_id,code,ratio,attributes\n"
        f"c1,{long_int},{long_float},\n"
        'c2,1,2,"{""x"": NaN}"\n'
        f'c3,1,2,"{{""x"": {"[" * 5000}{"]" * 5000}}}"\n'
        'c4,1,2,"{""x"": 1}"\n'
    ))

    report = import_file(engine, "customers", path)

    assert report.imported == 2
    assert [error.line for error in report.rejected] == [3, 4]
    assert report.rejected[0].reason.startswith("attributes.x: NaN")
    assert "nested deeper than 32" in report.rejected[1].reason
    assert customer(engine, "c1").attributes == {"code": long_int, "ratio": long_float}
    assert customer(engine, "c4").attributes == {"code": 1, "ratio": 2, "x": 1}


def test_unstorable_values_in_orders_and_events_are_rejected(engine: Engine, tmp_path: Path) -> None:
    seed_customers(engine, tmp_path, "c1")
    orders = write(tmp_path, "o.jsonl", "\n".join([
        '{"order_id": "o1", "customer_id": "c1", "ordered_at": "2025-03-01", "amount": 1e400}',
        '{"order_id": "o2", "customer_id": "c1", "ordered_at": "2025-03-01", "amount": ' + "9" * 400 + "}",
        '{"order_id": "o3", "customer_id": "c1", "ordered_at": "2025-03-01", "amount": 5,'
        ' "items": [{"sku": "A", "price": 5, "quantity": 9999999999}]}',
        '{"order_id": "o4", "customer_id": "c1", "ordered_at": "2025-03-01", "amount": 5}',
    ]) + "\n")
    events = write(tmp_path, "e.jsonl", "\n".join([
        '{"customer_id": "c1", "name": "visit", "occurred_at": "2025-03-01", "properties": {"x": NaN}}',
        '{"customer_id": "c1", "name": "vis\\u0000it", "occurred_at": "2025-03-01"}',
        '{"customer_id": "c1", "name": "visit", "occurred_at": "0001-01-01T00:00:00+01:00"}',
        '{"customer_id": "c1", "name": "visit", "occurred_at": "2025-03-01", "page": "\\udfff"}',
        '{"customer_id": "c1", "name": "visit", "occurred_at": "2025-03-01", "properties": {"x": 1}}',
    ]) + "\n")

    order_report = import_file(engine, "orders", orders)
    event_report = import_file(engine, "events", events)

    assert order_report.imported == 1
    assert [(e.line, e.reason.split(":")[0]) for e in order_report.rejected] == [
        (1, "amount"), (2, "amount"), (3, "items[0].quantity")]
    assert event_report.imported == 1
    assert [(e.line, e.reason.split(":")[0]) for e in event_report.rejected] == [
        (1, "properties.x"), (2, "name"), (3, "occurred_at"), (4, "page")]
