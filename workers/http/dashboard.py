"""The read-only dashboard of ``nurture serve``: each campaign's funnel, conversion against
its holdout and channel analysis, and the store-wide channel analysis, as HTML pages.

:func:`dashboard_routes` returns Starlette routes for

* ``GET /dashboard``: every campaign in config order (enrolled, sent, delivery, open and
  click rates, conversion treated vs holdout, lift with its 95 % interval), and revenue
  share and repeat rate per acquisition and per purchase channel
  (:func:`campaigns.reports.customers.channel_report`);
* ``GET /dashboard/campaigns/{name}``: one campaign: funnel (:mod:`campaigns.reports.funnel`),
  conversion vs holdout, engagement and revenue per channel, and a per-step table; an
  unknown campaign is a 404 page;
* ``GET /dashboard/api/campaigns/{name}``: ``{"report": ..., "funnel": ...}`` as JSON for
  scripts (not ``/campaigns/{name}.json``: a campaign name may itself end in ``.json``);
* ``GET /dashboard/loyalty``: the points programme (:mod:`campaigns.reports.loyalty`):
  outstanding points and their liability, points per month and source, customers per
  tier and tier moves; linked from every page's header while ``[loyalty]`` is enabled,
  a 404 page otherwise. ``GET /dashboard/api/loyalty`` is the same report as JSON.

Charts are inline SVG drawn by the Jinja templates in ``dashboard_templates/``: no
JavaScript, no external file, so the pages work offline and under a CSP that allows
nothing but inline styles. Every chart has a table of the same figures beneath it, and
every figure carries a ``data-metric`` attribute naming it, for tests and scrapers.

Access: HTTP Basic with any user name and the password held by the environment variable
``[api] dashboard_password_env`` names (read at each request, compared in constant time).
While the variable is unset every request is answered 503: campaign figures are never
served to anyone by default. Wrong passwords are throttled per client address
(:class:`FailureThrottle`): past ``[api] dashboard_max_failures`` within
``dashboard_lockout_s`` the dashboard answers 429 with ``Retry-After``, even to the right
password, until the oldest failure leaves the window.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from campaigns.config.schema import AppConfig
from campaigns.config.secretvalues import read_secret
from campaigns.reports.campaign import campaign_report
from campaigns.reports.campaigns_overview import describe_trigger
from campaigns.reports.customers import channel_report
from campaigns.reports.funnel import FUNNEL_STAGES, campaign_funnel
from campaigns.reports.loyalty import MEASURES, loyalty_report

#: Folder of the page templates (shipped as package data).
TEMPLATE_DIR = Path(__file__).with_name("dashboard_templates")
#: The Basic auth realm (RFC 7617; the charset tells browsers to send the password as UTF-8).
REALM = 'Basic realm="nurture dashboard", charset="UTF-8"'
#: Headers of every dashboard answer. The CSP allows inline styles and nothing else to
#: load (the pages need nothing more), no framing and no form posts; the figures are
#: private and current, so nothing is cached and no Referer leaks the dashboard's URL.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


class FailureThrottle:
    """Failed attempts per key (a client address) in a sliding window of ``window_s``.

    Parameters:
        max_failures: failures allowed within the window; the next attempt must wait.
        window_s: length of the window, in seconds.
        clock: the current time (aware; tests pass their own).
    """

    #: Keys remembered at most (a flood of addresses must not grow memory without bound).
    #: At the cap, keys whose failures have all expired are dropped; if that frees too
    #: little, keys not locked out go first (oldest first), so that flooding from other
    #: addresses does not lift a lock-out sooner than it must.
    MAX_KEYS = 10_000

    def __init__(self, *, max_failures: int, window_s: float, clock: Callable[[], datetime]) -> None:
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key, deque())
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures

    def retry_after(self, key: str) -> int | None:
        """Whole seconds ``key`` must wait before trying again, or None when it may try."""
        now = self.clock().timestamp()
        failures = self._recent(key, now)
        if len(failures) < self.max_failures:
            return None
        return max(1, math.ceil(failures[0] + self.window_s - now))

    def failed(self, key: str) -> None:
        """Count a failure of ``key``."""
        now = self.clock().timestamp()
        if len(self._failures) >= self.MAX_KEYS and key not in self._failures:
            self._make_room(now)
        failures = self._recent(key, now)
        failures.append(now)
        self._failures[key] = failures

    def succeeded(self, key: str) -> None:
        """Forget ``key``'s failures."""
        self._failures.pop(key, None)

    def _make_room(self, now: float) -> None:
        # Dropping only expired keys left a table full of recent failures (a flood within
        # the window) to grow past MAX_KEYS, with this whole scan run on every new address.
        # Room for a tenth of the cap is made at once, so the scan runs once per that many.
        self._failures = {k: v for k, v in self._failures.items() if self._recent(k, now)}
        excess = len(self._failures) - self.MAX_KEYS * 9 // 10
        if excess > 0:
            # Stable sort: keys not locked out first, each group oldest first.
            order = sorted(self._failures, key=lambda k: len(self._failures[k]) >= self.max_failures)
            for victim in order[:excess]:
                del self._failures[victim]


