"""Tests for campaigns.customers.importing on a real SQLite file database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from campaigns.store.db import make_engine, upgrade
from campaigns.errors import DataImportError
from campaigns.customers.importing.files import import_file
from campaigns.customers.importing.report import ImportReport, RowError
from campaigns.store.models import Consent, Customer, Event, Order, OrderItem


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    upgrade(engine)
    yield engine
    engine.dispose()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(tmp_path: Path, name: str, rows: list[Any]) -> Path:
    return write(tmp_path, name, "".join(json.dumps(row) + "\n" for row in rows))


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(model.__table__)).scalar_one()


def customer(engine: Engine, external_id: str) -> Customer:
    with Session(engine) as session:
        return session.exec(select(Customer).where(Customer.external_id == external_id)).one()


def seed_customers(engine: Engine, tmp_path: Path, *ids: str) -> None:
    path = write(tmp_path, "seed.csv", "customer_id\n" + "".join(f"{i}\n" for i in ids))
    assert import_file(engine, "customers", path).imported == len(ids)


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


def test_customer_reimport_is_idempotent_and_updates(engine: Engine, tmp_path: Path) -> None:
    first = write(
        tmp_path,
        "a.csv",
        "customer_id,name,email,vip,city\n"
        "c1,Ann,ann@example.com,true,Shanghai\n"
        "c2,Bob,bob@example.com,false,\n",
    )
    import_file(engine, "customers", first)
    created = customer(engine, "c1").created_at
    report = import_file(engine, "customers", first)
    assert (report.imported, report.rejected) == (2, [])
    assert count(engine, Customer) == 2

    # Changed name, blank email (= not given: kept), new attribute merged with stored ones.
    second = write(tmp_path, "b.csv", "customer_id,name,email,tier\nc1,Ann Lee,,gold\n")
    import_file(engine, "customers", second)
    assert count(engine, Customer) == 2
    ann = customer(engine, "c1")
    assert ann.name == "Ann Lee"
    assert ann.email == "ann@example.com"
    assert ann.attributes == {"vip": True, "city": "Shanghai", "tier": "gold"}
    assert ann.created_at == created  # not given, so not overwritten
    assert ann.updated_at >= created


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


def test_import_does_not_regrant_consent_withdrawn_elsewhere(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(tmp_path, "c.csv", "customer_id,email_consent\nc1,yes\n")
    import_file(engine, "customers", path)
    with engine.begin() as conn:  # the customer unsubscribes through a link
        conn.execute(sa.update(Consent.__table__).values(status="withdrawn", source="unsubscribe"))
    import_file(engine, "customers", path)  # a stale export says "yes" again
    with Session(engine) as session:
        consent = session.exec(select(Consent)).one()
    assert (consent.status, consent.source) == ("withdrawn", "unsubscribe")


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


def test_duplicate_key_in_one_batch_keeps_last(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "customer_id,name\nc1,First\nc1,Second\nc2,Other\n")
    report = import_file(engine, "customers", path)
    assert (report.rows_read, report.imported, report.rejected) == (3, 3, [])
    assert count(engine, Customer) == 2
    assert customer(engine, "c1").name == "Second"


def test_missing_required_header_raises(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "o.csv", "order_id,customer_id,amount\no1,c1,5\n")
    with pytest.raises(DataImportError, match="lacks required column.*ordered_at"):
        import_file(engine, "orders", path)


@pytest.mark.parametrize(
    ("name", "content", "file_format", "message"),
    [
        ("missing.csv", None, None, "file not found"),
        ("data.xlsx", "x", None, "unknown file format"),
        ("data.txt", "x", "parquet", "unknown file format"),
        ("empty.csv", "", None, "empty"),
        ("dup.csv", "customer_id,name,name\n", None, "duplicate CSV column"),
    ],
)
def test_unusable_files_raise(
    engine: Engine,
    tmp_path: Path,
    name: str,
    content: str | None,
    file_format: str | None,
    message: str,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataImportError, match=message):
        import_file(engine, "customers", path, file_format=file_format)


def test_undecodable_file_raises(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("customer_id,name\nc1,Ann\nc2,Jos\u00e9\n".encode("latin-1"))
    with pytest.raises(DataImportError, match=r"latin1.csv:3: not valid UTF-8"):
        import_file(engine, "customers", path)
    assert count(engine, Customer) == 1  # the rows before the bad line were written


def test_utf8_bom_and_explicit_format(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_bytes("customer_id,name\nc1,\u674e\u96f7\n".encode("utf-8-sig"))
    report = import_file(engine, "customers", path, file_format="csv")
    assert (report.imported, report.rejected) == (1, [])
    assert customer(engine, "c1").name == "\u674e\u96f7"


def test_row_with_wrong_field_count_is_rejected(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "customer_id,name\nc1,Ann,extra\n\nc2,Bob\n")
    report = import_file(engine, "customers", path)
    assert report.rejected == [RowError(2, "row has 3 fields but the header has 2")]
    assert report.rows_read == 2  # the blank line is not a row
    assert count(engine, Customer) == 1


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


def order_items(engine: Engine, order_id: str) -> list[tuple[str, str | None, int, float]]:
    with Session(engine) as session:
        rows = session.exec(
            select(OrderItem).join(Order).where(Order.order_id == order_id).order_by(OrderItem.sku)
        ).all()
        return [(i.sku, i.category, i.quantity, i.price) for i in rows]


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


def test_order_reimport_replaces_items(engine: Engine, tmp_path: Path) -> None:
    seed_customers(engine, tmp_path, "c1")
    first = [
        {
            "order_id": "o1",
            "customer_id": "c1",
            "ordered_at": "2025-03-01",
            "amount": 50,
            "items": [{"sku": "A", "price": 20}, {"sku": "B", "price": 30}],
        }
    ]
    import_file(engine, "orders", write_jsonl(tmp_path, "o.jsonl", first))
    import_file(engine, "orders", write_jsonl(tmp_path, "o.jsonl", first))
    assert count(engine, Order) == 1
    assert count(engine, OrderItem) == 2

    second = [
        {
            "order_id": "o1",
            "customer_id": "c1",
            "ordered_at": "2025-03-01",
            "amount": 75,
            "channel": "store",
            "items": [{"sku": "C", "quantity": 3, "price": 25}],
        }
    ]
    report = import_file(engine, "orders", write_jsonl(tmp_path, "o2.jsonl", second))
    assert (report.imported, report.rejected) == (1, [])
    assert count(engine, Order) == 1
    assert order_items(engine, "o1") == [("C", None, 3, 25.0)]
    with Session(engine) as session:
        order = session.exec(select(Order)).one()
    assert (order.amount, order.channel) == (75.0, "store")

    # No "items" key means items not given: the stored items are kept.
    third = [{"order_id": "o1", "customer_id": "c1", "ordered_at": "2025-03-01", "amount": 75}]
    import_file(engine, "orders", write_jsonl(tmp_path, "o3.jsonl", third))
    assert order_items(engine, "o1") == [("C", None, 3, 25.0)]


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


def test_report_to_dict_is_json(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "customer_id,email\nc1,bad\n")
    report = import_file(engine, "customers", path)
    assert isinstance(report, ImportReport)
    data = json.loads(json.dumps(report.to_dict()))
    assert data == {
        "kind": "customers",
        "path": str(path),
        "rows_read": 1,
        "imported": 0,
        "rejected_count": 1,
        "rejected": [{"line": 2, "reason": "email: not a valid address (one @, a dotted domain, no spaces)"}],
    }


def test_large_csv_is_batched(engine: Engine, tmp_path: Path) -> None:
    rows, batch_size = 20_000, 1000
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("customer_id,name,email,email_consent,city,points\n")
        for i in range(rows):
            handle.write(
                f"cust-{i},Name {i},user{i}@example.com,{'yes' if i % 2 else 'no'},"
                f"City {i % 7},{i}\n"
            )
    commits = 0

    def on_commit(_conn: Any) -> None:
        nonlocal commits
        commits += 1

    seen: list[int] = []
    sa.event.listen(engine, "commit", on_commit)
    try:
        report = import_file(engine, "customers", path, batch_size=batch_size, progress=seen.append)
    finally:
        sa.event.remove(engine, "commit", on_commit)

    assert (report.rows_read, report.imported, report.rejected) == (rows, rows, [])
    assert count(engine, Customer) == rows
    assert count(engine, Consent) == rows
    assert commits <= rows // batch_size + 2
    assert seen == sorted(seen) and len(seen) >= rows // batch_size
    assert seen[-1] == path.stat().st_size
    last = customer(engine, f"cust-{rows - 1}")
    assert last.attributes == {"city": f"City {(rows - 1) % 7}", "points": rows - 1}


# --------------------------------------------------------------------------- hostile input
# Every unstorable value is rejected by line, naming the field and never its value; the
# rows around it are imported; nothing raises.

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


def test_an_unterminated_quote_is_reported_not_swallowed(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", 'customer_id,name\nX0029,Ann\nX0030,"unterminated\nX0031,never\n')

    report = import_file(engine, "customers", path)

    assert report.imported == 1
    assert len(report.rejected) == 1
    error = report.rejected[0]
    assert error.line == 3
    assert "unterminated quoted field" in error.reason and "lines 3-4" in error.reason
    assert customer(engine, "X0029").name == "Ann"
    assert count(engine, Customer) == 1  # X0031 is not hidden inside X0030's name


def test_a_stray_quote_mid_file_rejects_its_row_and_parsing_resumes(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", 'customer_id,name\nA1,"Ann"x\nA2,Bob\nA3,"Multi\nline"\n')

    report = import_file(engine, "customers", path)

    assert [error.line for error in report.rejected] == [2]
    assert "CSV" in report.rejected[0].reason
    assert customer(engine, "A2").name == "Bob"
    assert customer(engine, "A3").name == "Multi\nline"  # a closed multi-line field is fine


def test_wide_header_is_refused_by_a_cap_and_duplicates_are_named(engine: Engine, tmp_path: Path) -> None:
    wide = write(tmp_path, "wide.csv", "customer_id," + ",".join(f"c{i}" for i in range(60_000)) + "\n")
    with pytest.raises(DataImportError, match=r"60001 columns; at most 1000"):
        import_file(engine, "customers", wide)
    dup = write(tmp_path, "dup.csv", "customer_id,b,a,b,a,c\n")
    with pytest.raises(DataImportError, match=r"duplicate CSV column\(s\): a, b$"):
        import_file(engine, "customers", dup)


def test_oversized_lines_and_values_are_rejected_by_line(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from campaigns.customers.importing import readers

    monkeypatch.setattr(readers, "MAX_ROW_BYTES", 4096)
    path = write(tmp_path, "c.jsonl", "\n".join([
        '{"customer_id": "a1"}',
        '{"customer_id": "a2", "attributes": {"blob": "' + "x" * 10_000 + '"}}',
        '{"customer_id": "a3"}',
    ]) + "\n")
    report = import_file(engine, "customers", path)
    assert report.imported == 2
    assert [(e.line, "4096 bytes" in e.reason) for e in report.rejected] == [(2, True)]

    csv_path = write(tmp_path, "c.csv", 'customer_id,note\nb1,"' + "y" * 3000 + '\n' + "y" * 3000 + '"\nb2,ok\n')
    report = import_file(engine, "customers", csv_path)
    assert report.imported == 1
    assert [(e.line, "4096 bytes" in e.reason) for e in report.rejected] == [(2, True)]

    monkeypatch.undo()
    big = write(tmp_path, "big.jsonl", '{"customer_id": "d1", "attributes": {"blob": "' + "z" * 70_000 + '"}}\n')
    report = import_file(engine, "customers", big)
    assert report.imported == 0
    assert report.rejected[0].reason.startswith("attributes.blob: value is 70002 bytes of JSON; at most 65536")


def test_a_row_the_database_refuses_is_rejected_alone(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last line of defence: should validation miss a value the database refuses, the
    batch is retried in halves so the valid rows around the bad one are still written."""
    from campaigns.customers.importing import rows as importing_rows

    monkeypatch.setattr(importing_rows, "check_row", lambda row: None)  # let the bad value through
    rows = [{"customer_id": f"c{i}", "email": f"c{i}@example.com"} for i in range(1, 8)]
    rows[4]["name"] = "\ud800"  # SQLite cannot encode it
    path = write(tmp_path, "c.jsonl", "".join(json.dumps(row) + "\n" for row in rows))

    report = import_file(engine, "customers", path, batch_size=7)

    assert report.imported == 6
    assert report.rejected == [RowError(5, "the database refused this row (UnicodeEncodeError)")]
    assert count(engine, Customer) == 6


