"""Group commit for the receiver: the responses of many requests recorded together.

A provider pushing receipts sends one small request per message, hundreds a second.
Recording each in its own transaction cost ~3 ms of Python per request (P7 in
docs/benchmarks.md), far more than the HTTP work. :class:`ResponseWriter` instead keeps
one batch in flight per process: a request hands its parsed responses to
:meth:`ResponseWriter.record` and waits; the first request is written at once, and
whatever arrives while a batch is committing goes into the next one, recorded by
:func:`campaigns.responses.recording.record_responses` (set-based) in a single transaction. Under
light load a batch is one request and nothing waits for a timer; under heavy load the
batches grow by themselves.

Each request is answered only after its batch has committed, so a provider never hears
"OK" for a response that is not stored. Should a batch fail, its requests are recorded
again one by one, so a single bad request (or a database hiccup) fails only what it must:
a request whose own transaction fails gets the exception, and the receiver answers it
with a status that makes the provider push again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from campaigns.responses.recording import InboundResponse, ResponseResult, record_responses

logger = logging.getLogger("nurture.receivers.batching")

#: Most responses recorded in one transaction (a batch always takes at least one request).
MAX_BATCH_ITEMS = 500


class WriterStopped(RuntimeError):
    """The writer was stopped (its task cancelled) before a request could be recorded."""


@dataclass
class _Waiting:
    """One request's responses and the future its handler awaits."""

    items: Sequence[InboundResponse]
    done: asyncio.Future[list[ResponseResult]]


class ResponseWriter:
    """Records the responses handed in by concurrent requests, a batch at a time.

    ``engine`` is the receiver's engine; ``clock`` gives the aware UTC time a batch is
    recorded at (the time its suppressions and consent changes carry).
    ``max_batch_items`` bounds one transaction.
    """

    def __init__(self, *, engine: Engine, clock: Callable[[], datetime],
                 max_batch_items: int = MAX_BATCH_ITEMS) -> None:
        self._engine = engine
        self._clock = clock
        self._max_batch_items = max_batch_items
        self._waiting: list[_Waiting] = []
        self._drainer: asyncio.Task[None] | None = None

    async def record(self, items: Sequence[InboundResponse]) -> list[ResponseResult]:
        """Record ``items`` (one request's responses) with whatever else is waiting;
        returns their results in order once they are committed, or raises what recording
        them on their own raised."""
        if not items:
            return []
        done: asyncio.Future[list[ResponseResult]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(items, done))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="nurture-response-writer")
        return await done

    async def wait_idle(self) -> None:
        """Wait until every request handed in so far is recorded (server shutdown)."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)

    async def _drain(self) -> None:
        # Runs while requests are waiting and ends with the last of them, so no task is
        # left behind between bursts (or when a test's event loop closes).
        batch: list[_Waiting] = []
        try:
            while self._waiting:
                batch = self._take_batch()
                await self._write(batch)
                batch = []
        except BaseException:
            # Cancelled (server shutdown) mid-batch: no waiting handler may hang; each is
            # answered with an error, so the provider pushes again.
            stopped = WriterStopped("the response writer stopped before recording this request")
            for waiting in (*batch, *self._waiting):
                _settle(waiting, exception=stopped)
            self._waiting.clear()
            raise

    def _take_batch(self) -> list[_Waiting]:
        batch: list[_Waiting] = []
        size = 0
        while self._waiting and (not batch or size + len(self._waiting[0].items) <= self._max_batch_items):
            waiting = self._waiting.pop(0)
            batch.append(waiting)
            size += len(waiting.items)
        return batch

    async def _write(self, batch: list[_Waiting]) -> None:
        live = [waiting for waiting in batch if not waiting.done.done()]  # a client may have gone
        if not live:
            return
        items = [item for waiting in live for item in waiting.items]
        try:
            results = await run_in_threadpool(record_responses, self._engine, items, now=self._clock())
        except Exception as exc:
            if len(live) == 1:
                _settle(live[0], exception=exc)
                return
            logger.warning("recording a batch of %d requests failed; recording them one by one", len(live),
                           exc_info=True)
            for waiting in live:
                await self._write([waiting])
            return
        start = 0
        for waiting in live:
            _settle(waiting, results=results[start:start + len(waiting.items)])
            start += len(waiting.items)


def _settle(waiting: _Waiting, *, results: list[ResponseResult] | None = None,
            exception: BaseException | None = None) -> None:
    """Hand a request its outcome, unless its handler has been cancelled meanwhile."""
    if waiting.done.done():
        return
    if exception is not None:
        waiting.done.set_exception(exception)
    else:
        waiting.done.set_result(results or [])
