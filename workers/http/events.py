"""``POST /events``: customer events from our own systems.

Events are recorded in the database first (the answer says per event whether it was
accepted, a duplicate or rejected, and why), then the ids of newly accepted events are
handed to the ``handle_events`` actor through the broker, which plans event campaigns and
enqueues the due messages. Should the broker be unreachable, the events are still stored
and the next scheduler tick plans them.

Authentication: ``Authorization: Bearer <key>``, where the key is the value of the
environment variable named by ``[api] key_env``; while that variable is unset the
endpoint refuses every request (503) rather than accept events from anyone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from dramatiq.broker import Broker
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from campaigns.config.jsonvalues import UnstorableValue
from campaigns.config.jsonvalues import loads as load_json
from campaigns.config.schema import AppConfig
from campaigns.customers.events import EventResult, record_events
from workers.http.errors import BodyTooLarge, bearer_refusal, json_error, read_limited
from workers.jobs.broker import enqueue_many, events_message

logger = logging.getLogger("nurture.receiver")

#: Most events accepted in one request.
MAX_EVENTS = 1000
#: Largest request body accepted, in bytes (1000 events with generous properties).
MAX_BODY_BYTES = 4 * 1024 * 1024


def events_endpoint(*, config: AppConfig, engine: Engine, broker: Broker
                    ) -> Callable[[Request], Awaitable[JSONResponse]]:
    """``POST /events`` over ``engine``; ``broker`` receives the ``handle_events`` jobs."""
    key_env = config.api.key_env
    queue = config.broker.queue

    async def post_events(request: Request) -> JSONResponse:
        """Record a batch of events and hand the new ones to ``handle_events``."""
        refused = bearer_refusal(request, key_env, api="event API")
        if refused is not None:
            return refused
        try:
            body = await read_limited(request, MAX_BODY_BYTES)
        except BodyTooLarge:
            return json_error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        events, problem = parse_events(body)
        if problem is not None:
            return json_error(*problem)
        # An event's customer_id may be any identifier, normalised by the configured rules.
        result: EventResult = await run_in_threadpool(record_events, engine, events, rules=config.identity)
        if result.accepted_ids:
            try:
                await run_in_threadpool(enqueue_many, broker, [events_message(queue, result.accepted_ids)])
            except Exception:  # the events are stored: the next scheduler tick plans them
                logger.exception("could not enqueue handle_events for %d event(s)", len(result.accepted_ids))
        # Nothing usable (every event rejected) is the client's mistake: a 422 with the
        # same per-event reasons. A batch with any good event is accepted as a whole (202),
        # its bad events named by index, so one bad event never costs the others.
        everything_rejected = result.count("rejected") == len(result.statuses)
        return JSONResponse(result.to_dict(), status_code=422 if everything_rejected else 202)

    return post_events


def parse_events(body: bytes) -> tuple[list[Any], tuple[int, str] | None]:
    """The events of a request body, or (status, reason) when the body is unusable.

    Parsed by :func:`campaigns.config.jsonvalues.loads`: NaN, Infinity and over-long integers
    inside an event reject that event (by index) rather than the request; nesting too deep
    for the parser is a 400.
    """
    try:
        payload = load_json(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [], (400, f"invalid JSON: {exc}")
    except UnstorableValue as exc:
        return [], (400, f"invalid JSON: {exc}")
    if not isinstance(payload, dict) or "events" not in payload:
        return [], (400, 'expected a JSON object {"events": [...]}')
    events = payload["events"]
    if not isinstance(events, list):
        return [], (400, "events: expected a JSON array of event objects")
    if not events:
        return [], (400, "events: empty; send at least one event")
    if len(events) > MAX_EVENTS:
        return [], (413, f"{len(events)} events in one request; at most {MAX_EVENTS}")
    return events, None
