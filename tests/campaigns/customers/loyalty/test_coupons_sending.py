"""Coupons on the send path (workers/jobs/delivery.py over campaigns/customers/loyalty/coupons.py),
on SQLite and PostgreSQL, with the outbox channel: each message shows its own code, a retry
the same one, a dry pool pauses the campaign with a reason and loses no message, and the
redemption of a campaign's coupon is its goal (series ended, conversion counted).

Hand-checked world: campaign ``wb`` (coupon from pool ``wb10``), five customers, one run at
TICK_NOW, so five deliveries of step 0 (and, where a second step is configured, five of
step 1 due three days later)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.customers.loyalty.coupon_imports import import_coupon_pool, import_redemptions
from campaigns.customers.loyalty.coupons import dry_pool_reason
from campaigns.project.loading import load_config
from campaigns.reports.campaign import campaign_report
from campaigns.sending.control import paused_reason, resume_campaign
from campaigns.sending.ledger import run_batches
from campaigns.sending.messages import Outcome, SendResult
from campaigns.sending.planning import claim_run, plan_run
from campaigns.store.models import Coupon, Delivery, Enrollment
from tests.conftest import TICK_NOW, seed_customers
from workers.jobs.delivery import deliver_batch
from workers.jobs.runtime import Runtime

CODE = re.compile(r"code (\S+) from (\S+)")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


class World:
    """The runtime, the clock it reads, and every message the channel was handed."""

    def __init__(self, tmp_path: Path, database_url: str, *, coupon: str, extra: str = "", steps: int = 1) -> None:
        (tmp_path / "templates" / "c").mkdir(parents=True)
        (tmp_path / "templates" / "c" / "m.txt.j2").write_text(
            "{% if coupon %}code {{ coupon.code }} from {{ coupon.pool }}{% else %}no coupon{% endif %}")
        step_tables = '[[campaigns.steps]]\ntemplate = "c/m"\n' + "".join(
            f'[[campaigns.steps]]\ntemplate = "c/m"\ndelay = "{3 * n}d"\n' for n in range(1, steps))
        (tmp_path / "config.toml").write_text(f"""
