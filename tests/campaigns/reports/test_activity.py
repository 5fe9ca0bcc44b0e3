"""A customer's events and enrolments (campaigns/reports/activity.py), as the single-customer
view returns them (``customer_view``), on the hand-built shop of test_customers.py.

Customer a1 has three events and three enrolments: win_back (treated, A/B at steps 0 and 2,
step 1 a single template), welcome (held out: no messages) and birthday (exited on its goal).
a2 has an event and an enrolment of its own, which a1's view must not show."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from campaigns.reports.customers import customer_view
from campaigns.store.models import Customer, Delivery, Enrollment, Event
from tests.campaigns.reports.test_customers import AS_OF, shop  # noqa: F401 (fixture)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def add_activity(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
    a1, a2 = ids["a1"], ids["a2"]
    with engine.begin() as conn:
        conn.execute(sa.insert(Event.__table__), [
            {"customer_id": a1, "name": "signup", "occurred_at": at("2026-01-02T08:00"), "properties": {"plan": "free"},
             "dedupe_key": "e1"},
            {"customer_id": a1, "name": "review", "occurred_at": at("2026-05-26T09:30"),
             "properties": {"stars": 5, "sku": "TEA"}, "dedupe_key": "e2"},
            {"customer_id": a1, "name": "page_view", "occurred_at": at("2026-05-26T09:00"), "properties": {},
             "dedupe_key": "e3"},
            {"customer_id": a2, "name": "signup", "occurred_at": at("2026-05-27T09:00"), "properties": {},
             "dedupe_key": "e4"},
        ])

        def enrol(customer: int, campaign: str, enrolled: str, **values) -> int:
            row = {"customer_id": customer, "campaign": campaign, "occurrence": "once", "enrolled_at": at(enrolled),
                   "holdout": False, "state": "active", **values}
            return conn.execute(sa.insert(Enrollment.__table__).values(row)
                                .returning(Enrollment.__table__.c.id)).scalar_one()

        win_back = enrol(a1, "win_back", "2026-06-02T02:00")
        enrol(a1, "welcome", "2026-01-02T08:01", holdout=True, state="held_out")
        enrol(a1, "birthday", "2026-03-01T00:00", occurrence="d20260301", state="exited_goal",
              exited_at=at("2026-03-03T12:00"))
        other = enrol(a2, "win_back", "2026-06-02T02:00")
        deliveries = [
            # win_back: step 0 variant B, step 1 one template (no variant), step 2 variant A.
            (win_back, a1, 0, 1, "win_back/b"), (win_back, a1, 1, None, "win_back/last_call"),
            (win_back, a1, 2, 0, "win_back/final_a"), (other, a2, 0, 0, "win_back/a"),
        ]
        conn.execute(sa.insert(Delivery.__table__), [
            {"send_key": f"win_back:{step}:{customer}:once", "customer_id": customer, "campaign": "win_back",
             "step": step, "channel": "email", "template": template, "variant": variant,
             "enrollment_id": enrollment, "status": "queued", "attempts": 0, "due_at": AS_OF,
             "dispatch_after": AS_OF, "created_at": AS_OF, "updated_at": AS_OF}
            for enrollment, customer, step, variant, template in deliveries
        ])
    return ids


def test_the_customer_view_lists_events_newest_first(shop):
    add_activity(shop)

    view = customer_view(shop, "a1")

    assert view["events_total"] == 3
    assert view["events"] == [
        {"name": "review", "occurred_at": at("2026-05-26T09:30"), "properties": {"stars": 5, "sku": "TEA"}},
        {"name": "page_view", "occurred_at": at("2026-05-26T09:00"), "properties": {}},
        {"name": "signup", "occurred_at": at("2026-01-02T08:00"), "properties": {"plan": "free"}},
    ]


def test_the_customer_view_lists_enrolments_with_holdout_state_and_variants(shop):
    add_activity(shop)

    view = customer_view(shop, "a1")

    assert view["enrollments_total"] == 3
    assert view["enrollments"] == [
        {"campaign": "win_back", "occurrence": "once", "state": "active", "holdout": False,
         "enrolled_at": at("2026-06-02T02:00"), "exited_at": None,
         "variants": [{"step": 0, "variant": 1, "template": "win_back/b"},
                      {"step": 2, "variant": 0, "template": "win_back/final_a"}]},
        {"campaign": "birthday", "occurrence": "d20260301", "state": "exited_goal", "holdout": False,
         "enrolled_at": at("2026-03-01T00:00"), "exited_at": at("2026-03-03T12:00"), "variants": []},
        {"campaign": "welcome", "occurrence": "once", "state": "held_out", "holdout": True,
         "enrolled_at": at("2026-01-02T08:01"), "exited_at": None, "variants": []},
    ]


def test_the_view_limits_events_and_enrolments_but_counts_them_all(shop):
    add_activity(shop)

    view = customer_view(shop, "a1", limit=1)

    assert (view["events_total"], [e["name"] for e in view["events"]]) == (3, ["review"])
    assert (view["enrollments_total"], [e["campaign"] for e in view["enrollments"]]) == (3, ["win_back"])
    assert view["enrollments"][0]["variants"] == [{"step": 0, "variant": 1, "template": "win_back/b"},
                                                  {"step": 2, "variant": 0, "template": "win_back/final_a"}]


def test_a_customer_with_no_events_or_enrolments_has_empty_lists(shop):
    add_activity(shop)

    view = customer_view(shop, "d1")

    assert (view["events"], view["events_total"], view["enrollments"], view["enrollments_total"]) == ([], 0, [], 0)
