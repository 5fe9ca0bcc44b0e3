"""`nurture worker` stops cleanly when its own process is signalled: `kill -TERM <pid>` (what
systemd, Docker and Kubernetes send) reaches Dramatiq, every worker process of the group
exits within Dramatiq's shutdown window, and no message is lost (PostgreSQL + Redis)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.project.loading import load_config
from campaigns.store.db import make_engine
from campaigns.store.models import Delivery
from tests.conftest import TICK_NOW, seed_customers
from tests.integration.test_distributed import wait_for as wait_for_condition
from workers.jobs.broker import make_broker
from workers.jobs.scheduler import tick

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"worker-signals-test-signing-key").decode()
#: Generous: the jobs in flight take a few seconds each (the sink is slow on purpose), and
#: Dramatiq waits for them; a worker still running after this has not been stopped.
STOPPED_WITHIN_S = 120


def wait_for(predicate, *, timeout_s: float, what: str, log: Path) -> None:
    """``wait_for`` of test_distributed, with the workers' output in the failure message."""
    try:
        wait_for_condition(predicate, timeout_s=timeout_s, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker output ---\n{log.read_text(errors='replace')[-4000:]}") from None


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def start_nurture_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`nurture worker` as an operator starts it, in a process group of its own (so the test
    can see every process it leads to, and clean up after a failure)."""
    nurture = Path(sys.executable).parent / "nurture"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("ab") as output:
        return subprocess.Popen([str(nurture), "worker", "-c", str(config), "--processes", "2", "--threads", "2"],
                                cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


def kill_group(pgid: int) -> None:
    """Clean-up after a failure: SIGKILL what is left of a group this test started."""
    for pid in group_members(pgid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def statuses(engine: sa.Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(dict(conn.execute(sa.select(Delivery.status, sa.func.count()).group_by(Delivery.status)).all()))


def sixty_queued_deliveries(project, postgres_url, redis_url, http_sink, monkeypatch):
    """A campaign run of 60 deliveries in 9 jobs on the Redis queue, to a slow sink;
    returns (config path, engine, the lapsed customers' ids)."""
    monkeypatch.setenv("NURTURE_TEST_HOOK_SECRET", SECRET)
    # Quiet hours off: the worker processes read the real clock.
    path = project(database_url=postgres_url, broker_url=redis_url, sink_url=http_sink.url,
                   extra='\n[compliance]\nquiet_hours = ""\n')
    config = load_config(path)
    engine = make_engine(config.database.url)
    groups = seed_customers(engine, count=120, now=TICK_NOW, lapsed_share=0.5)
    http_sink.delay_s = 0.2  # a slow provider: jobs are mid-way when the signal arrives
    report = tick(config=config, engine=engine, broker=make_broker(config.broker), now=TICK_NOW)
    assert report.enqueued_deliveries == 60 and report.enqueued_jobs == 9
    return path, engine, groups["lapsed"]


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """Clean-up: SIGTERM, then SIGKILL whatever of its group is left."""
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    kill_group(process.pid)
    process.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_signalling_nurture_worker_stops_every_process_and_loses_no_message(
    signum, project, postgres_url, redis_url, http_sink, monkeypatch, tmp_path
):
    path, engine, lapsed = sixty_queued_deliveries(project, postgres_url, redis_url, http_sink, monkeypatch)
    log = tmp_path / "worker.log"
    http_sink.released.clear()  # the first sends are held: the signal surely lands mid-job
    first = start_nurture_worker(path, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: http_sink.arrived >= 1, timeout_s=60, what="the first message sent", log=log)

        # When the operator signals the `nurture worker` process itself (not its group)
        os.kill(first.pid, signum)
        # (Dramatiq's Worker.stop() logs "Shutting down..." right before it tells its threads
        # to take no further job; only then are the held jobs let go, so the stop surely
        # lands mid-run however fast the machine sends)
        wait_for(lambda: log.read_text(errors="replace").count("Shutting down...") >= 2,
                 timeout_s=60, what=f"both worker processes to shut down on {signum.name}", log=log)
        http_sink.released.set()

        # Then every process it started is gone, before a generous bound
        wait_for(lambda: not group_members(first.pid), timeout_s=STOPPED_WITHIN_S,
                 what=f"every process of `nurture worker` to exit after {signum.name}", log=log)
        first.wait(timeout=10)
        # And each delivery was either sent once or is still queued, none left half-done
        after_stop = statuses(engine)
        assert set(after_stop) <= {"sent", "queued"}, (after_stop, log.read_text())
        sent_once = Counter(body["to"] for body in http_sink.bodies())
        assert set(sent_once.values()) <= {1}, sent_once
        assert sum(sent_once.values()) == after_stop["sent"], (after_stop, sent_once)
        # (the 4 threads each finish the job in hand and take no other: most of the 9 jobs
        # are still on the queue)
        assert after_stop["queued"] > 0, (after_stop, log.read_text())

        # And a second worker finds the rest still on the queue and sends them: none lost
        second = start_nurture_worker(path, log)
        wait_for(lambda: statuses(engine) == Counter({"sent": 60}), timeout_s=120,
                 what=f"all 60 deliveries sent (after the stop: {dict(after_stop)})", log=log)
    finally:
        http_sink.released.set()
        stop(first)
        stop(second)
        engine.dispose()

    # Each lapsed customer got exactly one message, across the two workers
    assert sorted(body["to"] for body in http_sink.bodies()) == sorted(lapsed), log.read_text()


def test_sighup_makes_dramatiq_reload_its_workers_without_losing_a_message(
    project, postgres_url, redis_url, http_sink, monkeypatch, tmp_path
):
    """SIGHUP means what it means to Dramatiq: stop the worker processes gracefully and
    start fresh ones (re-reading the code and config), in the same parent process."""
    path, engine, lapsed = sixty_queued_deliveries(project, postgres_url, redis_url, http_sink, monkeypatch)
    log = tmp_path / "worker.log"
    worker = start_nurture_worker(path, log)
    try:
        wait_for(lambda: len(http_sink.requests) >= 1, timeout_s=60, what="the first message sent", log=log)
        before = set(group_members(worker.pid)) - {worker.pid}
        assert before, "no worker processes"

        os.kill(worker.pid, signal.SIGHUP)

        # The old worker processes stop, the parent lives on and starts new ones
        wait_for(lambda: not before & set(group_members(worker.pid)), timeout_s=STOPPED_WITHIN_S,
                 what="the worker processes started before SIGHUP to exit", log=log)
        wait_for(lambda: worker.poll() is None and len(set(group_members(worker.pid)) - {worker.pid}) >= 2,
                 timeout_s=60, what="`nurture worker` to start new worker processes", log=log)
        # which send the rest, each once
        wait_for(lambda: statuses(engine) == Counter({"sent": 60}), timeout_s=120,
                 what="all 60 deliveries sent", log=log)
        assert sorted(body["to"] for body in http_sink.bodies()) == sorted(lapsed), log.read_text()

        # And SIGTERM then stops it all
        os.kill(worker.pid, signal.SIGTERM)
        wait_for(lambda: not group_members(worker.pid), timeout_s=STOPPED_WITHIN_S,
                 what="every process of `nurture worker` to exit after SIGTERM", log=log)
    finally:
        stop(worker)
        engine.dispose()
