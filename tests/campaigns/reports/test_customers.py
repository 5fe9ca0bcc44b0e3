"""Reports (campaigns/reports/customers.py) against numbers worked out by hand on a seven-customer shop.

The shop, profiles recomputed as of 2026-06-01 12:00 UTC (lifecycle defaults: new within
30 days of the first order, at risk after 90 days, churned after 180)::

    id  acquired   orders (date, amount, purchase channel)                          stage
    a1  ecommerce  05-20 100 ecommerce, 05-25 50 store                              new      (first order 12 days ago)
    a2  ecommerce  2025-01-10 200 ecommerce, 2025-12-01 100 ecommerce,
                   04-01 60 ecommerce                                               active   (last order 61 days ago)
    b1  store      2025-10-01 300 store                                             churned  (243 days)
    b2  store      -                                                                prospect
    c1  social     01-15 80 (no channel)                                            at_risk  (137 days)
    c2  (none)     05-30 40.25 social, 05-31 29.75 social                           new
    d1  social     -                                                                prospect

RFM over the 5 buyers, score = 1 + 5 * (rank - 1) // 5 = rank for distinct ranks:

    R (last order ascending): b1 1, c1 2, a2 3, a1 4, c2 5
    F (orders: b1 1, c1 1, a1 2, c2 2, a2 3): ranks 1, 1, 3, 3, 5 -> scores 1, 1, 3, 3, 5
    M (total: c2 70, c1 80, a1 150, b1 300, a2 360): 1, 2, 3, 4, 5

    a1 R4 F3 M3 -> potential_loyalist (r 4-5, f 2-3)
    a2 R3 F5 M5 -> loyal              (r 3-5, f 4-5; not champions: r < 4)
    b1 R1 F1 M4 -> lost               (r 1, f 1-2)
    c1 R2 F1 M2 -> hibernating        (r 2, f 1-2)
    c2 R5 F3 M1 -> potential_loyalist
    b2, d1      -> no segment (no orders)

Revenue: 150 + 360 + 300 + 80 + 70 = 960 over 2 + 3 + 1 + 1 + 2 = 9 orders.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.config.schema import AppConfig
from campaigns.config.vocabulary import STAGES
from campaigns.customers.profiles import recompute_profiles
from campaigns.project.loading import parse_config
from campaigns.reports.customers import channel_report, customer_view, segment_counts
from campaigns.store.models import (
    Consent,
    Customer,
    Delivery,
    Order,
    OrderItem,
    Response,
    Suppression,
)

AS_OF = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CONFIG = AppConfig()

#: external id -> (acquisition channel, [(ordered_at, amount, purchase channel)])
SHOP: dict[str, tuple[str | None, list[tuple[str, float, str | None]]]] = {
    "a1": ("ecommerce", [("2026-05-20T12:00", 100, "ecommerce"), ("2026-05-25T12:00", 50, "store")]),
    "a2": ("ecommerce", [("2025-01-10T12:00", 200, "ecommerce"), ("2025-12-01T12:00", 100, "ecommerce"),
                         ("2026-04-01T12:00", 60, "ecommerce")]),
    "b1": ("store", [("2025-10-01T12:00", 300, "store")]),
    "b2": ("store", []),
    "c1": ("social", [("2026-01-15T12:00", 80, None)]),
    "c2": (None, [("2026-05-30T12:00", 40.25, "social"), ("2026-05-31T12:00", 29.75, "social")]),
    "d1": ("social", []),
}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def build_shop(engine: sa.Engine) -> dict[str, int]:
    """Insert the shop above (no profiles); returns customer ids by external id."""
    ids = {}
    with engine.begin() as conn:
        for external_id, (acquired, orders) in SHOP.items():
            ids[external_id] = conn.execute(
                sa.insert(Customer.__table__).values(
                    external_id=external_id, name=f"Person {external_id}", email=f"{external_id}@example.com",
                    phone=f"+86{len(ids):03d}", acquisition_channel=acquired, created_at=at("2024-01-01T00:00"),
                    updated_at=AS_OF, attributes={"vip": external_id == "a2"},
                ).returning(Customer.__table__.c.id)
            ).scalar_one()
            for index, (when, amount, channel) in enumerate(orders):
                conn.execute(sa.insert(Order.__table__).values(
                    order_id=f"{external_id}-{index}", customer_id=ids[external_id], ordered_at=at(when),
                    amount=amount, channel=channel))
    return ids


@pytest.fixture
def shop(sqlite_engine: sa.Engine) -> sa.Engine:
    build_shop(sqlite_engine)
    recompute_profiles(sqlite_engine, CONFIG, as_of=AS_OF)
    return sqlite_engine


# --------------------------------------------------------------------------- segment_counts


def test_segment_counts_matrix_totals_and_rfm_segments(shop):
    got = segment_counts(shop, CONFIG)

    assert got["customers"] == 7 and got["profiled"] == 7
    assert got["as_of"] == AS_OF
    assert got["stages"] == list(STAGES)  # no "unprofiled": everyone has a profile
    # Acquisition channels: ecommerce {a1, a2}, social {c1, d1}, store {b1, b2}: 2 each, so by
    # name; (unknown) {c2} last.
    assert got["channels"] == ["ecommerce", "social", "store", "(unknown)"]
    assert got["matrix"] == {
        #            ecommerce  social    store     (unknown)
        "prospect": {"ecommerce": 0, "social": 1, "store": 1, "(unknown)": 0},  # d1, b2
        "new":      {"ecommerce": 1, "social": 0, "store": 0, "(unknown)": 1},  # a1, c2
        "active":   {"ecommerce": 1, "social": 0, "store": 0, "(unknown)": 0},  # a2
        "at_risk":  {"ecommerce": 0, "social": 1, "store": 0, "(unknown)": 0},  # c1
        "churned":  {"ecommerce": 0, "social": 0, "store": 1, "(unknown)": 0},  # b1
    }
    assert got["stage_totals"] == {"prospect": 2, "new": 2, "active": 1, "at_risk": 1, "churned": 1}
    assert got["channel_totals"] == {"ecommerce": 2, "social": 2, "store": 2, "(unknown)": 1}

    counts = {row["segment"]: row["count"] for row in got["segments"]}
    # Every configured segment in config order (zeros included), then the customers without one.
    assert [row["segment"] for row in got["segments"]] == [*CONFIG.rfm.names, "(none)"]
    assert counts == {
        "champions": 0, "loyal": 1, "cant_lose": 0, "at_risk": 0, "potential_loyalist": 2, "new": 0,
        "promising": 0, "need_attention": 0, "about_to_sleep": 0, "hibernating": 1, "lost": 1,
        "(none)": 2,  # b2 and d1 never ordered
    }
    shares = {row["segment"]: row["share"] for row in got["segments"]}
    assert shares["potential_loyalist"] == pytest.approx(2 / 7)
    assert shares["lost"] == pytest.approx(1 / 7)
    assert shares["champions"] == 0
    assert sum(shares.values()) == pytest.approx(1)


def test_segment_counts_before_any_recompute_puts_everyone_in_unprofiled(sqlite_engine):
    build_shop(sqlite_engine)

    got = segment_counts(sqlite_engine, CONFIG)

    assert (got["customers"], got["profiled"], got["as_of"]) == (7, 0, None)
    assert got["stages"] == [*STAGES, "unprofiled"]
    assert got["matrix"]["unprofiled"] == {"ecommerce": 2, "social": 2, "store": 2, "(unknown)": 1}
    assert all(sum(got["matrix"][stage].values()) == 0 for stage in STAGES)
    assert got["segments"][-1] == {"segment": "(none)", "count": 7, "share": 1.0}
    assert sum(row["count"] for row in got["segments"]) == 7


def test_a_customer_imported_after_the_recompute_is_unprofiled(shop):
    with shop.begin() as conn:
        conn.execute(sa.insert(Customer.__table__).values(external_id="late", acquisition_channel="store",
                                                          created_at=AS_OF, updated_at=AS_OF, attributes={}))

    got = segment_counts(shop, CONFIG)

    assert (got["customers"], got["profiled"]) == (8, 7)
    assert got["stages"][-1] == "unprofiled"
    assert got["matrix"]["unprofiled"] == {"store": 1, "ecommerce": 0, "social": 0, "(unknown)": 0}
    # store now has 3 customers (b1, b2, late), so it comes first.
    assert got["channels"] == ["store", "ecommerce", "social", "(unknown)"]
    assert {row["segment"]: row["count"] for row in got["segments"]}["(none)"] == 3  # b2, d1, late


def test_segments_follow_the_configured_rule_table_and_keep_stored_names_it_no_longer_has(sqlite_engine):
    build_shop(sqlite_engine)
    custom = parse_config("""
