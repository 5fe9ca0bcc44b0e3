"""A world to send in, for the send-time policy tests (test_policy.py) and the modules
that report or pass on what policy decided: a migrated SQLite database, a config with
mail and SMS outbox channels and manual campaigns, and in-process Dramatiq workers on a
clock the test sets.

Import the ``world`` fixture into a test module to use it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.project.loading import load_config
from campaigns.store.models import Consent, Customer, Delivery
from workers.jobs.inprocess import InProcessWorkers
from workers.jobs.runtime import Runtime
from workers.jobs.scheduler import run_now

#: 10:00 in Shanghai: inside the default marketing hours there.
MORNING = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)

CONFIG = """
[database]
url = "{url}"
[profiles]
cron = ""
[worker]
backoff_base = "0s"
backoff_cap = "0s"
{compliance}
[channels.mail]
kind = "outbox"
dir = "out"
recipient = "email"
[channels.text]
kind = "outbox"
dir = "out-sms"
recipient = "phone"
{campaigns}
"""


def campaign(name: str, *, channels: str = '["mail"]', extra: str = "") -> str:
    """A manual campaign's TOML (Shanghai time, one step) for CONFIG's ``{campaigns}``."""
    return f"""
[[campaigns]]
name = "{name}"
timezone = "Asia/Shanghai"
trigger = {{ manual = true }}
channels = {channels}
{extra}
  [[campaigns.steps]]
  template = "m"
"""


DEFAULT_CAMPAIGNS = (
    campaign("promo_a") + campaign("promo_b") + campaign("promo_skip", extra='when_capped = "skip"')
    + campaign("promo_sms", channels='["text"]') + campaign("promo_sms_2", channels='["text"]')
    + campaign("receipt", extra='purpose = "transactional"')
)


class World:
    """A migrated SQLite database, a config and in-process workers on a settable clock."""

    def __init__(self, tmp_path, url: str, *, compliance: str = "", campaigns: str = DEFAULT_CAMPAIGNS) -> None:
        (tmp_path / "templates").mkdir(exist_ok=True)
        (tmp_path / "templates" / "m.txt.j2").write_text("hello {{ customer.external_id }}")
        (tmp_path / "config.toml").write_text(CONFIG.format(url=url, compliance=compliance, campaigns=campaigns))
        self.config = load_config(tmp_path / "config.toml")
        self.now = MORNING
        self.runtime = Runtime.from_config(self.config, clock=lambda: self.now)
        self.engine = self.runtime.engine
        self.workers = InProcessWorkers(runtime=self.runtime)

    def add(self, external_id: str, *, email: str | None = None, phone: str | None = None,
            timezone: str | None = "Asia/Shanghai", consent: tuple[str, ...] = ("email", "sms")) -> int:
        with self.engine.begin() as conn:
            customer_id = conn.execute(sa.insert(Customer.__table__).values(
                external_id=external_id, email=email, phone=phone, timezone=timezone, attributes={},
                created_at=MORNING - timedelta(days=100), updated_at=MORNING,
            ).returning(Customer.__table__.c.id)).scalar_one()
            for family in consent:
                conn.execute(sa.insert(Consent.__table__).values(
                    customer_id=customer_id, channel=family, status="granted", source="signup form",
                    recorded_at=MORNING - timedelta(days=100)))
        return customer_id

    def run(self, name: str, at: datetime | None = None) -> None:
        """Broadcast ``name`` at ``at`` (default: the current clock) and wait for the workers."""
        if at is not None:
            self.now = at
        run_now(config=self.config, engine=self.engine, broker=self.workers.broker,
                campaign=self.config.campaign(name), now=self.now)
        self.workers.join()

    def tick(self, at: datetime) -> None:
        """A scheduler tick at ``at``: sends what has come due (deferred rows included)."""
        self.now = at
        self.workers.tick(at)

    def rows(self, campaign: str) -> dict[str, sa.Row]:
        with self.engine.connect() as conn:
            return {row.external_id: row for row in conn.execute(
                sa.select(Customer.external_id, Delivery.status, Delivery.due_at, Delivery.sent_at,
                          Delivery.last_error)
                .join(Delivery, Delivery.customer_id == Customer.id).where(Delivery.campaign == campaign))}


def deliver_all(world: World) -> None:
    """What a worker's job does with every queued row (planning alone sends nothing)."""
    from workers.jobs.delivery import deliver_batch

    with world.engine.connect() as conn:
        ids = list(conn.execute(sa.select(Delivery.id).where(Delivery.status == "queued")).scalars())
    deliver_batch(world.runtime, ids)


@pytest.fixture
def world(tmp_path, sqlite_url):
    """The default world, its workers running."""
    made = World(tmp_path, sqlite_url)
    with made.workers.running():
        yield made
    made.runtime.close()


def world_with(tmp_path, sqlite_url, **kwargs) -> World:
    """A world with its own compliance section or campaigns (start its workers yourself)."""
    return World(tmp_path, sqlite_url, **kwargs)