[database]
url = "{database_url}"
[worker]
lease = "100s"
backoff_base = "0s"
backoff_cap = "0s"
[compliance]
quiet_hours = ""
[channels.mail]
kind = "outbox"
dir = "out"
[[campaigns]]
name = "wb"
trigger = {{ cron = "0 10 * * *" }}
channels = ["mail"]
coupon = {coupon}
{extra}
{step_tables}""")
        self.config = load_config(tmp_path / "config.toml")
        self.now = TICK_NOW
        self.runtime = Runtime.from_config(self.config, clock=lambda: self.now)
        self.engine = self.runtime.engine
        self.sent: dict[str, str] = {}  # send key -> the text of the last message sent for it
        channel = self.runtime.channels["mail"]
        real_send = channel.send
        self.answers: list[SendResult] = []

        def send(message):  # type: ignore[no-untyped-def]
            self.sent[message.send_key] = message.parts["txt"]
            return self.answers.pop(0) if self.answers else real_send(message)

        channel.send = send
        seed_customers(self.engine, count=5, now=TICK_NOW)
        run_id = claim_run(self.engine, "wb", TICK_NOW, lease=timedelta(minutes=5))
        plan_run(self.engine, self.config, self.config.campaigns[0], run_id=run_id, scheduled_at=TICK_NOW,
                 now=TICK_NOW)
        self.ids = [i for batch in run_batches(self.engine, run_id, now=TICK_NOW, batch_size=100) for i in batch]
        with self.engine.connect() as conn:
            self.all_ids = list(conn.execute(sa.select(Delivery.id).order_by(Delivery.id)).scalars())

    def deliver(self) -> dict[str, int]:
        return deliver_batch(self.runtime, self.all_ids).counts

    def statuses(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(Delivery.status, sa.func.count()).group_by(Delivery.status)).all())

    def codes(self) -> dict[str, tuple[str, str]]:
        """(code, pool) each sent message showed, by send key."""
        return {key: CODE.search(text).groups() for key, text in self.sent.items() if CODE.search(text)}


def codes_file(tmp_path: Path, name: str, codes: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("code\n" + "".join(f"{code}\n" for code in codes), encoding="utf-8")
    return path


def test_a_dry_pool_pauses_the_campaign_with_a_reason_and_loses_no_message(tmp_path, database_url):
    world = World(tmp_path, database_url, coupon='{ pool = "wb10" }')
    import_coupon_pool(world.engine, codes_file(tmp_path, "a.csv", ["A1", "A2", "A3"]), pool="wb10", now=TICK_NOW)

    counts = world.deliver()

    # Three codes, five messages: three go, each with its own code; two wait, queued.
    assert counts == {"ok": 3, "halt": 2}
    assert sorted(world.codes().values()) == [("A1", "wb10"), ("A2", "wb10"), ("A3", "wb10")]
    assert world.statuses() == {"sent": 3, "queued": 2}
    reason = dry_pool_reason("wb10", "wb")
    assert paused_reason(world.engine, "wb") == reason
    assert "nurture import coupons FILE --pool wb10" in reason and "nurture resume wb" in reason
    with world.engine.connect() as conn:
        waiting = conn.execute(sa.select(Delivery.last_error).where(Delivery.status == "queued")).scalars().all()
    assert waiting == [reason, reason]
    # Paused: nothing more goes, and no code is taken.
    assert world.deliver() == {}

    import_coupon_pool(world.engine, codes_file(tmp_path, "b.csv", ["B1", "B2", "B3"]), pool="wb10", now=TICK_NOW)
    assert resume_campaign(world.engine, "wb", now=TICK_NOW)

    assert world.deliver() == {"ok": 2}
    codes = world.codes()
    assert world.statuses() == {"sent": 5}
    assert len(codes) == 5 and len({code for code, _ in codes.values()}) == 5
    assert {code for code, _ in codes.values()} == {"A1", "A2", "A3", "B1", "B2"}
    with world.engine.connect() as conn:
        stored = dict(conn.execute(sa.select(Coupon.send_key, Coupon.code).where(Coupon.send_key.is_not(None))).all())
        left = conn.execute(sa.select(Coupon.code).where(Coupon.status == "available")).scalars().all()
    assert stored == {key: code for key, (code, _) in codes.items()} and left == ["B3"]
    world.runtime.close()


def test_a_retried_message_shows_the_coupon_it_was_given_first(tmp_path, database_url):
    world = World(tmp_path, database_url, coupon='{ pool = "wb10" }')
    import_coupon_pool(world.engine, codes_file(tmp_path, "a.csv", [f"C{n}" for n in range(8)]), pool="wb10",
                       now=TICK_NOW)
    world.answers = [SendResult(Outcome.RETRY, error="busy")] * 2  # the first two sends fail for now

    assert world.deliver() == {"ok": 3, "retry": 2}
    first = world.codes()
    assert world.deliver() == {"ok": 2}

    assert world.codes() == first  # the retried ones showed the same codes again
    assert sorted(code for code, _ in first.values()) == ["C0", "C1", "C2", "C3", "C4"]
    world.runtime.close()


def test_generated_codes_without_the_secret_pause_and_with_it_go(tmp_path, database_url, monkeypatch):
    monkeypatch.delenv("NURTURE_SECRET", raising=False)
    world = World(tmp_path, database_url, coupon='{ generate = "WB", length = 8 }')

    assert world.deliver() == {"halt": 5}
    assert "NURTURE_SECRET is not set" in (paused_reason(world.engine, "wb") or "")

    monkeypatch.setenv("NURTURE_SECRET", "s" * 32)
    resume_campaign(world.engine, "wb", now=TICK_NOW)
    assert world.deliver() == {"ok": 5}
    codes = world.codes()
    assert {pool for _, pool in codes.values()} == {"wb"}
    assert all(re.fullmatch(r"WB[2-9A-HJ-NP-Z]{9}", code) for code, _ in codes.values())
    assert len({code for code, _ in codes.values()}) == 5
    world.runtime.close()


def test_only_the_steps_named_take_a_coupon(tmp_path, database_url):
    world = World(tmp_path, database_url, coupon='{ pool = "wb10", steps = [1] }', steps=2)
    import_coupon_pool(world.engine, codes_file(tmp_path, "a.csv", [f"C{n}" for n in range(5)]), pool="wb10",
                       now=TICK_NOW)

    assert world.deliver() == {"ok": 5}  # step 0: no coupon, none taken
    assert set(world.sent.values()) == {"no coupon"}
    world.now = TICK_NOW + timedelta(days=3)
    assert world.deliver() == {"ok": 5}
    assert len({code for code, _ in world.codes().values()}) == 5
    world.runtime.close()


def test_a_redeemed_coupon_ends_the_series_and_counts_as_a_conversion(tmp_path, database_url):
    world = World(tmp_path, database_url, coupon='{ pool = "wb10", steps = [0] }',
                  extra='goal = { coupon_redeemed = true, within = "14d" }', steps=2)
    import_coupon_pool(world.engine, codes_file(tmp_path, "a.csv", [f"C{n}" for n in range(5)]), pool="wb10",
                       now=TICK_NOW)
    assert world.deliver() == {"ok": 5}
    codes = sorted(code for code, _ in world.codes().values())
    assert codes == ["C0", "C1", "C2", "C3", "C4"]
    # Two redeemed within the window (day 1 and day 2), one after it (day 20).
    redemptions = tmp_path / "r.csv"
    redemptions.write_text(
        "code,redeemed_at\n"
        f"C0,{(TICK_NOW + timedelta(days=1)).isoformat()}\n"
        f"C1,{(TICK_NOW + timedelta(days=2)).isoformat()}\n"
        f"C2,{(TICK_NOW + timedelta(days=20)).isoformat()}\n", encoding="utf-8")
    assert import_redemptions(world.engine, redemptions).imported == 3

    # Day 3: the step-1 reminder skips the two who redeemed by then, and their series ends.
    world.now = TICK_NOW + timedelta(days=3)
    assert world.deliver() == {"ok": 3, "skipped": 2}
    with world.engine.connect() as conn:
        skipped = conn.execute(sa.select(Delivery.last_error).where(Delivery.status == "skipped")).scalars().all()
        states = dict(conn.execute(sa.select(Enrollment.state, sa.func.count()).group_by(Enrollment.state)).all())
    assert skipped == ["goal reached (coupon redeemed)"] * 2
    assert states == {"exited_goal": 2, "completed": 3}

    report = campaign_report(world.engine, world.config, "wb", now=TICK_NOW + timedelta(days=30))
    assert report["goal"] == "coupon redeemed" and report["window_days"] == 14
    # C2 was redeemed on day 20, past the 14-day window: not a conversion.
    assert (report["enrolled"], report["converted"]) == (5, {"treated": 2, "holdout": 0})
    assert report["conversion_rate"]["treated"] == pytest.approx(0.4)
    early = campaign_report(world.engine, world.config, "wb", now=TICK_NOW + timedelta(days=1, hours=1))
    assert early["converted"]["treated"] == 1
    world.runtime.close()
