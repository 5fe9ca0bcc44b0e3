"""Log masking in a real `dramatiq workers.app` worker process (PostgreSQL + Redis), with
Dramatiq's own logging set-up as `nurture worker` runs it: the line that reports a paused
campaign carries the provider's answer, and neither the secret it echoes nor the
customer's address reaches the worker's output; nor do the HTTP client's request lines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.project.loading import load_config
from campaigns.store.db import make_engine
from campaigns.store.models import CampaignState
from tests.conftest import TICK_NOW, seed_customers
from tests.integration.test_distributed import wait_for
from workers.jobs.broker import make_broker
from workers.jobs.scheduler import tick

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECRET = "whsec_d29ya2VyLWhvb2stc2VjcmV0LTEyMzQtNTY3OC05MGFi"  # a whsec_ secret: the channel signs with nothing else
EMAIL, PHONE = "p0@example.com", "+8613800000000"


def write_config(tmp_path: Path, *, database_url: str, broker_url: str, sink_url: str) -> Path:
    (tmp_path / "templates" / "win_back").mkdir(parents=True)
    (tmp_path / "templates" / "win_back" / "ping.json.j2").write_text('{"to": {{ customer.email|tojson }}}')
    path = tmp_path / "config.toml"
    path.write_text(f"""
[database]
url = "{database_url}"
[broker]
url = "{broker_url}"
namespace = "nurture-mask-test"
[worker]
max_attempts = 1
[channels.hook]
kind = "webhook"
url = "{sink_url}"
secret_env = "NURTURE_TEST_HOOK_SECRET"
[[campaigns]]
name = "win_back"
purpose = "transactional"
trigger = {{ cron = "0 10 * * *" }}
channels = ["hook"]
  [campaigns.audience]
  min_orders = 1
  last_order_more_than_days = 90
[[campaigns.steps]]
template = "win_back/ping"
""")
    return path


def test_a_worker_process_masks_what_it_logs(tmp_path, postgres_url, redis_url, http_sink, monkeypatch):
    monkeypatch.setenv("NURTURE_TEST_HOOK_SECRET", SECRET)
    path = write_config(tmp_path, database_url=postgres_url, broker_url=redis_url, sink_url=http_sink.url)
    config = load_config(path)
    engine = make_engine(config.database.url)
    seed_customers(engine, count=2, now=TICK_NOW, lapsed_share=0.5)  # only p0 is lapsed
    http_sink.answer(401, f"bad signature {SECRET} for {EMAIL} / {PHONE}")
    # As `nurture worker` starts it: Dramatiq's own logging, not --skip-logging.
    worker = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "workers.app", "--processes", "1", "--threads", "2",
         "--queues", config.broker.queue],
        cwd=REPO, env={**os.environ, "NURTURE_CONFIG": str(path), "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        tick(config=config, engine=engine, broker=make_broker(config.broker), now=TICK_NOW)

        def paused() -> bool:
            with engine.connect() as conn:
                return bool(conn.execute(sa.select(CampaignState.paused)).scalar())

        wait_for(paused, timeout_s=60, what="the campaign to be paused by the 401")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            output = worker.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            worker.kill()
            output = worker.communicate()[0].decode(errors="replace")
        engine.dispose()

    [line] = [line for line in output.splitlines() if "campaign win_back paused" in line]
    assert "ERROR" in line and "nurture.delivery" in line, line
    assert "bad signature *** for p***@example.com / +86*******0000" in line, line
    assert SECRET not in output and EMAIL not in output and PHONE not in output, output
    # httpx's per-request INFO lines (whole URLs, Aliyun's with phone numbers) are kept out.
    assert "HTTP Request:" not in output, output
