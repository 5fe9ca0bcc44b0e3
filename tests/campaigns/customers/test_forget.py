"""Forgetting a customer (campaigns.customers.forget): personal data gone from every table, the
numbers of every report unchanged, nothing ever sent again, all in one transaction.

The scenario runs on SQLite here and on PostgreSQL in tests/integration/test_forget_postgres.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import campaigns.customers.forget as forget_module
from campaigns.config.schema import AppConfig
from campaigns.customers.addresses import address_digest as addresses_digest
from campaigns.customers.addresses import legacy_address_digest
from campaigns.customers.events import record_events
from campaigns.customers.forget import address_digest, forget_customer
from campaigns.customers.profiles import recompute_profiles
from campaigns.errors import UnknownCustomerError
from campaigns.project.loading import load_config
from campaigns.reports.campaign import campaign_report
from campaigns.reports.customers import channel_report, segment_counts
from campaigns.store.db import make_engine
from campaigns.store.models import (
    CampaignState,
    Consent,
    Customer,
    Delivery,
    DeliveryAttempt,
    Order,
    Response,
    Suppression,
)
from tests.conftest import TICK_NOW, seed_customers
from workers.jobs.inprocess import InProcessWorkers
from workers.jobs.runtime import Runtime

#: The scenario's webhook channel needs its signing secret (it sends nothing unsigned).
pytestmark = pytest.mark.usefixtures("hook_secret")

TARGET = "C00003"
#: What seed_customers gives customer 3, and what the scenario adds about them.
PERSONAL = ["p3@example.com", "+8613800000003", "13800000003", "Test Person3", TARGET, "o-wx-target-openid",
            "Hangzhou-Xihu-77", "COUPON-FOR-TARGET", "signup-for-p3"]
LATER = TICK_NOW + timedelta(days=10)
#: The installation secret ([security] secret_env) keying every digest forget keeps.
SECRET = "installation-secret-for-forget-tests"
#: The target's phone number hashed the way the SMS receiver puts it into a receipt's ref.
PHONE_REF = f"biz-1:{hashlib.sha256(b'+8613800000003').hexdigest()[:16]}:DELIVRD"


@dataclass
class World:
    config: AppConfig
    engine: sa.Engine
    target_id: int
    target_delivery: int



def write_config(tmp_path: Path, database_url: str, sink_url: str) -> Path:
    (tmp_path / "templates" / "win_back").mkdir(parents=True, exist_ok=True)
    for name in ("ping", "again"):
        (tmp_path / "templates" / "win_back" / f"{name}.json.j2").write_text(
            '{"to": {{ customer.external_id|tojson }}, "email": {{ customer.email|tojson }}}')
    path = tmp_path / "config.toml"
    path.write_text(f"""
[database]
url = "{database_url}"
[profiles]
cron = ""
[worker]
max_attempts = 1
[channels.hook]
kind = "webhook"
url = "{sink_url}"
secret_env = "NURTURE_TEST_HOOK_SECRET"
[[campaigns]]
name = "win_back"
purpose = "transactional"
timezone = "Asia/Shanghai"
trigger = {{ cron = "0 10 * * *" }}
channels = ["hook"]
  [campaigns.audience]
  min_orders = 1
  last_order_more_than_days = 90
  [[campaigns.steps]]
  template = "win_back/ping"
  [[campaigns.steps]]
  template = "win_back/again"
  delay = "7d"
