"""References to customer ids (campaigns.customers.identity.lookup), on SQLite and
PostgreSQL: every kind of identifier, written any way a system writes it, finds its
holder; a merged record's identifiers find the survivor; orders and events of an import
reach the customer they name; a bare value naming two customers is refused, not guessed;
the email dot rule follows ``[identity] email_dotless_domains``."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.config.identity import IdentityConfig, IdentitySourceConfig
from campaigns.config.schema import AppConfig
from campaigns.customers.identity.identifiers import Identifier, normalize, normalize_email
from campaigns.customers.identity.lookup import resolve_references, resolve_unique
from campaigns.customers.identity.merging import merge_customers
from campaigns.customers.importing.files import import_file
from campaigns.customers.lookups import customer_row_id
from campaigns.errors import AmbiguousCustomerError
from campaigns.store.models import Customer, CustomerIdentifier, Event, Order

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
#: "shop" matches on nothing: every row is its own customer, whatever it shares.
RULES = IdentityConfig(sources={"shop": IdentitySourceConfig(match=())})
CUSTOMERS = [
    {"customer_id": "1001", "name": "Ann", "phone": "138 0013 8000", "email": "Ann.Lee@Gmail.com",
     "unionid": "U-ann"},
    {"customer_id": "1002", "name": "Bob", "phone": "+86 139-0000-0002", "email": "Bob.Smith@Example.cn",
     "unionid": "U-bob"},
]


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def import_customers(engine, tmp_path: Path, rules: IdentityConfig = RULES) -> dict[str, int]:
    """Ann and Bob from the shop; external id -> row id."""
    report = import_file(engine, "customers", write_csv(tmp_path / "customers.csv", CUSTOMERS), source="shop",
                         identity=rules)
    assert report.rejected == [] and report.created == 2
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())


def test_every_kind_written_any_way_finds_its_holder(engine, tmp_path: Path) -> None:
    ids = import_customers(engine, tmp_path)
    ann, bob = ids["shop:1001"], ids["shop:1002"]
    references = {
        "phone:+86 138 0013 8000": ann, "phone:13800138000": ann, "phone:+86-139-0000-0002": bob,
        "email:ANN.LEE@gmail.com": ann, "email: annlee@gmail.com ": ann, "email:bob.smith@example.cn": bob,
        "unionid:U-ann": ann, "unionid: U-bob": bob, "id:shop:1001": ann,
        "1002": bob,  # bare: the row's customer_id in the source named
    }
    unknown = ["phone:+8613700000000", "phone:not a number", "email:nobody@example.cn", "unionid:U-zed",
               "id:1001", "shop:9999"]
    with engine.connect() as conn:
        found = resolve_references(conn, [*references, *unknown], rules=RULES, source="shop")
        unsourced = resolve_references(conn, ["1001", "shop:1001", "id:shop:1001"], rules=RULES)
    assert found == references
    # Without a source a bare reference is an external id as stored ("shop:1001").
    assert unsourced == {"shop:1001": ann, "id:shop:1001": ann}


def test_a_row_without_identifiers_is_still_found_by_its_external_id(engine) -> None:
    with engine.begin() as conn:
        legacy = conn.execute(sa.insert(Customer.__table__).values(
            external_id="C-legacy", created_at=NOW, updated_at=NOW, attributes={}
        ).returning(Customer.__table__.c.id)).scalar_one()
    with engine.connect() as conn:
        assert resolve_references(conn, ["C-legacy", "id:C-legacy", "C-other"], rules=RULES) == {
            "C-legacy": legacy, "id:C-legacy": legacy}
        assert resolve_unique(conn, "C-legacy", rules=RULES) == legacy


def test_after_a_merge_the_merged_records_identifiers_find_the_survivor(engine, tmp_path: Path) -> None:
    ids = import_customers(engine, tmp_path)
    ann, bob = ids["shop:1001"], ids["shop:1002"]
    with engine.begin() as conn:
        merge_customers(conn, survivor_id=ann, merged_id=bob, reason="same person", actor="test", now=NOW)
    refs = ["shop:1002", "id:shop:1002", "phone:+8613900000002", "email:Bob.Smith@example.cn", "unionid:U-bob"]
    with engine.connect() as conn:
        assert resolve_references(conn, refs, rules=RULES) == dict.fromkeys(refs, ann)
        assert {resolve_unique(conn, ref, rules=RULES) for ref in refs} == {ann}
    assert customer_row_id(engine, "shop:1002", rules=RULES) == ann


def test_orders_and_events_of_an_import_reach_the_customer_they_name(engine, tmp_path: Path) -> None:
    ids = import_customers(engine, tmp_path)
    ann, bob = ids["shop:1001"], ids["shop:1002"]
    orders = [
        {"order_id": "O-1", "customer_id": "phone:+86 138 0013 8000", "ordered_at": "2026-05-01", "amount": "10"},
        {"order_id": "O-2", "customer_id": "email:ann.lee@GMAIL.com", "ordered_at": "2026-05-02", "amount": "20"},
        {"order_id": "O-3", "customer_id": "unionid:U-bob", "ordered_at": "2026-05-03", "amount": "30"},
        {"order_id": "O-4", "customer_id": "email:bob.smith@example.cn", "ordered_at": "2026-05-04", "amount": "40"},
        {"order_id": "O-5", "customer_id": "1002", "ordered_at": "2026-05-05", "amount": "50"},
        {"order_id": "O-6", "customer_id": "phone:+8613700000000", "ordered_at": "2026-05-06", "amount": "60"},
    ]
    report = import_file(engine, "orders", write_csv(tmp_path / "orders.csv", orders), source="shop", identity=RULES)
    assert report.imported == 5
    assert [error.line for error in report.rejected] == [7]
    events = [
        {"event_id": "E-1", "customer_id": "unionid:U-ann", "name": "signup", "occurred_at": "2026-05-01"},
        {"event_id": "E-2", "customer_id": "phone:139 0000 0002", "name": "signup", "occurred_at": "2026-05-01"},
        {"event_id": "E-3", "customer_id": "email:AnnLee@gmail.com", "name": "visit", "occurred_at": "2026-05-02"},
        {"event_id": "E-4", "customer_id": "id:shop:1002", "name": "visit", "occurred_at": "2026-05-02"},
    ]
    # Without a source: kind:value references work the same.
    report = import_file(engine, "events", write_csv(tmp_path / "events.csv", events), identity=RULES)
    assert (report.imported, report.rejected) == (4, [])
    with engine.connect() as conn:
        by_order = dict(conn.execute(sa.select(Order.order_id, Order.customer_id)).all())
        by_event = dict(conn.execute(sa.select(Event.dedupe_key, Event.customer_id)).all())
    assert by_order == {"O-1": ann, "O-2": ann, "O-3": bob, "O-4": bob, "O-5": bob}
    assert by_event == {"E-1": ann, "E-2": bob, "E-3": ann, "E-4": bob}


def test_a_bare_value_naming_two_customers_is_ambiguous(engine) -> None:
    # One customer's id is another's phone: either could be meant.
    with engine.begin() as conn:
        table = Customer.__table__
        rows = conn.execute(sa.insert(table).returning(table.c.id, table.c.external_id), [
            {"external_id": external_id, "created_at": NOW, "updated_at": NOW, "attributes": {}}
            for external_id in ("13800138000", "C-2")]).all()
        by_id = {external_id: pk for pk, external_id in rows}
        conn.execute(sa.insert(CustomerIdentifier.__table__), [
            {"customer_id": by_id[owner], "kind": kind, "value": value, "first_seen_at": NOW, "last_seen_at": NOW}
            for owner, kind, value in (("13800138000", "id", "13800138000"), ("C-2", "id", "C-2"),
                                       ("C-2", "phone", "+8613800138000"))])
    with engine.connect() as conn:
        with pytest.raises(AmbiguousCustomerError) as raised:
            resolve_unique(conn, "13800138000", rules=RULES)
        assert resolve_unique(conn, "id:13800138000", rules=RULES) == by_id["13800138000"]
        assert resolve_unique(conn, "phone:13800138000", rules=RULES) == by_id["C-2"]
        assert resolve_unique(conn, "C-2", rules=RULES) == by_id["C-2"]
        assert resolve_unique(conn, "13900000000", rules=RULES) is None
    assert str(raised.value) == ("customer '13800138000' is ambiguous: it matches 2 customers "
                                 "(id:13800138000, phone:+8613800138000); give one of those instead")
    with pytest.raises(AmbiguousCustomerError):
        customer_row_id(engine, "13800138000")


def test_dots_are_dropped_only_in_the_dotless_domains() -> None:
    defaults = IdentityConfig()
    assert defaults.email_dotless_domains == ("gmail.com", "googlemail.com")
    assert normalize("email", " A.n.N@Gmail.com", rules=defaults) == Identifier("email", "ann@gmail.com")
    assert normalize("email", "a.nn+shop@googlemail.com", rules=defaults) == Identifier("email", "ann+shop@googlemail.com")
    assert normalize("email", "a.nn@example.com", rules=defaults) == Identifier("email", "a.nn@example.com")
    assert normalize("email", "a.nn@gmail.com.cn", rules=defaults) == Identifier("email", "a.nn@gmail.com.cn")
    kept = AppConfig.model_validate({"identity": {"email_dotless_domains": []}}).identity
    assert kept.email_dotless_domains == ()
    assert normalize("email", "A.nn@Gmail.com", rules=kept) == Identifier("email", "a.nn@gmail.com")
    own = IdentityConfig(email_dotless_domains=(" Example.COM ",))
    assert normalize_email("a.nn@example.com", dotless_domains=own.email_dotless_domains) == "ann@example.com"
    assert normalize("email", "a.nn@gmail.com", rules=own) == Identifier("email", "a.nn@gmail.com")


@pytest.mark.parametrize(("domains", "finds", "misses"), [
    (None, ["email:annlee@gmail.com", "email:A.N.N.L.E.E@gmail.com", "email:ann.lee@gmail.com"], []),
    ((), ["email:ann.lee@gmail.com", "email:ANN.LEE@Gmail.com"], ["email:annlee@gmail.com"]),
])
def test_the_dot_rule_decides_what_an_import_stores_and_a_reference_finds(engine, tmp_path: Path, domains,
                                                                          finds, misses) -> None:
    rules = RULES if domains is None else RULES.model_copy(update={"email_dotless_domains": domains})
    ann = import_customers(engine, tmp_path, rules)["shop:1001"]
    with engine.connect() as conn:
        stored = conn.execute(sa.select(CustomerIdentifier.value).where(
            CustomerIdentifier.customer_id == ann, CustomerIdentifier.kind == "email")).scalar_one()
        assert resolve_references(conn, [*finds, *misses], rules=rules) == dict.fromkeys(finds, ann)
    assert stored == ("annlee@gmail.com" if domains is None else "ann.lee@gmail.com")
