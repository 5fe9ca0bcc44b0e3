"""Rows (campaigns/customers/importing/rows.py): one row of each kind (customers, consent
columns, orders with items, events) from CSV and JSONL, what is stored and what is rejected
by line, on a real SQLite file database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from campaigns.customers.importing.files import import_file
from campaigns.customers.importing.report import RowError
from campaigns.store.models import Consent, Customer, Event, Order, OrderItem
from tests.campaigns.customers.importing.import_files import (
    count,
    customer,
    order_items,
    seed_customers,
    write,
    write_jsonl,
)

CUSTOMERS_CSV = """\
customer_id,name,email,timezone,acquisition_channel,created_at,vip,points,ratio,zip,city
c1,Ann,ann@example.com,Asia/Shanghai,ecommerce,2024-01-02,true,120,1.5,007,Shanghai
c2,Bob,not-an-email,,store,,false,3,,,
c3,"Cai
Li",cai@example.cn,Mars/Olympus,social,,,,,,
c4,Dee,dee@example.com,,direct,yesterday,,,,,
,Nobody,nobody@example.com,,,,,,,,
c6,Eve,eve@example.com,Europe/Berlin,direct,2024-05-06T10:00:00+02:00,,,,,
"""


def test_csv_customers_good_and_bad_rows(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "customers.csv", CUSTOMERS_CSV)
    report = import_file(engine, "customers", path)

    assert report.rows_read == 6
    assert report.imported == 2
    # Lines are physical lines where the row starts; c3's quoted name spans lines 4-5,
    # so every row after it is shifted by one.
    assert [error.line for error in report.rejected] == [3, 4, 6, 7]
    reasons = [error.reason for error in report.rejected]
    assert reasons[0] == "email: not a valid address (one @, a dotted domain, no spaces)"
    assert "timezone: unknown time zone 'Mars/Olympus'" in reasons[1]
    assert reasons[2] == (
        "created_at: invalid date 'yesterday' "
        "(use ISO 8601, e.g. 2025-03-01 or 2025-03-01T10:00:00+08:00)"
    )
    assert reasons[3] == "customer_id: required"

    assert count(engine, Customer) == 2
    ann = customer(engine, "c1")
    assert ann.name == "Ann"
    assert ann.timezone == "Asia/Shanghai"
    assert ann.acquisition_channel == "ecommerce"
    assert ann.created_at == datetime(2024, 1, 2, tzinfo=UTC)
    # Attributes are typed: bools and plain numbers convert; "007" keeps its leading zero.
    assert ann.attributes == {
        "vip": True,
        "points": 120,
        "ratio": 1.5,
        "zip": "007",
        "city": "Shanghai",
    }
    eve = customer(engine, "c6")
    assert eve.created_at == datetime(2024, 5, 6, 8, 0, tzinfo=UTC)  # converted to UTC
    assert eve.attributes == {}  # empty cells are "not given"


def test_consent_columns_create_consent_rows(engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.csv",
        "customer_id,email_consent,sms_consent,wechat_consent\n"
        "c1,yes,0,\n"
        "c2,TRUE,no,1\n"
        "c3,maybe,,\n",
    )
    report = import_file(engine, "customers", path)
    assert report.rejected == [
        RowError(4, 'email_consent: expected true/false, yes/no or 1/0, got "maybe"')
    ]

    def consents() -> dict[tuple[str, str], tuple[str, str | None]]:
        with Session(engine) as session:
            rows = session.exec(select(Customer.external_id, Consent).join(Consent)).all()
            return {(ext, c.channel): (c.status, c.source) for ext, c in rows}

    assert consents() == {
        ("c1", "email"): ("granted", "import"),
        ("c1", "sms"): ("withdrawn", "import"),
        ("c2", "email"): ("granted", "import"),
        ("c2", "sms"): ("withdrawn", "import"),
        ("c2", "wechat"): ("granted", "import"),
    }
    # Re-import: no duplicates; a change is applied (upsert on customer_id, channel).
    import_file(engine, "customers", path)
    assert count(engine, Consent) == 5
    change = write(tmp_path, "d.csv", "customer_id,email_consent\nc1,no\n")
    import_file(engine, "customers", change)
    assert consents()[("c1", "email")] == ("withdrawn", "import")


def test_consent_source_and_time_come_from_the_file_when_given(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "customer_id,sms_consent,consent_source,consent_at\n"
                                    "c1,yes,store signup form v3,2026-03-01T10:00:00+08:00\nc2,yes,,\n")
    import_file(engine, "customers", path)
    with Session(engine) as session:
        rows = {c.customer_id: c for c in session.exec(select(Consent))}
    ids = {c.external_id: c.id for c in [customer(engine, "c1"), customer(engine, "c2")]}
    first, second = rows[ids["c1"]], rows[ids["c2"]]
    assert (first.status, first.source) == ("granted", "import:store signup form v3")
    assert first.recorded_at == datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    assert second.source == "import" and second.recorded_at > first.recorded_at  # defaults: the import's own
    assert customer(engine, "c1").attributes == {}  # not mistaken for attributes


def test_jsonl_customers(engine: Engine, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path,
        "c.jsonl",
        [
            {
                "customer_id": "c1",
                "email": "a@example.com",
                "sms_consent": True,
                "vip": True,
                "attributes": {"points": 10, "tags": ["a", "b"]},
            },
            {"customer_id": 42, "name": "Numeric id"},
            {"customer_id": "c3", "timezone": "Nowhere/Land"},
        ],
    )
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n{not json\n[1, 2]\n")
    report = import_file(engine, "customers", path)
    assert report.rows_read == 5
    assert report.imported == 2
    assert [(e.line, e.reason.split(":")[0]) for e in report.rejected] == [
        (3, "timezone"),
        (5, "invalid JSON"),
        (6, "expected a JSON object, got list"),
    ]
    c1 = customer(engine, "c1")
    assert c1.attributes == {"vip": True, "points": 10, "tags": ["a", "b"]}
    assert customer(engine, "42").name == "Numeric id"
    assert count(engine, Consent) == 1


O1_ITEMS = json.dumps(
    [{"sku": "A", "category": "tea", "quantity": 2, "price": 30}, {"sku": "B", "price": 39.5}]
).replace('"', '""')  # CSV-quoted JSON, as a spreadsheet would write it


ORDERS_CSV = f"""\
order_id,customer_id,ordered_at,amount,channel,items
o1,c1,2025-03-01T10:00:00+08:00,99.5,ecommerce,"{O1_ITEMS}"
o2,ghost,2025-03-01,10,store,
o3,c2,2025-03-02,-1,store,
o4,c2,2025-03-02,12,,not json
o5,c2,2025-03-02 08:30,12,store,
"""


def test_csv_orders(engine: Engine, tmp_path: Path) -> None:
    seed_customers(engine, tmp_path, "c1", "c2")
    report = import_file(engine, "orders", write(tmp_path, "o.csv", ORDERS_CSV))
    assert report.imported == 2
    assert report.rejected == [
        RowError(3, "customer_id 'ghost' not found: import customers first"),
        RowError(4, 'amount: must be a non-negative number, got "-1"'),
        RowError(5, "items: invalid JSON (Expecting value)"),
    ]
    with Session(engine) as session:
        o1 = session.exec(select(Order).where(Order.order_id == "o1")).one()
        assert o1.ordered_at == datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
        assert (o1.amount, o1.channel) == (99.5, "ecommerce")
        o5 = session.exec(select(Order).where(Order.order_id == "o5")).one()
        assert o5.ordered_at == datetime(2025, 3, 2, 8, 30, tzinfo=UTC)  # naive = UTC
    assert order_items(engine, "o1") == [("A", "tea", 2, 30.0), ("B", None, 1, 39.5)]


def test_jsonl_orders_bad_items(engine: Engine, tmp_path: Path) -> None:
    seed_customers(engine, tmp_path, "c1")
    rows = [
        {
            "order_id": "o1",
            "customer_id": "c1",
            "ordered_at": "2025-03-01",
            "amount": 5,
            "items": [{"sku": "A"}],
        },
        {
            "order_id": "o2",
            "customer_id": "c1",
            "ordered_at": "2025-03-01",
            "amount": "5",
            "items": [{"price": 1}],
        },
        {"order_id": "o3", "customer_id": "c1", "ordered_at": "2025-03-01"},
        {
            "order_id": "o4",
            "customer_id": "c1",
            "ordered_at": "2025-03-01",
            "amount": 1.25,
            "items": [],
        },
    ]
    report = import_file(engine, "orders", write_jsonl(tmp_path, "o.ndjson", rows))
    assert report.rejected == [
        RowError(1, "items[0].price: required"),
        RowError(2, "items[0].sku: required"),
        RowError(3, "amount: required"),
    ]
    assert report.imported == 1
    assert count(engine, OrderItem) == 0


def test_events_csv_extra_columns_and_dedupe(engine: Engine, tmp_path: Path) -> None:
    seed_customers(engine, tmp_path, "c1")
    path = write(
        tmp_path,
        "e.csv",
        "customer_id,name,occurred_at,page,score\n"
        "c1,page_view,2025-03-01T10:00:00+08:00,/home,5\n"
        "c1,page_view,2025-03-01T02:00:00Z,/home,5\n"  # same instant and content: a duplicate
        "c1,page_view,2025-03-01T10:00:00+08:00,/cart,5\n"
        "c9,page_view,2025-03-01,/home,1\n",
    )
    report = import_file(engine, "events", path)
    assert report.rejected == [RowError(5, "customer_id 'c9' not found: import customers first")]
    assert count(engine, Event) == 2
    with Session(engine) as session:
        props = sorted(e.properties["page"] for e in session.exec(select(Event)).all())
        assert props == ["/cart", "/home"]
        assert session.exec(select(Event)).first().properties["score"] == 5  # typed
    import_file(engine, "events", path)
    assert count(engine, Event) == 2


def test_events_jsonl_event_id_and_properties(engine: Engine, tmp_path: Path) -> None:
    seed_customers(engine, tmp_path, "c1")
    rows = [
        {
            "event_id": "ev-1",
            "customer_id": "c1",
            "name": "review",
            "occurred_at": "2025-03-01",
            "properties": {"stars": 5},
        },
        # Same event_id: the stored event is left alone even though the content differs.
        {
            "event_id": "ev-1",
            "customer_id": "c1",
            "name": "review",
            "occurred_at": "2025-03-02",
            "properties": {"stars": 1},
        },
        {"customer_id": "c1", "name": "signup", "occurred_at": "2025-02-01T00:00:00"},
        {"customer_id": "c1", "name": "signup", "occurred_at": "tomorrow"},
    ]
    path = write_jsonl(tmp_path, "e.jsonl", rows)
    report = import_file(engine, "events", path, batch_size=1)
    assert [e.line for e in report.rejected] == [4]
    assert report.rejected[0].reason.startswith("occurred_at: invalid date 'tomorrow'")
    import_file(engine, "events", path)
    with Session(engine) as session:
        events = {e.dedupe_key: e for e in session.exec(select(Event)).all()}
    assert len(events) == 2
    assert events["ev-1"].properties == {"stars": 5}
    assert events["ev-1"].occurred_at == datetime(2025, 3, 1, tzinfo=UTC)
    signup = next(e for key, e in events.items() if key != "ev-1")
    assert len(signup.dedupe_key) == 64 and signup.properties == {}


def test_events_csv_properties_json_column(engine: Engine, tmp_path: Path) -> None:
    seed_customers(engine, tmp_path, "c1")
    path = write(
        tmp_path,
        "e.csv",
        "customer_id,name,occurred_at,properties\n"
        'c1,purchase,2025-03-01,"{""sku"": ""A"", ""qty"": 2}"\n'
        'c1,purchase,2025-03-01,"[1]"\n',
    )
    report = import_file(engine, "events", path)
    assert report.rejected == [RowError(3, "properties: expected a JSON object")]
    with Session(engine) as session:
        assert session.exec(select(Event)).one().properties == {"sku": "A", "qty": 2}
