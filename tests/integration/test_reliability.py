"""The reliability suite (``bench/reliability.py``) at small scale: every fault scenario
against real `dramatiq workers.app` processes, `nurture scheduler`, PostgreSQL and a
redis-server of the test's own, checked for exactly-once delivery.

Each scenario asserts, from the sink and the ledger, that every planned message reached
the sink, none twice after the webhook-id idempotency key, every ledger row is sent, and
every raw re-delivery is explained by an ambiguous attempt. Nothing is timed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from typing import Any

import pytest

from bench.reliability import Options, run_scenario
from tests.conftest import POSTGRES_ADMIN_URL, missing_service

pytestmark = pytest.mark.integration

#: Small enough for CI (each scenario well under a minute), slow enough (a 20 ms sink, two
#: sends in flight per process, 10 ids per job) that the fault lands mid-campaign.
SMALL = Options(recipients=400, workers=2, threads=4, lease_s=6, batch_size=10, send_concurrency=2,
                sink_latency_ms=20, webhook_timeout_s=1, outage_s=3, db_kills=3, deadline_s=240)
#: A flaky sink holds a send for the client's timeout: more sends in flight keep those runs
#: short, and the combined run replaces the worker it kills.
OVERRIDES: dict[str, dict[str, Any]] = {
    "flaky": {"send_concurrency": 4},
    "combined": {"send_concurrency": 4, "replace": True},
}


@pytest.fixture(scope="module")
def services() -> None:
    import psycopg

    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    if shutil.which("redis-server") is None:
        missing_service("redis-server is not installed (the reliability suite starts and restarts its own)")


@pytest.mark.parametrize("scenario", ["kill", "redis", "flaky", "db", "combined"])
def test_no_message_is_lost_or_sent_twice_under_faults(services, scenario):
    result = run_scenario(scenario, dataclasses.replace(SMALL, **OVERRIDES.get(scenario, {})))

    summary = json.dumps({k: v for k, v in result.items() if k not in ("scheduler_exits", "worker_unexpected_exits")},
                         indent=1, default=str)
    assert result["failures"] == [], summary
    assert result["losses"] == 0 and result["duplicates"] == 0, summary
    assert result["unique_received"] == result["expected"] == 400, summary
    assert result["ledger"] == {"sent": 400}, summary
    assert result["faults"] or scenario == "flaky", summary
    if scenario == "kill":
        # The killed worker held claims, and the sweeper gave them back (not lost).
        assert result["claims_without_outcome"] > 0 and result["leases_recovered"] > 0, summary
    if scenario in ("flaky", "combined"):
        assert result["rejected_by_sink"] + result["held_past_timeout"] > 0, summary
