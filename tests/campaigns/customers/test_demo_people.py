"""The demo's people (issue #15): write_demo_files describes each person once or twice, as
the store's tills and the web shop know them, with the overlap and the family emails the
demo shows. These tests read the files only; importing them is in test_demo_import.py."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from campaigns.customers.demo_data import DEMO_SOURCES, DemoFiles, write_demo_files

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return write_demo_files(tmp_path_factory.mktemp("demo"), customers=600, seed=7, now=NOW)


def records(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def orders(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_same_seed_writes_the_same_bytes_and_another_seed_other_ones(tmp_path, demo):
    again = write_demo_files(tmp_path / "again", customers=600, seed=7, now=NOW)
    other = write_demo_files(tmp_path / "other", customers=600, seed=8, now=NOW)

    for source in DEMO_SOURCES:
        for kind in ("customers", "orders", "refunds"):
            first, second = getattr(demo, kind)[source], getattr(again, kind)[source]
            assert first.read_bytes() == second.read_bytes(), (source, kind)
        assert demo.customers[source].read_bytes() != other.customers[source].read_bytes()
    assert demo.events.read_bytes() == again.events.read_bytes()
    assert demo == DemoFiles(**{**vars(again), "customers": demo.customers, "orders": demo.orders,
                                "refunds": demo.refunds, "events": demo.events, "products": demo.products})


def test_each_source_numbers_its_own_records_and_every_store_member_has_a_phone(demo):
    for source, letter in DEMO_SOURCES.items():
        ids = [row["customer_id"] for row in records(demo.customers[source])]
        assert ids == [f"{letter}{number:06d}" for number in range(1, len(ids) + 1)], source
    assert all(row["phone"].startswith("+86138") for row in records(demo.customers["store"]))


def test_a_person_in_both_systems_is_one_phone_in_both_files_and_one_sign_up(demo):
    store, online = records(demo.customers["store"]), records(demo.customers["online"])
    phones = {source: Counter(row["phone"] for row in rows if row["phone"])
              for source, rows in (("store", store), ("online", online))}
    # One number, one person: a phone repeats only for the second accounts.
    assert all(count == 1 for count in phones["store"].values())
    repeated = {phone for phone, count in phones["online"].items() if count > 1}
    assert all(phones["online"][phone] == 2 for phone in repeated)
    shared = set(phones["store"]) & set(phones["online"])
    assert len(shared) == demo.in_both
    # About one person in five is in both (the share the demo shows as omnichannel).
    assert 0.12 < demo.in_both / demo.people < 0.3
    assert len(store) + len(online) == demo.people + demo.in_both + len(demo.two_accounts)
    # The other system's record carries no sign-up date or acquisition channel: each
    # person has one of each, so the person's first channel stands.
    with_channel = [row for row in store + online if row["acquisition_channel"]]
    assert len(with_channel) == demo.people
    assert all(row["created_at"] for row in with_channel)
    # The acquisition channel says which system a person came from.
    assert {row["acquisition_channel"] for row in store if row["acquisition_channel"]} == {"store"}
    assert "store" not in {row["acquisition_channel"] for row in online}


def test_a_second_web_shop_account_has_the_phone_of_the_first_and_a_store_card(demo):
    store = {row["customer_id"]: row for row in records(demo.customers["store"])}
    online = {row["customer_id"]: row for row in records(demo.customers["online"])}
    assert len(demo.two_accounts) == 600 // 200
    repeated = Counter(row["phone"] for row in online.values() if row["phone"])
    assert {phone for phone, count in repeated.items() if count > 1} == {
        online[first]["phone"] for first, _, _ in demo.two_accounts}
    for first, second, card in demo.two_accounts:
        assert online[first]["phone"] == online[second]["phone"] == store[card]["phone"]
        assert online[first]["email"] != online[second]["email"]
        assert online[first]["created_at"] < online[second]["created_at"]  # the first account survives
        assert second > first  # the newer account has the higher number
    assert demo.shared_phone in {online[first]["phone"] for first, _, _ in demo.two_accounts}


def test_a_family_email_is_shared_by_two_people_of_the_two_systems(demo):
    store = {row["customer_id"]: row for row in records(demo.customers["store"])}
    online = {row["customer_id"]: row for row in records(demo.customers["online"])}
    assert len(demo.family) == 600 // 250
    for shopper, member in demo.family:
        assert store[member]["email"] == online[shopper]["email"]
        assert "family" in store[member]["email"]
        assert store[member]["phone"] not in {row["phone"] for row in online.values()}  # the member is store only
        assert online[shopper]["phone"] not in {row["phone"] for row in store.values()}
    # Besides the family emails, an address repeats only for one person in both systems
    # (the same address and phone in each).
    rows = [*store.values(), *online.values()]
    emails = Counter(row["email"] for row in rows if row["email"])
    shared = {email for email, count in emails.items() if count > 1}
    owners = {(row["email"], row["phone"]) for row in rows if row["email"] in shared}
    assert len(owners) == len(shared) + len(demo.family)


def test_orders_and_events_name_customers_their_import_can_find(demo):
    ids = {source: {row["customer_id"] for row in records(demo.customers[source])} for source in DEMO_SOURCES}
    order_ids = []
    for source in DEMO_SOURCES:
        for order in orders(demo.orders[source]):
            assert order["customer_id"] in ids[source], (source, order["order_id"])
            order_ids.append(order["order_id"])
    assert len(order_ids) == len(set(order_ids)) > demo.people
    # Store orders are bought in the store, unless the person has no web shop account.
    store_only = ids["store"] - {row["customer_id"] for row in records(demo.customers["store"])
                                 if row["phone"] in {o["phone"] for o in records(demo.customers["online"])}}
    assert all(order["channel"] == "store" or order["customer_id"] in store_only
               for order in orders(demo.orders["store"]))
    events = records(demo.events)
    # One sign-up per person; reviews and shares of their orders, never in the future.
    assert sum(event["name"] == "signup" for event in events) == demo.people
    assert {event["name"] for event in events} == {"signup", "review", "share"}
    assert len({event["event_id"] for event in events}) == len(events)
    for event in events:
        prefix, source, own_id = event["customer_id"].split(":")
        assert prefix == "id" and own_id in ids[source], event
