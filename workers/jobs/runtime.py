"""Everything a worker process needs to deliver, built once per process.

A :class:`Runtime` is made from an :class:`~campaigns.config.schema.AppConfig`: the engine, the
compiled-template cache and the channels with their keep-alive connections. Actors get
it through a provider function, so tests hand in their own and worker processes build
theirs lazily after the fork (an engine must not cross a fork).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from campaigns.config.schema import AppConfig
from campaigns.project.loading import load_config
from campaigns.sending.rendering import TemplateRenderer
from campaigns.store.db import make_engine
from campaigns.store.models import utcnow
from workers.channels.base import Channel
from workers.channels.registry import build_channels
from workers.channels.staff import StaffSender, build_staff_senders


@dataclass
class Runtime:
    """The configured engine, renderer, channels and clock of one process."""

    config: AppConfig
    engine: Engine
    renderer: TemplateRenderer
    channels: dict[str, Channel]
    #: The ``[staff_channels.NAME]`` senders of staff alerts.
    staff: dict[str, StaffSender] = field(default_factory=dict)
    #: Injectable so tests can move time (a 30-day series in milliseconds).
    clock: Callable[[], datetime] = field(default=utcnow)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    _pool_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def iter_sends(self, function: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        """``(item, function(item))`` for each item, in the order the calls finish, run on
        this process's send pool (``worker.send_concurrency`` threads shared by all jobs)."""
        if len(items) <= 1 or self.config.worker.send_concurrency <= 1:
            for item in items:
                yield item, function(item)
            return
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        max_workers=self.config.worker.send_concurrency, thread_name_prefix="nurture-send"
                    )
        futures = {self._pool.submit(function, item): item for item in items}
        for future in as_completed(futures):
            yield futures[future], future.result()

    @classmethod
    def from_config(cls, config: AppConfig, *, engine: Engine | None = None,
                    clock: Callable[[], datetime] = utcnow) -> Runtime:
        """Build a runtime; ``engine`` may be shared with the caller (in-process mode)."""
        return cls(
            config=config,
            engine=engine or make_engine(config.database.url),
            renderer=TemplateRenderer.from_config(config.templates),
            channels=build_channels(config, clock=clock),
            staff=build_staff_senders(config, clock=clock),
            clock=clock,
        )

    def close(self) -> None:
        """Stop the send pool, close channel connections and the engine's pool."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for channel in self.channels.values():
            channel.close()
        for sender in self.staff.values():
            sender.close()
        self.engine.dispose()


class LazyRuntime:
    """Builds the :class:`Runtime` on first use, once, from a config file path.

    Used by worker processes started with Dramatiq's own CLI: the module is imported in
    the parent, but connections must be opened in each child after the fork.
    """

    def __init__(self, *, config_path: str) -> None:
        self.config_path = config_path
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Runtime:
        """This process's runtime, built on the first call."""
        if self._runtime is None:
            with self._lock:
                if self._runtime is None:
                    self._runtime = Runtime.from_config(load_config(self.config_path))
        return self._runtime
