"""Send-time policy (campaigns.sending.policy), through the real worker path: consent, the
suppression list, frequency caps across campaigns, quiet hours and send windows in the
customer's zone.

Each test starts broadcasts with ``run_now`` on in-process Dramatiq workers whose clock
the test sets (the world of policy_world.py), then reads the ledger: what was sent,
skipped or deferred, and until when.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from campaigns.customers.addresses import address_digest, legacy_address_digest
from campaigns.project.loading import load_config
from campaigns.sending.policy import earliest_in_windows, next_opening
from campaigns.store.models import Consent, Customer, Delivery, Suppression
from tests.campaigns.sending.policy_world import (  # noqa: F401 (world: fixture)
    MORNING,
    campaign,
    deliver_all,
    world,
    world_with,
)
from tests.conftest import grant_consent
from workers.jobs.inprocess import InProcessWorkers
from workers.jobs.runtime import Runtime

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


# --- consent -------------------------------------------------------------------------


def test_marketing_needs_granted_consent_and_transactional_is_exempt(world):
    world.add("yes", email="yes@x.cn")
    world.add("never", email="never@x.cn", consent=())
    quitter = world.add("quit", email="quit@x.cn")
    # Selected while consented, withdrawn before the worker gets to it: checked at send time.
    with world.engine.begin() as conn:
        conn.execute(sa.update(Consent.__table__).where(Consent.customer_id == quitter, Consent.channel == "email")
                     .values(status="withdrawn", source="preference page", recorded_at=MORNING))

    world.run("promo_a")
    world.run("receipt")

    promo = world.rows("promo_a")
    assert set(promo) == {"yes"}  # the audience already leaves out who has no consent
    assert promo["yes"].status == "sent"
    receipt = world.rows("receipt")
    assert {name: row.status for name, row in receipt.items()} == {"yes": "sent", "never": "sent", "quit": "sent"}


def test_consent_withdrawn_between_selection_and_send_stops_the_message(world):
    customer_id = world.add("late", email="late@x.cn")
    # Planned (selected while consented), then withdrawn before a worker sends it.
    from campaigns.sending.planning import claim_run, plan_run

    run_id = claim_run(world.engine, "promo_a", MORNING, lease=timedelta(minutes=5))
    plan_run(world.engine, world.config, world.config.campaign("promo_a"), run_id=run_id, scheduled_at=MORNING,
             now=MORNING)
    with world.engine.begin() as conn:
        conn.execute(sa.update(Consent.__table__).where(Consent.customer_id == customer_id)
                     .values(status="withdrawn", source="reply STOP", recorded_at=MORNING))
    deliver_all(world)

    row = world.rows("promo_a")["late"]
    assert row.status == "skipped"
    assert row.last_error == "consent withdrawn (email)"


def test_unless_withdrawn_mode_sends_to_customers_without_a_record(tmp_path, sqlite_url):
    made = world_with(tmp_path, sqlite_url, compliance='[compliance]\nconsent = "unless_withdrawn"')
    with made.workers.running():
        made.add("never", email="never@x.cn", consent=())
        made.run("promo_a")
    assert made.rows("promo_a")["never"].status == "sent"
    made.runtime.close()


# --- suppression -----------------------------------------------------------------------


def test_a_suppression_added_after_planning_is_honoured_in_plain_and_digest_form(world, monkeypatch):
    # Digests: keyed with the installation secret (nurture forget), or unkeyed (earlier versions).
    monkeypatch.setenv("NURTURE_SECRET", "installation-secret-for-tests")
    world.add("bounced", email="bounced@x.cn")
    world.add("erased", email="Erased@X.cn")
    world.add("keyed", email="Keyed@X.cn")
    from campaigns.sending.planning import claim_run, plan_run

    run_id = claim_run(world.engine, "receipt", MORNING, lease=timedelta(minutes=5))
    plan_run(world.engine, world.config, world.config.campaign("receipt"), run_id=run_id, scheduled_at=MORNING,
             now=MORNING)
    with world.engine.begin() as conn:
        conn.execute(sa.insert(Suppression.__table__), [
            {"channel": "email", "address": "bounced@x.cn", "reason": "hard bounce 5.1.1", "created_at": MORNING},
            {"channel": "email", "address": legacy_address_digest(" erased@x.CN "), "reason": "opt-out (forgotten)",
             "created_at": MORNING},
            {"channel": "email", "address": address_digest(" keyed@x.CN ", "installation-secret-for-tests"),
             "reason": "opt-out (forgotten)", "created_at": MORNING},
        ])
    deliver_all(world)

    rows = world.rows("receipt")  # transactional: suppression binds every purpose
    assert rows["bounced"].status == rows["erased"].status == rows["keyed"].status == "skipped"
    assert rows["bounced"].last_error == "address suppressed"


def test_without_the_installation_secret_keyed_digests_hold_messages_back(world, monkeypatch):
    # nurture forget ran with the secret; this worker lacks it and cannot tell whether an
    # address is one of the keyed digests: it waits rather than message someone erased.
    monkeypatch.delenv("NURTURE_SECRET", raising=False)
    world.add("again", email="Again@X.cn")
    from campaigns.sending.planning import claim_run, plan_run

    run_id = claim_run(world.engine, "receipt", MORNING, lease=timedelta(minutes=5))
    plan_run(world.engine, world.config, world.config.campaign("receipt"), run_id=run_id, scheduled_at=MORNING,
             now=MORNING)
    with world.engine.begin() as conn:
        conn.execute(sa.insert(Suppression.__table__).values(
            channel="email", address=address_digest("again@x.cn", "installation-secret-for-tests"),
            reason="opt-out (forgotten)", created_at=MORNING))
    deliver_all(world)
    row = world.rows("receipt")["again"]
    assert row.status == "queued" and row.sent_at is None
    assert "NURTURE_SECRET is not set" in row.last_error
    assert row.due_at > MORNING

    monkeypatch.setenv("NURTURE_SECRET", "installation-secret-for-tests")
    with world.engine.begin() as conn:
        conn.execute(sa.update(Delivery).values(due_at=MORNING, dispatch_after=MORNING))
    deliver_all(world)
    row = world.rows("receipt")["again"]
    assert row.status == "skipped" and row.last_error == "address suppressed"


# --- frequency caps ------------------------------------------------------------------


def test_one_marketing_message_per_channel_per_day_the_second_waits_a_day(world):
    world.add("ann", email="ann@x.cn", phone="+8613800000001")
    world.run("promo_a")
    world.run("promo_b", at=MORNING + timedelta(hours=2))
    world.run("promo_sms", at=MORNING + timedelta(hours=3))  # another channel: allowed today
    world.run("receipt", at=MORNING + timedelta(hours=4))  # transactional: never capped

    sent_a = world.rows("promo_a")["ann"].sent_at
    b = world.rows("promo_b")["ann"]
    assert b.status == "queued"
    assert b.due_at == sent_a + timedelta(days=1, seconds=1)
    assert b.last_error.startswith("frequency cap reached: 1 email per day")
    assert world.rows("promo_sms")["ann"].status == "sent"
    assert world.rows("receipt")["ann"].status == "sent"

    world.tick(b.due_at)  # a day later (10:00:01 in Shanghai): the deferred message goes out
    assert world.rows("promo_b")["ann"].status == "sent"


def test_when_capped_skip_gives_the_step_up(world):
    world.add("ann", email="ann@x.cn")
    world.run("promo_a")
    world.run("promo_skip", at=MORNING + timedelta(hours=1))
    row = world.rows("promo_skip")["ann"]
    assert row.status == "skipped"
    assert "frequency cap reached" in row.last_error


def test_three_marketing_messages_a_week_across_channels(world):
    world.add("ann", email="ann@x.cn", phone="+8613800000001")
    world.run("promo_a")                                            # day 0, email
    world.run("promo_sms", at=MORNING + timedelta(days=1))          # day 1, sms
    world.run("promo_b", at=MORNING + timedelta(days=2))            # day 2, email
    world.run("promo_sms_2", at=MORNING + timedelta(days=3))        # day 3, sms: 4th in a week

    fourth = world.rows("promo_sms_2")["ann"]
    assert fourth.status == "queued"
    assert "3 per week across channels" in fourth.last_error
    # Free once the first (day 0) leaves the 7-day window.
    assert fourth.due_at == world.rows("promo_a")["ann"].sent_at + timedelta(days=7, seconds=1)


def test_two_messages_for_one_customer_in_one_batch_do_not_both_pass_the_cap(world):
    world.add("ann", email="ann@x.cn")
    from campaigns.sending.planning import claim_run, plan_run

    for name in ("promo_a", "promo_b"):
        run_id = claim_run(world.engine, name, MORNING, lease=timedelta(minutes=5))
        plan_run(world.engine, world.config, world.config.campaign(name), run_id=run_id, scheduled_at=MORNING,
                 now=MORNING)
    from workers.jobs.delivery import deliver_batch

    with world.engine.connect() as conn:
        ids = list(conn.execute(sa.select(Delivery.id).order_by(Delivery.id)).scalars())
    recorded = deliver_batch(world.runtime, ids)

    assert recorded.counts == {"ok": 1, "deferred": 1}


def test_a_message_another_worker_is_sending_counts_against_the_cap(world):
    customer_id = world.add("ann", email="ann@x.cn")
    from campaigns.sending.planning import claim_run, plan_run

    for name in ("promo_a", "promo_b"):
        run_id = claim_run(world.engine, name, MORNING, lease=timedelta(minutes=5))
        plan_run(world.engine, world.config, world.config.campaign(name), run_id=run_id, scheduled_at=MORNING,
                 now=MORNING)
    with world.engine.begin() as conn:  # promo_a's row: claimed by a worker elsewhere, in flight
        conn.execute(sa.update(Delivery.__table__)
                     .where(Delivery.campaign == "promo_a", Delivery.customer_id == customer_id)
                     .values(status="sending", claim_token="elsewhere", lease_until=MORNING + timedelta(minutes=5)))
        other = conn.execute(sa.select(Delivery.id).where(Delivery.campaign == "promo_b")).scalar_one()
    from workers.jobs.delivery import deliver_batch

    recorded = deliver_batch(world.runtime, [other])
    assert recorded.counts == {"deferred": 1}


def test_caps_can_be_raised_or_switched_off(tmp_path, sqlite_url):
    made = world_with(tmp_path, sqlite_url,
                      compliance="[compliance.frequency]\nper_channel_per_day = 2\nper_week = 10")
    with made.workers.running():
        made.add("ann", email="ann@x.cn")
        for name in ("promo_a", "promo_b", "promo_skip"):
            made.run(name)
    statuses = [made.rows(name)["ann"].status for name in ("promo_a", "promo_b", "promo_skip")]
    assert statuses == ["sent", "sent", "skipped"]
    made.runtime.close()


# --- quiet hours -----------------------------------------------------------------------


def test_marketing_at_night_waits_for_eight_in_the_customers_zone_transactional_goes(world):
    night = datetime(2026, 6, 1, 14, 30, tzinfo=UTC)  # 22:30 in Shanghai
    world.add("sh", email="sh@x.cn")
    world.add("ny", email="ny@x.cn", timezone="America/New_York")  # 10:30 there
    world.add("phone_only", phone="+8613800000009", timezone=None, consent=("sms",))
    world.run("promo_a", at=night)
    world.run("promo_sms", at=night)
    world.run("receipt", at=night)

    promo = world.rows("promo_a")
    assert promo["sh"].status == "queued"
    assert promo["sh"].due_at == datetime(2026, 6, 2, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
    assert promo["sh"].last_error == "inside quiet hours 21:00-08:00 (Asia/Shanghai)"
    assert promo["ny"].status == "sent"
    # No time zone on file: a +86 number means Shanghai.
    assert world.rows("promo_sms")["phone_only"].due_at == datetime(2026, 6, 2, 0, 0, tzinfo=UTC)
    assert world.rows("receipt")["sh"].status == "sent"

    world.tick(datetime(2026, 6, 2, 0, 0, 30, tzinfo=UTC))  # deferred, never dropped
    assert world.rows("promo_a")["sh"].status == "sent"


def test_a_campaign_window_and_quiet_hours_both_hold(tmp_path, sqlite_url):
    made = world_with(tmp_path, sqlite_url, campaigns=campaign("lunch", extra='window = "11:30-13:30"'))
    with made.workers.running():
        made.add("sh", email="sh@x.cn")
        made.run("lunch", at=datetime(2026, 6, 1, 6, 0, tzinfo=UTC))  # 14:00 in Shanghai
    row = made.rows("lunch")["sh"]
    assert row.status == "queued"
    assert row.due_at == datetime(2026, 6, 2, 3, 30, tzinfo=UTC)  # 11:30 next day
    assert row.last_error == "outside the campaign's send window 11:30-13:30 (Asia/Shanghai)"
    made.runtime.close()


def test_quiet_hours_can_be_switched_off(tmp_path, sqlite_url):
    made = world_with(tmp_path, sqlite_url, compliance='[compliance]\nquiet_hours = ""')
    with made.workers.running():
        made.add("sh", email="sh@x.cn")
        made.run("promo_a", at=datetime(2026, 6, 1, 16, 0, tzinfo=UTC))  # midnight in Shanghai
    assert made.rows("promo_a")["sh"].status == "sent"
    made.runtime.close()


def test_earliest_in_windows_finds_the_overlap_or_reports_none():
    from datetime import time

    at = datetime(2026, 6, 1, 14, 30, tzinfo=UTC)  # 22:30 Shanghai
    both = earliest_in_windows(at, SHANGHAI, [(time(8), time(21)), (time(11, 30), time(13, 30))])
    assert both == datetime(2026, 6, 2, 3, 30, tzinfo=UTC)
    assert earliest_in_windows(at, SHANGHAI, [(time(8), time(21)), (time(22), time(23))]) is None


def test_quiet_hours_start_is_the_deadline_for_queued_marketing(world):
    from campaigns.sending.policy import quiet_hours_start

    evening = datetime(2026, 6, 1, 12, 15, tzinfo=UTC)  # 20:15 in Shanghai
    customer = {"timezone": None, "phone": "+8613800000001"}
    assert quiet_hours_start(world.config, world.config.campaign("promo_sms"), customer, now=evening) == \
        datetime(2026, 6, 1, 13, 0, tzinfo=UTC)  # 21:00 Shanghai
    assert quiet_hours_start(world.config, world.config.campaign("receipt"), customer, now=evening) is None


def test_next_opening_inside_before_after_and_across_midnight():
    nine, nine_pm = time(9), time(21)
    at = lambda text, zone: datetime.fromisoformat(text).replace(tzinfo=zone)  # noqa: E731
    assert next_opening(at("2026-06-01T12:00", SHANGHAI), SHANGHAI, nine, nine_pm) is None
    assert next_opening(at("2026-06-01T07:30", SHANGHAI), SHANGHAI, nine, nine_pm) == at("2026-06-01T09:00", SHANGHAI)
    assert next_opening(at("2026-06-01T22:00", SHANGHAI), SHANGHAI, nine, nine_pm) == at("2026-06-02T09:00", SHANGHAI)
    # A window spanning midnight.
    assert next_opening(at("2026-06-01T01:00", SHANGHAI), SHANGHAI, time(20), time(2)) is None
    assert next_opening(at("2026-06-01T03:00", SHANGHAI), SHANGHAI, time(20), time(2)) == at("2026-06-01T20:00", SHANGHAI)
    # Across the March 2026 DST change in New York: 09:00 local is 13:00 UTC after it.
    opening = next_opening(datetime(2026, 3, 8, 3, 0, tzinfo=UTC), NEW_YORK, nine, nine_pm)
    assert opening == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)


def test_a_step_due_outside_its_window_waits_for_the_customers_local_opening(tmp_path, sqlite_url):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "m.txt.j2").write_text("hi")
    (tmp_path / "config.toml").write_text(f"""
