"""``report identity`` (issue #15) on SQLite and PostgreSQL, against figures worked out by
hand from a small data set: seven customers known to the pos, the shop and unsourced
imports, and four merges around midnight in Shanghai."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from campaigns.reports.identity import customer_identity, identity_report, mask_identifier
from campaigns.store.models import Customer, CustomerIdentifier, CustomerMerge

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")

#: external_id -> (acquisition channel, [(id value, source)])
PEOPLE = {
    "A": ("store", [("pos:1", "pos"), ("shop:1", "shop")]),
    "B": ("store", [("pos:2", "pos")]),
    "C": ("online", [("shop:3", "shop"), ("C", None)]),
    "D": ("online", [("D", None), ("pos:4", "pos"), ("shop:4", "shop")]),
    "E": (None, [("E", None)]),
    "F": ("", []),  # written by hand, no identifier at all
    "G": ("store", [("pos:7", "pos")]),
}


def add_customers(conn, people) -> dict[str, int]:
    """Insert ``people`` (see :data:`PEOPLE`) with their ``id`` identifiers; external id -> row id."""
    conn.execute(sa.insert(Customer.__table__), [
        {"external_id": name, "acquisition_channel": channel, "created_at": T0, "updated_at": T0, "attributes": {}}
        for name, (channel, _) in people.items()])
    ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
    rows = [{"customer_id": ids[name], "kind": "id", "value": value, "source": source, "verified": False,
             "first_seen_at": T0, "last_seen_at": T0}
            for name, (_, held) in people.items() for value, source in held]
    if rows:
        conn.execute(sa.insert(CustomerIdentifier.__table__), rows)
    return ids


def add_merge(conn, *, survivor: int, merged: int, at: datetime, undone: datetime | None = None,
              external_id: str = "gone") -> int:
    """A CustomerMerge row as a merge leaves it (the merged customer's row already gone)."""
    return conn.execute(sa.insert(CustomerMerge.__table__).returning(CustomerMerge.__table__.c.id), {
        "survivor_id": survivor, "merged_id": merged, "merged_external_id": external_id, "reason": "import:pos",
        "actor": "nurture", "merged_at": at, "moved": {}, "removed": {}, "changed": [], "unmerged_at": undone,
    }).scalar_one()


def seed(engine) -> dict[str, int]:
    with engine.begin() as conn:
        ids = add_customers(conn, PEOPLE)
        a = ids["A"]
        add_merge(conn, survivor=a, merged=901, at=datetime(2026, 11, 20, 15, 59, tzinfo=UTC))  # 23:59 Shanghai
        add_merge(conn, survivor=a, merged=902, at=datetime(2026, 11, 20, 16, 0, tzinfo=UTC))  # 00:00 on the 21st
        add_merge(conn, survivor=a, merged=903, at=datetime(2026, 11, 21, 1, 0, tzinfo=UTC),
                  undone=datetime(2026, 11, 22, tzinfo=UTC))
        add_merge(conn, survivor=a, merged=904, at=datetime(2026, 11, 19, 10, 0, tzinfo=UTC))
    return ids


def test_customers_per_source_and_overlaps(engine):
    seed(engine)
    data = identity_report(engine, zone=SHANGHAI)
    assert data["customers"] == 7
    # pos: A B D G; shop: A C D; unsourced: C D E (F holds nothing).
    assert data["sources"] == [
        {"source": "pos", "customers": 4, "share": pytest.approx(4 / 7)},
        {"source": "shop", "customers": 3, "share": pytest.approx(3 / 7)},
        {"source": "(none)", "customers": 3, "share": pytest.approx(3 / 7)},
    ]
    # "(none)" sorts before letters; pairs: (none)+shop C D, pos+shop A D, (none)+pos D.
    assert data["overlaps"] == [
        {"first": "(none)", "second": "shop", "customers": 2,
         "share_of_first": pytest.approx(2 / 3), "share_of_second": pytest.approx(2 / 3)},
        {"first": "pos", "second": "shop", "customers": 2,
         "share_of_first": pytest.approx(2 / 4), "share_of_second": pytest.approx(2 / 3)},
        {"first": "(none)", "second": "pos", "customers": 1,
         "share_of_first": pytest.approx(1 / 3), "share_of_second": pytest.approx(1 / 4)},
    ]


def test_omnichannel_share_per_acquisition_channel(engine):
    seed(engine)
    data = identity_report(engine, zone=SHANGHAI)
    # store: A (pos+shop) of A B G; online: C and D both; unknown: E (one source) and F (none).
    assert data["omnichannel"] == [
        {"channel": "store", "customers": 3, "omnichannel": 1, "share": pytest.approx(1 / 3)},
        {"channel": "online", "customers": 2, "omnichannel": 2, "share": pytest.approx(1.0)},
        {"channel": "(unknown)", "customers": 2, "omnichannel": 0, "share": pytest.approx(0.0)},
    ]
    assert data["omnichannel_total"] == {"customers": 7, "omnichannel": 3, "share": pytest.approx(3 / 7)}


def test_merges_per_local_day_with_the_undone_apart(engine):
    seed(engine)
    data = identity_report(engine, zone=SHANGHAI)
    assert data["merges"] == [
        {"day": "2026-11-19", "merges": 1, "unmerged": 0},
        {"day": "2026-11-20", "merges": 1, "unmerged": 0},
        {"day": "2026-11-21", "merges": 1, "unmerged": 1},
    ]
    assert (data["merges_total"], data["unmerged_total"]) == (3, 1)
    # The same merges on UTC days: 15:59 and 16:00 on the 20th fall on one day.
    in_utc = identity_report(engine, zone=ZoneInfo("UTC"))["merges"]
    assert in_utc == [
        {"day": "2026-11-19", "merges": 1, "unmerged": 0},
        {"day": "2026-11-20", "merges": 2, "unmerged": 0},
        {"day": "2026-11-21", "merges": 0, "unmerged": 1},
    ]
    since = identity_report(engine, zone=SHANGHAI, since=datetime(2026, 11, 20, 16, 0, tzinfo=UTC))
    assert since["merges"] == [{"day": "2026-11-21", "merges": 1, "unmerged": 1}]
    assert since["sources"] == identity_report(engine, zone=SHANGHAI)["sources"]  # --since limits merges only


def test_half_hour_zones_split_days_at_their_own_midnight(engine):
    # Asia/Kolkata is UTC+05:30: 18:29 UTC is 23:59 there, 18:30 UTC the next day.
    with engine.begin() as conn:
        add_merge(conn, survivor=1, merged=2, at=datetime(2026, 11, 20, 18, 29, tzinfo=UTC))
        add_merge(conn, survivor=1, merged=3, at=datetime(2026, 11, 20, 18, 30, tzinfo=UTC))
    data = identity_report(engine, zone=ZoneInfo("Asia/Kolkata"))
    assert data["merges"] == [{"day": "2026-11-20", "merges": 1, "unmerged": 0},
                              {"day": "2026-11-21", "merges": 1, "unmerged": 0}]


def test_an_empty_database_reports_zeros_not_errors(engine):
    data = identity_report(engine, zone=SHANGHAI)
    assert data["customers"] == 0 and data["sources"] == [] and data["overlaps"] == []
    assert data["omnichannel"] == [] and data["omnichannel_total"]["share"] is None
    assert data["merges"] == [] and data["merges_total"] == 0


def test_customer_identity_lists_identifiers_and_the_chain_of_merges(engine):
    ids = seed(engine)
    d = ids["D"]
    with engine.begin() as conn:
        conn.execute(sa.insert(CustomerIdentifier.__table__), [
            {"customer_id": d, "kind": "phone", "value": "+8613800138000", "source": "pos", "verified": True,
             "first_seen_at": T0, "last_seen_at": T0 + timedelta(days=3)},
            {"customer_id": d, "kind": "email", "value": "d@example.com", "source": "shop", "verified": False,
             "first_seen_at": T0, "last_seen_at": T0},
        ])
        # D absorbed 950, which had absorbed 951 before; a merge into D that was undone does not count.
        into_d = add_merge(conn, survivor=d, merged=950, at=T0 + timedelta(days=2), external_id="shop:950")
        into_950 = add_merge(conn, survivor=950, merged=951, at=T0 + timedelta(days=1), external_id="pos:951")
        add_merge(conn, survivor=d, merged=952, at=T0 + timedelta(days=3), undone=T0 + timedelta(days=4))
    with engine.connect() as conn:
        view = customer_identity(conn, d)
    assert [(i["kind"], i["value"], i["source"], i["verified"]) for i in view["identifiers"]] == [
        ("id", "D", None, False), ("id", "pos:4", "pos", False), ("id", "shop:4", "shop", False),
        ("phone", "+8613800138000", "pos", True), ("email", "d@example.com", "shop", False),
    ]
    assert view["identifiers"][3]["last_seen_at"] == T0 + timedelta(days=3)
    assert [(m["id"], m["merged_external_id"]) for m in view["merges"]] == [(into_d, "shop:950"),
                                                                            (into_950, "pos:951")]


@pytest.mark.parametrize(("kind", "value", "shown"), [
    ("email", "alice@example.com", "a***@example.com"),
    ("phone", "+8613812345678", "+86*******5678"),
    ("openid", "wechat:oX3fABCDEFG", "wechat:oX3f***"),
    ("unionid", "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "o6_b***"),
    ("id", "pos:88", "pos:88"),
    ("id", "13812345678", "*******5678"),
])
def test_mask_identifier(kind, value, shown):
    assert mask_identifier(kind, value) == shown
