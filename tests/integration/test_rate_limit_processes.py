"""A provider account's rate limit holds across two separate worker processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.project.loading import load_config
from campaigns.store.db import make_engine
from campaigns.store.models import Delivery
from tests.conftest import TICK_NOW, seed_customers
from tests.integration.test_distributed import start_worker, stop_worker, wait_for
from workers.jobs.broker import make_broker
from workers.jobs.scheduler import tick

pytestmark = pytest.mark.integration


def test_two_worker_processes_together_send_no_more_than_the_limit(project, postgres_url, redis_url, http_sink,
                                                                    monkeypatch, tmp_path):
    path: Path = project(database_url=postgres_url, broker_url=redis_url, sink_url=http_sink.url,
                         extra="", namespace=f"nurture-rl-{time.time_ns()}")
    # 30 customers, a limit of 12 sends a minute on the channel, two processes sending.
    path.write_text(path.read_text() + '\n[rate_limits]\nhook = { limit = 12, per = "1m" }\n')
    config = load_config(path)
    engine = make_engine(config.database.url)
    seed_customers(engine, count=30, now=TICK_NOW, lapsed_share=1.0)
    broker = make_broker(config.broker)
    workers = [start_worker(path), start_worker(path)]
    try:
        report = tick(config=config, engine=engine, broker=broker, now=TICK_NOW)
        assert report.enqueued_deliveries == 30

        def settled() -> bool:
            with engine.connect() as conn:
                rows = dict(conn.execute(sa.select(Delivery.status, sa.func.count())
                                         .group_by(Delivery.status)).all())
                sending = rows.get("sending", 0)
                attempted = conn.execute(sa.select(sa.func.count()).select_from(Delivery)
                                         .where(Delivery.attempts > 0)).scalar()
            return sending == 0 and attempted == 30

        wait_for(settled, timeout_s=60, what="every delivery attempted once")
    finally:
        outputs = [stop_worker(worker) for worker in workers]
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.select(Delivery.status, sa.func.count()).group_by(Delivery.status)).all())
        errors = set(conn.execute(sa.select(Delivery.last_error).where(Delivery.status == "queued")).scalars())
    engine.dispose()
    # Exactly the limit went out; the rest wait, queued, for the window to move on.
    assert len(http_sink.requests) == 12, outputs
    assert statuses == {"sent": 12, "queued": 18}
    assert errors == {"rate limit of channel 'hook' reached"}