[database]
url = "{sqlite_url}"
[profiles]
cron = ""
[channels.mail]
kind = "outbox"
dir = "out"
[[campaigns]]
name = "nightly"
timezone = "UTC"
trigger = {{ cron = "0 23 * * *" }}
channels = ["mail"]
  [[campaigns.steps]]
  template = "m"
  window = "09:00-21:00"
""")
    config = load_config(tmp_path / "config.toml")
    slot = datetime(2026, 6, 1, 23, 0, tzinfo=UTC)  # 07:00 next day in Shanghai, 23:00 in London
    now = [slot + timedelta(minutes=1)]
    runtime = Runtime.from_config(config, clock=lambda: now[0])
    with runtime.engine.begin() as conn:
        for name, zone in (("sh", "Asia/Shanghai"), ("ld", "Europe/London")):
            conn.execute(sa.insert(Customer.__table__).values(external_id=name, email=f"{name}@x.cn", timezone=zone,
                                                             created_at=slot, updated_at=slot, attributes={}))
    grant_consent(runtime.engine, now=slot)
    with InProcessWorkers(runtime=runtime).running() as workers:
        workers.tick(now[0])
        with runtime.engine.connect() as conn:
            rows = {r.external_id: r for r in conn.execute(
                sa.select(Customer.external_id, Delivery.status, Delivery.due_at)
                .join(Delivery, Delivery.customer_id == Customer.id))}
        # Both are outside 09-21 local: Shanghai opens at 01:00 UTC, London at 08:00 UTC.
        assert rows["sh"].status == rows["ld"].status == "queued"
        assert rows["sh"].due_at == datetime(2026, 6, 2, 1, 0, tzinfo=UTC)
        assert rows["ld"].due_at == datetime(2026, 6, 2, 8, 0, tzinfo=UTC)
        now[0] = datetime(2026, 6, 2, 1, 0, tzinfo=UTC)
        workers.tick(now[0])
        with runtime.engine.connect() as conn:
            sent = set(conn.execute(sa.select(Customer.external_id).join(Delivery, Delivery.customer_id == Customer.id)
                                    .where(Delivery.status == "sent")).scalars())
        assert sent == {"sh"}
    runtime.close()
