"""The HTTP receiver (``nurture serve``): ``POST /events``, ``GET /health`` and the
provider callbacks and customer links of :mod:`workers.receivers` (SMS receipts and
replies; one-click unsubscribe, preference page, clicks, opens, DSN bounces), and the
read-only dashboard of :mod:`workers.http.dashboard`.

An ASGI app (Starlette) built by :func:`create_app`; nothing lives at module level, so
tests and the CLI each build their own. Events are recorded in the database first (the
answer says per event whether it was accepted, a duplicate or rejected, and why), then
the ids of newly accepted events are handed to the ``handle_events`` actor through the
broker, which plans event campaigns and enqueues the due messages. Should the broker be
unreachable, the events are still stored and the next scheduler tick plans them.

Authentication: ``Authorization: Bearer <key>``, where the key is the value of the
environment variable named by ``[api] key_env``; while that variable is unset the
endpoint refuses every request (503) rather than accept events from anyone.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from dramatiq.broker import Broker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from campaigns.config.schema import AppConfig
from campaigns.store.db import make_engine
from campaigns.customers.events import EventResult, record_events
from campaigns.config.jsonvalues import UnstorableValue
from campaigns.config.jsonvalues import loads as load_json
from campaigns.store.models import utcnow
from workers.jobs.broker import enqueue_many, events_message
from workers.http.dashboard import dashboard_routes
from workers.http.batching import ResponseWriter
from workers.http.errors import BodyTooLarge, bearer_refusal, read_limited
from workers.http.callbacks.sms import sms_routes
from workers.http.web import web_routes
from workers.http.callbacks.wechat import wechat_routes
from workers.jobs.runtime import Runtime

logger = logging.getLogger("nurture.receiver")

#: Most events accepted in one request.
MAX_EVENTS = 1000
#: Largest request body accepted, in bytes (1000 events with generous properties).
MAX_BODY_BYTES = 4 * 1024 * 1024


def _server_pool(url: str) -> dict[str, int]:
    """Pool sizes for the server's own engine (SQLite keeps its defaults)."""
    return {} if url.startswith("sqlite") else {"pool_size": 20, "max_overflow": 20}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(runtime_or_config: Runtime | AppConfig, *, broker: Broker) -> Starlette:
    """The receiver app for a :class:`Runtime` (its engine is shared) or an
    :class:`AppConfig` (the app opens an engine and disposes of it on shutdown).

    ``broker`` receives the ``handle_events`` jobs: a Redis broker for separate workers, or
    the stub broker of :class:`~workers.jobs.inprocess.InProcessWorkers`.
    """
    if isinstance(runtime_or_config, Runtime):
        config, engine, owns_engine = runtime_or_config.config, runtime_or_config.engine, False
        clock = runtime_or_config.clock
    else:
        # Starlette runs handlers on a 40-thread pool: a pool of 5 (+10) connections made
        # PostgreSQL open and close sessions under callback load (P7).
        config, engine, owns_engine = runtime_or_config, make_engine(
            runtime_or_config.database.url, **_server_pool(runtime_or_config.database.url)), True
        clock = utcnow
    key_env = config.api.key_env
    queue = config.broker.queue
    # One group-commit writer for every callback route: concurrent pushes share batches.
    writer = ResponseWriter(engine=engine, clock=clock)

    async def post_events(request: Request) -> JSONResponse:
        refused = bearer_refusal(request, key_env, api="event API")
        if refused is not None:
            return refused
        try:
            body = await read_limited(request, MAX_BODY_BYTES)
        except BodyTooLarge:
            return _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        events, problem = _parse_body(body)
        if problem is not None:
            return _error(*problem)
        result: EventResult = await run_in_threadpool(record_events, engine, events)
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

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await writer.wait_idle()
            if owns_engine:
                engine.dispose()

    app = Starlette(
        routes=[
            Route("/events", post_events, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            # Provider receipts and replies (issue 7); each route authenticates its provider.
            *sms_routes(config=config, engine=engine, clock=clock, writer=writer),
            # One-click unsubscribe, preference page, click redirects, open pixel, DSN bounces.
            *web_routes(config=config, engine=engine, clock=clock, writer=writer),
            # WeChat event pushes: template receipts, unfollows, replies.
            *wechat_routes(config=config, engine=engine, clock=clock, writer=writer),
            # The read-only dashboard: HTTP Basic with [api] dashboard_password_env (503 while unset).
            *dashboard_routes(config=config, engine=engine, clock=clock),
        ],
        lifespan=lifespan,
    )
    # Starlette's trailing-slash redirect writes the request's Host header into Location
    # (Host: evil.example made /dashboard/ redirect there): ours answers with the path only.
    app.router.redirect_slashes = False
    app.router.default = _slash_redirect(app.router)
    return app


def _slash_redirect(router: Router) -> ASGIApp:
    """The router's fallback: a path that matches a route once its trailing slash is added
    or removed is redirected (307, as Starlette does) with a relative ``Location`` naming
    no host; anything else is the router's 404."""

    async def fallback(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path not in ("", "/"):
            other = path.rstrip("/") if path.endswith("/") else path + "/"
            # "//host" in Location would be a protocol-relative URL: never redirect there.
            if other.startswith("/") and not other.startswith("//"):
                alternative = {**scope, "path": other}
                if any(route.matches(alternative)[0] is not Match.NONE for route in router.routes):
                    query = scope.get("query_string", b"").decode("latin-1")
                    location = quote(other) + (f"?{query}" if query else "")
                    await RedirectResponse(location, status_code=307)(scope, receive, send)
                    return
        await router.not_found(scope, receive, send)

    return fallback


def _parse_body(body: bytes) -> tuple[list[Any], tuple[int, str] | None]:
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
