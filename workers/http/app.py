"""The ASGI app of ``nurture serve``, built from a runtime (or a config) by
:func:`create_app`: every route in one place.

* ``POST /events`` (:mod:`workers.http.events`) and ``GET /health``;
* ``POST /loyalty/redemptions`` (:mod:`workers.http.redemptions`);
* provider receipts and replies (:mod:`workers.http.callbacks`);
* our own links (:func:`web_routes`): unsubscribe and preference page
  (:mod:`workers.http.preferences`), click redirect and open pixel
  (:mod:`workers.http.links`), survey score links (:mod:`workers.http.surveys`), DSN
  bounces (:mod:`workers.http.bounces`);
* the read-only dashboard (:mod:`workers.http.dashboard`).

Nothing lives at module level, so tests and the CLI each build their own app;
:mod:`workers.http.serve` is the uvicorn factory that builds one per process for
``nurture serve --workers N``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from urllib.parse import quote

from dramatiq.broker import Broker
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from campaigns.config.schema import AppConfig
from campaigns.store.db import make_engine
from campaigns.store.models import utcnow
from workers.http.batching import ResponseWriter
from workers.http.bounces import bounce_endpoint
from workers.http.callbacks.sms import sms_routes
from workers.http.callbacks.wechat import wechat_routes
from workers.http.dashboard import dashboard_routes
from workers.http.events import events_endpoint
from workers.http.links import click_endpoint, open_pixel_endpoint
from workers.http.preferences import (
    PreferencePages,
    one_click_endpoint,
    preference_page_endpoint,
    save_preferences_endpoint,
)
from workers.http.redemptions import redemptions_endpoint
from workers.http.surveys import survey_answer_endpoint, survey_comment_endpoint
from workers.jobs.runtime import Runtime


def _server_pool(url: str) -> dict[str, int]:
    """Pool sizes for the server's own engine (SQLite keeps its defaults)."""
    return {} if url.startswith("sqlite") else {"pool_size": 20, "max_overflow": 20}


def create_app(runtime_or_config: Runtime | AppConfig, *, broker: Broker) -> Starlette:
    """The app for a :class:`Runtime` (its engine is shared) or an :class:`AppConfig`
    (the app opens an engine and disposes of it on shutdown).

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
    # One group-commit writer for every callback route: concurrent pushes share batches.
    writer = ResponseWriter(engine=engine, clock=clock)

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
            Route("/events", events_endpoint(config=config, engine=engine, broker=broker), methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/loyalty/redemptions", redemptions_endpoint(config=config, engine=engine, clock=clock),
                  methods=["POST"]),
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


def web_routes(*, config: AppConfig, engine: Engine, clock: Callable[[], datetime],
               writer: ResponseWriter | None = None) -> list[Route]:
    """The routes of our own links and the bounce intake: one-click unsubscribe, preference
    page, click redirect, open pixel, survey score links, DSN bounces.

    ``clock`` gives the current time (tests pass a fixed one); ``engine`` is the caller's,
    never disposed here. Clicks and opens, the many small requests, are recorded by
    ``writer`` (the app's shared one; else a writer of these routes' own).
    """

    def now() -> datetime:
        moment = clock()
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    writer = writer or ResponseWriter(engine=engine, clock=now)
    pages = PreferencePages()
    return [
        Route("/u/{token}", one_click_endpoint(config=config, engine=engine, clock=now), methods=["POST"]),
        Route("/u/{token}", preference_page_endpoint(config=config, engine=engine, pages=pages), methods=["GET"]),
        Route("/u/{token}/preferences", save_preferences_endpoint(config=config, engine=engine, clock=now,
                                                                  pages=pages), methods=["POST"]),
        Route("/c/{token}", click_endpoint(config=config, writer=writer, clock=now), methods=["GET"]),
        Route("/o/{token}.gif", open_pixel_endpoint(config=config, writer=writer, clock=now), methods=["GET"]),
        Route("/bounces", bounce_endpoint(config=config, engine=engine, clock=now), methods=["POST"]),
        # Survey score links (docs/feedback.md): a GET records the score, a POST a comment.
        Route("/s/{token}", survey_answer_endpoint(config=config, engine=engine, clock=now, pages=pages),
              methods=["GET"]),
        Route("/s/{token}", survey_comment_endpoint(config=config, engine=engine, clock=now, pages=pages),
              methods=["POST"]),
    ]


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