def dashboard_routes(*, config: AppConfig, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    """The dashboard's routes over ``engine``; ``clock`` is the "as of" of every figure."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        # Campaign descriptions come from the config file and channel names from imported
        # data: everything interpolated is escaped.
        autoescape=True,
        undefined=StrictUndefined,  # a misspelt figure fails the render instead of showing blank
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.do"],  # the templates build each chart's rows with {% do %}
    )
    env.filters.update(count=format_count, pct=format_pct, money=format_money, pts=format_pts,
                       moment=format_moment, signed=format_signed)
    env.globals.update(funnel_stages=FUNNEL_STAGES, trigger_text=describe_trigger,
                       loyalty_enabled=config.loyalty.enabled, measures=MEASURES)
    password_env = config.api.dashboard_password_env
    throttle = FailureThrottle(max_failures=config.api.dashboard_max_failures,
                               window_s=config.api.dashboard_lockout_s, clock=clock)

    def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def refusal(request: Request) -> Response | None:
        """None when the request carries the password; else the 503 or 401 answer."""
        expected = read_secret(password_env)
        if expected is None:
            return render("message.html", 503, title="Dashboard disabled",
                          message=f"Set the environment variable {password_env} (named by [api] "
                                  "dashboard_password_env) to the password the dashboard should ask for, "
                                  "then restart nurture serve.")
        # Behind a proxy, run uvicorn with --proxy-headers so this is the client's address.
        address = request.client.host if request.client else "unknown"
        wait = throttle.retry_after(address)
        if wait is not None:
            response = render("message.html", 429, title="Too many wrong passwords",
                              message=f"Too many wrong passwords from your address; try again in {wait} s.")
            response.headers["Retry-After"] = str(wait)
            return response
        given = _basic_password(request.headers.get("authorization", ""))
        if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
            if given is not None:  # a guess; a request without a password is the browser asking
                throttle.failed(address)
            response = render("message.html", 401, title="Password required",
                              message="The dashboard needs the password (any user name).")
            response.headers["WWW-Authenticate"] = REALM
            return response
        throttle.succeeded(address)
        return None

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` behind the password: checked before anything else, so a stranger
        cannot even learn which campaign names exist."""
        async def endpoint(request: Request) -> Response:
            refused = refusal(request)
            if refused is not None:
                return refused
            return await handler(request)

        return endpoint

    def not_found(name: str) -> HTMLResponse:
        return render("message.html", 404, title="No such campaign",
                      message=f"There is no campaign named {name!r} in the configuration.",
                      back=True)

    def index_page(now: datetime) -> HTMLResponse:
        rows = [{"campaign": campaign, "report": campaign_report(engine, config, campaign.name, now=now)}
                for campaign in config.campaigns]
        return render("index.html", now=now, campaigns=rows, channels=channel_report(engine))

    def campaign_data(name: str, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
        report = campaign_report(engine, config, name, now=now)
        return report, campaign_funnel(engine, config, name, now=now, report=report)

    def campaign_page(name: str, now: datetime) -> HTMLResponse:
        report, funnel = campaign_data(name, now)
        return render("campaign.html", now=now, campaign=config.campaign(name), report=report, funnel=funnel)

    def loyalty_page(now: datetime) -> HTMLResponse:
        return render("loyalty.html", now=now, report=loyalty_report(engine, config.loyalty, now=now))

    def loyalty_off() -> HTMLResponse:
        return render("message.html", 404, title="Loyalty is off",
                      message="The points programme is not enabled: set enabled = true under [loyalty] "
                              "in config.toml.", back=True)

    async def index(request: Request) -> Response:
        # Reports are SQL (and rendering is CPU): both run off the event loop.
        return await run_in_threadpool(index_page, clock())

    async def campaign(request: Request) -> Response:
        name = request.path_params["name"]
        if not _known(config, name):
            return not_found(name)
        return await run_in_threadpool(campaign_page, name, clock())

    async def campaign_json(request: Request) -> Response:
        name = request.path_params["name"]
        if not _known(config, name):
            return JSONResponse({"error": f"no campaign named {name!r}"}, status_code=404,
                                headers=SECURITY_HEADERS)
        report, funnel = await run_in_threadpool(campaign_data, name, clock())
        return JSONResponse({"report": report, "funnel": funnel}, headers=SECURITY_HEADERS)

    async def loyalty(request: Request) -> Response:
        if not config.loyalty.enabled:
            return loyalty_off()
        return await run_in_threadpool(loyalty_page, clock())

    async def loyalty_json(request: Request) -> Response:
        if not config.loyalty.enabled:
            return JSONResponse({"error": "[loyalty] is not enabled"}, status_code=404, headers=SECURITY_HEADERS)
        report = await run_in_threadpool(lambda: loyalty_report(engine, config.loyalty, now=clock()).to_dict())
        report["now"] = report["now"].isoformat()  # the one time in it
        return JSONResponse(report, headers=SECURITY_HEADERS)

    return [
        Route("/dashboard", guarded(index), methods=["GET"]),
        Route("/dashboard/loyalty", guarded(loyalty), methods=["GET"]),
        Route("/dashboard/api/loyalty", guarded(loyalty_json), methods=["GET"]),
        Route("/dashboard/campaigns/{name}", guarded(campaign), methods=["GET"]),
        Route("/dashboard/api/campaigns/{name}", guarded(campaign_json), methods=["GET"]),
    ]


def _known(config: AppConfig, name: str) -> bool:
    try:
        config.campaign(name)  # the one lookup by name, as the reports use it
    except KeyError:
        return False
    return True


def _basic_password(header: str) -> str | None:
    """The password of an ``Authorization: Basic`` header (user name ignored), or None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, colon, password = decoded.partition(":")
    return password if colon else None


# -- formatting for people (tests parse these back) ---------------------------------------------

#: Shown for a figure that does not exist (a rate over nothing, a lift without holdout).
MISSING = "–"


def format_count(value: float | None) -> str:
    """``1234`` -> ``"1,234"``."""
    return MISSING if value is None else f"{int(value):,}"


def format_pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal: ``0.1234`` -> ``"12.3%"``."""
    return MISSING if value is None else f"{value * 100:.1f}%"


def format_money(value: float | None) -> str:
    """``1234.5`` -> ``"1,234.50"`` (no currency: orders carry none)."""
    return MISSING if value is None else f"{value:,.2f}"


def format_pts(value: float | None) -> str:
    """A difference of rates in percentage points, signed, two decimals as in ``nurture
    report campaign``: ``0.0234`` -> ``"+2.34"``."""
    return MISSING if value is None else f"{value * 100:+.2f}"


def format_signed(value: float | None) -> str:
    """A change, signed, with thousands separators: ``-1160`` -> ``"-1,160"``, ``0`` -> ``"+0"``."""
    return MISSING if value is None else f"{int(value):+,}"


def format_moment(value: datetime) -> str:
    """``2026-06-05 12:00 UTC`` (a naive moment is taken as UTC, as the database stores it)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