""")
    return path


def build_world(tmp_path: Path, database_url: str, sink_url: str) -> World:
    """Ten customers (five lapsed, messaged by win_back), the target among the lapsed, with
    everything a customer leaves behind: events, consents, a sent and a queued message,
    an order converting, a provider error echoing their address, a response, suppressions."""
    config = load_config(write_config(tmp_path, database_url, sink_url))
    engine = make_engine(config.database.url)
    seed_customers(engine, count=10, now=TICK_NOW, lapsed_share=0.5)
    with engine.begin() as conn:
        ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
        conn.execute(sa.update(Customer).where(Customer.external_id == TARGET).values(
            wechat_openid="o-wx-target-openid", locale="zh-CN", timezone="Asia/Shanghai",
            attributes={"city": "Hangzhou-Xihu-77", "vip": True}))
        conn.execute(sa.delete(Consent.__table__))  # whatever seed_customers recorded: ours only
        conn.execute(sa.insert(Consent.__table__), [
            {"customer_id": ids[TARGET], "channel": "email", "status": "granted", "source": "import",
             "recorded_at": TICK_NOW},
            {"customer_id": ids["C00001"], "channel": "email", "status": "granted", "source": "import",
             "recorded_at": TICK_NOW},
        ])
    record_events(engine, [
        {"event_id": "signup-for-p3@example.com", "customer_id": TARGET, "name": "signup",
         "occurred_at": (TICK_NOW - timedelta(days=400)).isoformat(),
         "properties": {"coupon": "COUPON-FOR-TARGET", "referrer_email": "p3@example.com"}},
        {"event_id": "signup-C00001", "customer_id": "C00001", "name": "signup",
         "occurred_at": (TICK_NOW - timedelta(days=400)).isoformat(), "properties": {"coupon": "OTHER"}},
    ])
    runtime = Runtime.from_config(config, engine=engine, clock=lambda: TICK_NOW)
    workers = InProcessWorkers(runtime=runtime)
    with workers.running():
        workers.tick(TICK_NOW)  # step 0 sent to the five lapsed customers, step 1 queued for a week later
    with engine.begin() as conn:
        target_delivery = conn.execute(sa.select(Delivery.id).where(
            Delivery.customer_id == ids[TARGET], Delivery.step == 0, Delivery.status == "sent")).scalar_one()
        # The target and another customer buy after the message: conversions and revenue.
        conn.execute(sa.insert(Order.__table__), [
            {"order_id": "O-after-target", "customer_id": ids[TARGET], "ordered_at": TICK_NOW + timedelta(days=2),
             "amount": 80.0, "channel": "store"},
            {"order_id": "O-after-other", "customer_id": ids["C00001"], "ordered_at": TICK_NOW + timedelta(days=3),
             "amount": 55.5, "channel": "ecommerce"},
        ])
        # Providers echo addresses back, in errors and in what they report.
        conn.execute(sa.update(Delivery).where(Delivery.id == target_delivery).values(
            last_error="HTTP 503: mailbox p3@example.com full; sms +8613800000003"))
        conn.execute(sa.insert(DeliveryAttempt.__table__).values(
            delivery_id=target_delivery, attempt=0, outcome="retry", code="550",
            error="550 <P3@Example.COM> rejected (Test Person3)", started_at=TICK_NOW, finished_at=TICK_NOW))
        conn.execute(sa.insert(Response.__table__).values(
            delivery_id=target_delivery, customer_id=ids[TARGET], kind="click", provider="hook", provider_ref=PHONE_REF,
            occurred_at=TICK_NOW, payload={"ip": "203.0.113.9", "email": "p3@example.com"}))
        conn.execute(sa.insert(Suppression.__table__), [
            {"channel": "email", "address": "p3@example.com", "reason": "hard bounce", "created_at": TICK_NOW},
            {"channel": "sms", "address": "+8613800000003", "reason": "STOP", "created_at": TICK_NOW},
            {"channel": "email", "address": "p1@example.com", "reason": "hard bounce", "created_at": TICK_NOW},
        ])
        conn.execute(sa.insert(CampaignState.__table__).values(
            campaign="other", paused=True, paused_reason="HTTP 401 for p3@example.com", updated_at=TICK_NOW))
    recompute_profiles(engine, config, as_of=TICK_NOW + timedelta(days=4))
    return World(config=config, engine=engine, target_id=ids[TARGET], target_delivery=target_delivery)


#: Columns left out of the search: the business's own order keys, which seed_customers
#: happens to derive from the customer id ("O-C00003"); forgetting keeps orders as they are.
NOT_PERSONAL = {("orders", "order_id")}


def all_text(engine: sa.Engine) -> str:
    """Every value of every column of every table, as one lower-case string."""
    metadata = sa.MetaData()
    metadata.reflect(engine)
    values: list[str] = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            columns = [column for column in table.columns if (table.name, column.name) not in NOT_PERSONAL]
            for row in conn.execute(sa.select(*columns)):
                values.extend(str(value) for value in row)
    return "\n".join(values).lower()


def brute_forced(dump: str) -> list[str]:
    """The candidates whose plain SHA-256 (whole, or the 16-digit prefix a ref keeps) is
    in ``dump``: the search an attacker with a copy of the database runs in seconds over
    every phone number of a prefix, every address of a list, every guessable event id."""
    candidates = [f"+86138000000{n:02d}" for n in range(100)]
    candidates += [f"p{n}@example.com" for n in range(10)] + [f"signup-for-p{n}@example.com" for n in range(10)]
    return [text for text in candidates if hashlib.sha256(text.encode()).hexdigest()[:16] in dump]


def reports(world: World) -> dict[str, Any]:
    return {
        "campaign": campaign_report(world.engine, world.config, "win_back", now=LATER),
        "channels": channel_report(world.engine),
        "segments": segment_counts(world.engine, world.config),
    }


def without_pending(report: dict[str, Any]) -> dict[str, Any]:
    """The campaign report less what forgetting rightly changes: messages still to come."""
    return {key: value for key, value in report.items()
            if key not in ("deliveries", "skipped", "enrollment_states", "steps")}


def check_forget(tmp_path: Path, database_url: str, sink: Any) -> None:
    """The whole scenario; shared by the SQLite and PostgreSQL tests."""
    world = build_world(tmp_path, database_url, sink.url)
    engine = world.engine
    try:
        before = reports(world)
        dump = all_text(engine)
        assert all(text.lower() in dump for text in PERSONAL), "the scenario must store every personal value"

        report = forget_customer(engine, TARGET, now=LATER, secret=SECRET)

        # Personal data: gone from every column of every table.
        dump = all_text(engine)
        assert [text for text in PERSONAL if text.lower() in dump] == []
        # Nor can it be found again by hashing candidates: every digest kept is keyed
        # (an unkeyed SHA-256 of a phone number came back by brute force in seconds).
        assert brute_forced(dump) == []
        assert report.customer_id == world.target_id
        assert report.placeholder.startswith("forgotten:") and len(report.placeholder) == len("forgotten:") + 32
        assert (report.events_scrubbed, report.consents_withdrawn, report.deliveries_scrubbed, report.attempts_scrubbed,
                report.deliveries_cancelled, report.enrollments_ended, report.suppressions_digested,
                report.responses_scrubbed, report.paused_reasons_scrubbed) == (1, 3, 1, 1, 1, 1, 2, 1, 1)

        # Reports: every number the same; the row, its orders and deliveries still count.
        after = reports(world)
        assert after["channels"] == before["channels"]
        assert after["segments"] == before["segments"]
        assert without_pending(after["campaign"]) == without_pending(before["campaign"])
        assert before["campaign"]["converted"]["treated"] == 2 and before["campaign"]["attributed_revenue"] == 135.5
        # What changes is only what will now never happen: the target's queued step 1.
        assert before["campaign"]["deliveries"] == {"sent": 5, "queued": 5}
        assert after["campaign"]["deliveries"] == {"sent": 5, "queued": 4, "skipped": 1}
        assert after["campaign"]["enrollment_states"] == {"active": 4, "exited_unsubscribe": 1}

        with engine.connect() as conn:
            customer = conn.execute(sa.select(Customer).where(Customer.id == world.target_id)).one()
            consents = conn.execute(sa.select(Consent.channel, Consent.status, Consent.source)
                                    .where(Consent.customer_id == world.target_id)
                                    .order_by(Consent.channel)).all()
            suppressions = dict(conn.execute(sa.select(Suppression.address, Suppression.channel)).all())
            delivery = conn.execute(sa.select(Delivery.last_error).where(Delivery.id == world.target_delivery)).scalar_one()
            attempt = conn.execute(sa.select(DeliveryAttempt.error).where(DeliveryAttempt.code == "550")).scalar_one()
        assert (customer.name, customer.email, customer.phone, customer.wechat_openid, customer.locale,
                customer.timezone, customer.attributes) == (None, None, None, None, None, None, {})
        assert customer.external_id == report.placeholder
        assert customer.acquisition_channel == "ecommerce"  # an aggregate dimension, not a person
        assert consents == [("email", "withdrawn", "forget"), ("sms", "withdrawn", "forget"),
                            ("wechat", "withdrawn", "forget")]
        # Opt-outs outlive the data: kept as digests the send-time check can still match.
        assert suppressions == {address_digest("p3@example.com", SECRET): "email",
                                address_digest("+8613800000003", SECRET): "sms", "p1@example.com": "email"}
        # Errors keep what an operator needs, minus the person.
        assert delivery == "HTTP 503: mailbox p***@example.com full; sms +86*******0003"
        assert attempt == "550 <p***@example.com> rejected (***)"

        # Nothing is ever sent to them again: the next tick sends step 1 to the other four only.
        sent_before = len(sink.requests)
        runtime = Runtime.from_config(world.config, engine=engine, clock=lambda: TICK_NOW + timedelta(days=8))
        workers = InProcessWorkers(runtime=runtime)
        with workers.running():
            workers.tick(TICK_NOW + timedelta(days=8))
        bodies = sink.bodies()[sent_before:]
        assert len(bodies) == 4
        assert all(body["to"] != report.placeholder and body["email"] for body in bodies)
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(Delivery).where(
                Delivery.customer_id == world.target_id, Delivery.status == "sent")).scalar_one() == 1

        # The old id is gone for good.
        with pytest.raises(UnknownCustomerError, match="no customer with customer_id 'C00003'"):
            forget_customer(engine, TARGET, now=LATER, secret=SECRET)
    finally:
        engine.dispose()


def test_forget_erases_personal_data_and_keeps_every_report_number(tmp_path, sqlite_url, http_sink):
    check_forget(tmp_path, sqlite_url, http_sink)


def test_forget_is_one_transaction(tmp_path, sqlite_url, http_sink, monkeypatch):
    world = build_world(tmp_path, sqlite_url, http_sink.url)
    dump = all_text(world.engine)

    def fail(*args: object) -> int:
        raise RuntimeError("disk full")

    # One of the last steps fails: everything before it must be rolled back.
    monkeypatch.setattr(forget_module, "_digest_suppressions", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        forget_customer(world.engine, TARGET, now=LATER, secret=SECRET)
    assert all_text(world.engine) == dump
    world.engine.dispose()


def test_forgetting_a_customer_twice_by_placeholder_changes_nothing_more(tmp_path, sqlite_url, http_sink):
    world = build_world(tmp_path, sqlite_url, http_sink.url)
    first = forget_customer(world.engine, TARGET, now=LATER, secret=SECRET)
    dump = all_text(world.engine)
    second = forget_customer(world.engine, first.placeholder, now=LATER, secret=SECRET)
    assert second.customer_id == first.customer_id
    assert (second.deliveries_cancelled, second.enrollments_ended, second.suppressions_digested) == (0, 0, 0)
    # Only the placeholder (random) and the times moved; no personal value came back.
    assert [text for text in PERSONAL if text.lower() in all_text(world.engine)] == []
    assert len(all_text(world.engine)) == len(dump)
    world.engine.dispose()


def test_a_shared_address_already_kept_as_a_digest_does_not_collide(tmp_path, sqlite_url, http_sink):
    # Two customers forgotten with the same suppressed address: the UNIQUE (channel, address)
    # digest row is kept once, the second plain row simply goes.
    world = build_world(tmp_path, sqlite_url, http_sink.url)
    with world.engine.begin() as conn:
        conn.execute(sa.update(Customer).where(Customer.external_id == "C00001").values(email="p3@example.com"))
    forget_customer(world.engine, TARGET, now=LATER, secret=SECRET)
    with world.engine.begin() as conn:
        conn.execute(sa.insert(Suppression.__table__).values(channel="email", address="p3@example.com",
                                                            reason="bounce", created_at=LATER))
    forget_customer(world.engine, "C00001", now=LATER, secret=SECRET)
    with world.engine.connect() as conn:
        rows = conn.execute(sa.select(Suppression.channel, Suppression.address).order_by(Suppression.id)).all()
    assert sorted(rows) == sorted([("email", address_digest("p3@example.com", SECRET)),
                                   ("sms", address_digest("+8613800000003", SECRET)),
                                   ("email", "p1@example.com")])  # no longer C00001's address: untouched
    world.engine.dispose()


def test_an_unknown_customer_is_a_clear_error(sqlite_engine):
    with pytest.raises(UnknownCustomerError, match="no customer with customer_id 'nobody'"):
        forget_customer(sqlite_engine, "nobody", now=LATER, secret=SECRET)


def test_forgetting_needs_the_installation_secret(sqlite_engine):
    with pytest.raises(ValueError, match="installation secret"):
        forget_customer(sqlite_engine, "nobody", now=LATER, secret="")


def test_unkeyed_digests_of_earlier_versions_are_replaced_and_still_matched(tmp_path, sqlite_url, http_sink):
    # A suppression written by an earlier forget (unkeyed SHA-256), for an address the
    # target has now: forgetting the target replaces it by the keyed digest.
    world = build_world(tmp_path, sqlite_url, http_sink.url)
    with world.engine.begin() as conn:
        conn.execute(sa.insert(Suppression.__table__).values(
            channel="sms", address=legacy_address_digest("+86 138 0000 0003"), reason="STOP", created_at=TICK_NOW))
        conn.execute(sa.delete(Suppression.__table__).where(Suppression.address == "+8613800000003"))
    forget_customer(world.engine, TARGET, now=LATER, secret=SECRET)
    with world.engine.connect() as conn:
        rows = set(conn.execute(sa.select(Suppression.channel, Suppression.address)).all())
    assert ("sms", address_digest("+8613800000003", SECRET)) in rows
    assert not any(address.startswith("sha256:") for _, address in rows)
    assert brute_forced(all_text(world.engine)) == []
    world.engine.dispose()


@pytest.mark.parametrize(
    ("address", "same_as"),
    [
        (" Alice@Example.COM ", "alice@example.com"),
        ("+86 138-1234-5678", "+8613812345678"),
        ("(+86) 13812345678", "+8613812345678"),
    ],
)
def test_address_digest_matches_the_normalized_address(address, same_as):
    digest = address_digest(address, SECRET)
    assert digest == address_digest(same_as, SECRET) == addresses_digest(same_as, SECRET)
    assert digest.startswith("hmac-sha256:") and len(digest) == len("hmac-sha256:") + 64
    assert same_as not in digest
    # Keyed: another installation's digest differs, and the plain SHA-256 is not in it.
    assert address_digest(address, SECRET + "x") != digest
    assert hashlib.sha256(same_as.encode()).hexdigest() not in digest
    assert legacy_address_digest(address) == "sha256:" + hashlib.sha256(same_as.encode()).hexdigest()