def test_cli_import_lists_hostile_rows_by_line_without_traceback_or_personal_data(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from workers.cli.main import app

    database = tmp_path / "cli.db"
    config = write(tmp_path, "config.toml", f'[database]\nurl = "sqlite:///{database}"\n')
    lines = [UNSTORABLE_CUSTOMERS[0], UNSTORABLE_CUSTOMERS[1], UNSTORABLE_CUSTOMERS[5],
             '{"customer_id": "h14", "email": "h14@example.com", "phone": "+8613812345678", "name": "\\ud800"}',
             UNSTORABLE_CUSTOMERS[12]]
    jsonl = write(tmp_path, "c.jsonl", "\n".join(lines) + "\n")
    csv_file = write(tmp_path, "c.csv", 'customer_id,email,name\nX0029,x29@example.com,Ann\n'
                                        'X0030,x30@example.com,"unterminated\nX0031,x31@example.com,never\n')

    for path, bad_lines, imported in ((jsonl, [2, 3, 4], 2), (csv_file, [3], 1)):
        result = CliRunner().invoke(app, ["import", "customers", str(path), "-c", str(config)])
        assert result.exit_code == 3, result.output
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert f"{imported} imported, {len(bad_lines)} rejected" in result.output
        listed = [int(line.strip()[len(f"{path}:"):].split(":", 1)[0])
                  for line in result.output.splitlines() if line.strip().startswith(f"{path}:")]
        assert listed == bad_lines
        assert "example.com" not in result.output and "13812345678" not in result.output
    engine = make_engine(f"sqlite:///{database}")
    try:
        assert sorted(c.external_id for c in (customer(engine, i) for i in ("h1", "h13", "X0029"))) == [
            "X0029", "h1", "h13"]
        assert count(engine, Customer) == 3
    finally:
        engine.dispose()