[[rfm.segments]]
name = "best"
r = [4, 5]
f = [3, 5]
[[rfm.segments]]
name = "rest"
""")
    recompute_profiles(sqlite_engine, custom, as_of=AS_OF)

    # best: a1 (R4 F3) and c2 (R5 F3); rest: a2 (R3), b1 (R1), c1 (R2); none: b2, d1.
    assert segment_counts(sqlite_engine, custom)["segments"] == [
        {"segment": "best", "count": 2, "share": pytest.approx(2 / 7)},
        {"segment": "rest", "count": 3, "share": pytest.approx(3 / 7)},
        {"segment": "(none)", "count": 2, "share": pytest.approx(2 / 7)},
    ]
    # Read with the default table: its 11 names (all zero), then the stored extras by name.
    default = segment_counts(sqlite_engine, CONFIG)["segments"]
    assert [row["segment"] for row in default] == [*CONFIG.rfm.names, "best", "rest", "(none)"]
    assert [row["count"] for row in default] == [0] * 11 + [2, 3, 2]


# --------------------------------------------------------------------------- customer_view


def add_ledger(engine: sa.Engine, ids: dict[str, int]) -> None:
    """Items, consents, deliveries, responses and suppressions around customer a1."""
    a1, a2 = ids["a1"], ids["a2"]
    with engine.begin() as conn:
        orders = dict(conn.execute(sa.select(Order.order_id, Order.id)).all())
        conn.execute(sa.insert(OrderItem.__table__), [
            {"order_pk": orders["a1-0"], "sku": "TEA", "category": "tea", "quantity": 2, "price": 30},
            {"order_pk": orders["a1-0"], "sku": "CUP", "category": None, "quantity": 1, "price": 40},
            {"order_pk": orders["a2-0"], "sku": "NOT-A1", "category": None, "quantity": 1, "price": 200},
        ])
        conn.execute(sa.insert(Consent.__table__), [
            {"customer_id": a1, "channel": "email", "status": "granted", "source": "import",
             "recorded_at": at("2026-01-01T00:00")},
            {"customer_id": a1, "channel": "sms", "status": "withdrawn", "source": "unsubscribe",
             "recorded_at": at("2026-02-01T00:00")},
            {"customer_id": a2, "channel": "email", "status": "withdrawn", "source": "import",
             "recorded_at": at("2026-01-01T00:00")},
        ])

        def delivery(key: str, customer: int, **values) -> int:
            row = {"send_key": key, "customer_id": customer, "template": "t/x", "due_at": AS_OF, "dispatch_after": AS_OF,
                   "updated_at": AS_OF, "step": 0, "attempts": 0, "status": "queued", **values}
            return conn.execute(sa.insert(Delivery.__table__).values(row).returning(Delivery.__table__.c.id)).scalar_one()

        sent = delivery("k-sent", a1, campaign="win_back", channel="email", status="sent", attempts=1,
                        sent_at=at("2026-06-02T10:00"), created_at=at("2026-06-02T09:00"))
        delivery("k-failed", a1, campaign="welcome", step=1, channel="sms", status="failed", attempts=3,
                 last_error="timeout", created_at=at("2026-06-03T09:00"))
        other = delivery("k-other", a2, campaign="win_back", channel="email", status="sent", attempts=1,
                         sent_at=AS_OF, created_at=AS_OF)
        conn.execute(sa.insert(Response.__table__), [
            # Names the customer directly, no delivery.
            {"customer_id": a1, "delivery_id": None, "kind": "click", "provider": "web", "provider_ref": "r1",
             "occurred_at": at("2026-06-04T08:00"), "payload": {"url": "/tea"}},
            # Names only a1's delivery.
            {"customer_id": None, "delivery_id": sent, "kind": "receipt", "provider": "outbox", "provider_ref": "r2",
             "occurred_at": at("2026-06-02T10:01"), "payload": {}},
            # a2's: must not show.
            {"customer_id": None, "delivery_id": other, "kind": "receipt", "provider": "outbox", "provider_ref": "r3",
             "occurred_at": AS_OF, "payload": {}},
        ])
        conn.execute(sa.insert(Suppression.__table__), [
            {"channel": "email", "address": "a1@example.com", "reason": "hard bounce", "created_at": AS_OF},
            # a1's email on the sms list is not a1's phone: must not match.
            {"channel": "sms", "address": "a1@example.com", "reason": "mistake", "created_at": AS_OF},
            {"channel": "email", "address": "a2@example.com", "reason": "complaint", "created_at": AS_OF},
        ])


def test_customer_view_has_every_part_newest_first(shop):
    with shop.connect() as conn:
        ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
    add_ledger(shop, ids)
    # A second recompute 44 days later: a1's first order (05-20) is now 56 days old, so a1
    # leaves "new"; the last order (05-25) is 51 days old (< 90), so a1 is "active", dated
    # by that recompute. Nobody's orders changed, so scores and segments stay the same.
    later = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)
    recompute_profiles(shop, CONFIG, as_of=later)

    view = customer_view(shop, "a1")

    assert view is not None
    customer = view["customer"]
    assert (customer["id"], customer["external_id"], customer["email"], customer["phone"]) == (
        ids["a1"], "a1", "a1@example.com", "+86000")
    assert customer["acquisition_channel"] == "ecommerce" and customer["attributes"] == {"vip": False}

    profile = view["profile"]
    assert profile == {
        "customer_id": ids["a1"], "as_of": later,
        "first_order_at": at("2026-05-20T12:00"), "last_order_at": at("2026-05-25T12:00"),
        "orders_count": 2, "total_spent": 150.0, "avg_order_value": 75.0,  # 150 / 2
        "r_score": 4, "f_score": 3, "m_score": 3, "rfm_segment": "potential_loyalist",
        "stage": "active", "stage_since": later,
        "previous_stage": "new", "previous_rfm_segment": "potential_loyalist",  # the values it changed from
        "computed_at": profile["computed_at"],  # wall clock
    }
    # new (dated by the first order) at the first recompute, then active at the second.
    assert view["stage_history"] == [
        {"value": "active", "previous": "new", "entered_at": later},
        {"value": "new", "previous": None, "entered_at": at("2026-05-20T12:00")},
    ]
    assert view["segment_history"] == [{"value": "potential_loyalist", "previous": None, "entered_at": AS_OF}]

    assert view["orders_total"] == 2
    assert view["orders"] == [
        {"order_id": "a1-1", "ordered_at": at("2026-05-25T12:00"), "amount": 50.0, "channel": "store", "items": []},
        {"order_id": "a1-0", "ordered_at": at("2026-05-20T12:00"), "amount": 100.0, "channel": "ecommerce",
         "items": [{"sku": "TEA", "category": "tea", "quantity": 2, "price": 30.0},
                   {"sku": "CUP", "category": None, "quantity": 1, "price": 40.0}]},
    ]
    assert view["consents"] == [
        {"channel": "email", "status": "granted", "source": "import", "recorded_at": at("2026-01-01T00:00")},
        {"channel": "sms", "status": "withdrawn", "source": "unsubscribe", "recorded_at": at("2026-02-01T00:00")},
    ]
    assert view["deliveries_total"] == 2
    assert [(d["campaign"], d["step"], d["channel"], d["status"], d["attempts"], d["sent_at"], d["last_error"])
            for d in view["deliveries"]] == [
        ("welcome", 1, "sms", "failed", 3, None, "timeout"),  # created 06-03
        ("win_back", 0, "email", "sent", 1, at("2026-06-02T10:00"), None),  # created 06-02
    ]
    assert view["responses_total"] == 2
    assert [(r["kind"], r["provider"], r["campaign"], r["occurred_at"]) for r in view["responses"]] == [
        ("click", "web", None, at("2026-06-04T08:00")),
        ("receipt", "outbox", "win_back", at("2026-06-02T10:01")),
    ]
    assert view["responses"][0]["payload"] == {"url": "/tea"}
    assert view["suppressed"] is True
    assert view["suppressions"] == [
        {"channel": "email", "address": "a1@example.com", "reason": "hard bounce", "created_at": AS_OF}]


def test_customer_view_of_a_quiet_customer_and_of_an_unknown_id(shop):
    view = customer_view(shop, "d1")

    assert view is not None
    assert view["profile"]["stage"] == "prospect" and view["profile"]["orders_count"] == 0
    assert view["profile"]["rfm_segment"] is None
    assert view["stage_history"] == [{"value": "prospect", "previous": None, "entered_at": at("2024-01-01T00:00")}]
    assert view["segment_history"] == []
    assert (view["orders"], view["orders_total"], view["deliveries"], view["deliveries_total"]) == ([], 0, [], 0)
    assert (view["consents"], view["responses"], view["suppressed"], view["suppressions"]) == ([], [], False, [])
    assert customer_view(shop, "nobody") is None
    assert customer_view(shop, "A1") is None  # ids are exact


def test_customer_view_limits_orders_but_counts_them_all(shop):
    view = customer_view(shop, "a2", limit=2)

    assert view["orders_total"] == 3
    assert [o["order_id"] for o in view["orders"]] == ["a2-2", "a2-1"]  # 2026-04-01, 2025-12-01


def test_customer_view_before_any_recompute_has_no_profile(sqlite_engine):
    build_shop(sqlite_engine)

    view = customer_view(sqlite_engine, "a1")

    assert view["profile"] is None and view["stage_history"] == [] and view["orders_total"] == 2


# --------------------------------------------------------------------------- channel_report


def metrics(row: dict) -> tuple:
    return (row["channel"], row["customers"], row["buyers"], row["repeat_buyers"], row["repeat_rate"],
            row["orders"], row["revenue"], row["avg_order_value"], row["revenue_share"])


def test_channel_report_by_acquisition_channel(shop):
    got = channel_report(shop)

    assert got["as_of"] == AS_OF
    assert got["stages"] == list(STAGES)
    assert got["totals"] == {"customers": 7, "buyers": 5, "orders": 9, "revenue": 960.0}
    # Revenue first (ecommerce 510 > store 300 > social 80), (unknown) last.
    assert [metrics(row) for row in got["acquisition"]] == [
        # a1 (2 orders, 150) + a2 (3 orders, 360): both repeat; 510 / 5 = 102; 510 / 960
        ("ecommerce", 2, 2, 2, 1.0, 5, 510.0, 102.0, pytest.approx(510 / 960)),
        # b1 (1 order, 300) and b2 (none): 1 buyer, no repeat
        ("store", 2, 1, 0, 0.0, 1, 300.0, 300.0, pytest.approx(300 / 960)),
        # c1 (1 order, 80) and d1 (none)
        ("social", 2, 1, 0, 0.0, 1, 80.0, 80.0, pytest.approx(80 / 960)),
        # c2: 2 orders, 40.25 + 29.75 = 70, 70 / 2 = 35
        ("(unknown)", 1, 1, 1, 1.0, 2, 70.0, 35.0, pytest.approx(70 / 960)),
    ]
    stages = {row["channel"]: row["stages"] for row in got["acquisition"]}
    zero = dict.fromkeys(STAGES, 0)
    assert stages == {
        "ecommerce": {**zero, "new": 1, "active": 1},  # a1, a2
        "store": {**zero, "prospect": 1, "churned": 1},  # b2, b1
        "social": {**zero, "prospect": 1, "at_risk": 1},  # d1, c1
        "(unknown)": {**zero, "new": 1},  # c2
    }
    assert sum(row["revenue_share"] for row in got["acquisition"]) == pytest.approx(1)


def test_channel_report_by_purchase_channel(shop):
    got = channel_report(shop)

    assert [metrics(row) for row in got["purchase"]] == [
        # a1 once (100) and a2 three times (200 + 100 + 60): 2 customers, a2 repeats; 460 / 4 = 115
        ("ecommerce", 2, 2, 1, 0.5, 4, 460.0, 115.0, pytest.approx(460 / 960)),
        # a1 once (50) and b1 once (300): 350 / 2 = 175
        ("store", 2, 2, 0, 0.0, 2, 350.0, 175.0, pytest.approx(350 / 960)),
        # c2 twice: 70 / 2 = 35
        ("social", 1, 1, 1, 1.0, 2, 70.0, 35.0, pytest.approx(70 / 960)),
        # c1's order has no channel: 80; listed last although it out-earns social
        ("(unknown)", 1, 1, 0, 0.0, 1, 80.0, 80.0, pytest.approx(80 / 960)),
    ]
    stages = {row["channel"]: row["stages"] for row in got["purchase"]}
    zero = dict.fromkeys(STAGES, 0)
    assert stages == {
        "ecommerce": {**zero, "new": 1, "active": 1},  # a1, a2
        "store": {**zero, "new": 1, "churned": 1},  # a1 again, b1
        "social": {**zero, "new": 1},  # c2
        "(unknown)": {**zero, "at_risk": 1},  # c1
    }
    assert sum(row["revenue_share"] for row in got["purchase"]) == pytest.approx(1)


def test_channel_report_before_any_recompute_and_on_an_empty_database(sqlite_engine):
    empty = channel_report(sqlite_engine)
    assert empty == {"as_of": None, "stages": list(STAGES), "totals": {"customers": 0, "buyers": 0, "orders": 0,
                                                                      "revenue": 0.0},
                     "acquisition": [], "purchase": []}

    build_shop(sqlite_engine)
    got = channel_report(sqlite_engine)

    assert got["stages"] == [*STAGES, "unprofiled"]
    assert {row["channel"]: row["stages"]["unprofiled"] for row in got["acquisition"]} == {
        "ecommerce": 2, "store": 2, "social": 2, "(unknown)": 1}
    assert metrics(got["acquisition"][0]) == ("ecommerce", 2, 2, 2, 1.0, 5, 510.0, 102.0, pytest.approx(510 / 960))


def test_orders_after_the_profiles_as_of_still_count_as_revenue(shop):
    """Order facts are read live; only stages come from the last recompute."""
    with shop.begin() as conn:
        b2 = conn.execute(sa.select(Customer.id).where(Customer.external_id == "b2")).scalar_one()
        conn.execute(sa.insert(Order.__table__).values(order_id="b2-0", customer_id=b2, amount=40.0,
                                                       ordered_at=AS_OF + timedelta(days=1), channel="store"))

    store = channel_report(shop)["acquisition"][1]

    # b1 300 + b2 40 = 340 over 2 orders, 2 buyers; b2 still a prospect until the next recompute.
    assert metrics(store) == ("store", 2, 2, 0, 0.0, 2, 340.0, 170.0, pytest.approx(340 / 1000))
    assert store["stages"]["prospect"] == 1
