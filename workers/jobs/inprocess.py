"""The embedded default: scheduler and Dramatiq worker threads in one process.

With ``broker.url = "stub://"`` nothing but Python and a SQLite file is needed: a tick
enqueues onto a :class:`StubBroker` and a :class:`dramatiq.Worker` in this process drains
it, exactly the code path separate worker processes run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker

from workers.jobs.actors import declare_actors
from workers.jobs.broker import make_broker
from workers.jobs.runtime import Runtime
from workers.jobs.scheduler import TickReport, tick


class InProcessWorkers:
    """A stub broker with worker threads, bound to one :class:`Runtime`."""

    def __init__(self, *, runtime: Runtime) -> None:
        self.runtime = runtime
        self.queue = runtime.config.broker.queue
        self.broker = make_broker(runtime.config.broker)
        if not isinstance(self.broker, StubBroker):
            raise ValueError("in-process workers need broker.url = 'stub://'")
        self.actors = declare_actors(self.broker, lambda: runtime, queue=self.queue)
        self.worker = Worker(self.broker, worker_threads=runtime.config.worker.threads, worker_timeout=100)

    def tick(self, now: datetime) -> TickReport:
        """Run one scheduler tick and wait until every job it enqueued (and their
        retries) has been processed."""
        # In process the outcome is known once the queue drains: keep the ids to report it.
        report = tick(config=self.runtime.config, engine=self.runtime.engine, broker=self.broker, now=now,
                      keep_ids=True)
        self.join()
        return report

    def join(self) -> None:
        """Wait for the queue, its delayed messages and the worker threads to drain."""
        self.broker.join(self.queue, fail_fast=True)
        self.worker.join()

    @contextmanager
    def running(self) -> Iterator[InProcessWorkers]:
        """Start the worker threads for the duration of the block."""
        self.worker.start()
        try:
            yield self
        finally:
            self.worker.stop()
            self.broker.close()
