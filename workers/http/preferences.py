"""Unsubscribing and the preference page: ``/u/{token}``.

* ``POST /u/{token}``: RFC 8058 one-click unsubscribe. The body is the form field
  ``List-Unsubscribe=One-Click`` (url-encoded or multipart, as RFC 8058 §3.1 allows); the
  token (:mod:`campaigns.sending.tokens`) is the whole authorisation, which is what
  RFC 8058 intends: no cookie, no login, no CSRF token. It withdraws the customer's
  consent on the family of the channel the message went out on.
* ``GET /u/{token}``: a small preference page (the customer's masked address and one
  checkbox per channel family the customer can be reached on). A GET changes nothing:
  mail scanners follow links.
* ``POST /u/{token}/preferences``: withdraws consent on every family the customer
  unticked (source ``preference page``) and records an ``unsubscribed`` response for each.
  The page only withdraws: a link in a forwarded mail must not be able to grant consent
  in somebody else's name, so families without consent are shown but cannot be ticked.

Tokens are verified with the ``unsubscribe_secret_env`` of each ``smtp`` channel and the
``[api]`` link secret (which seals the links in message bodies), read at request time
(every configured secret is tried, so several SMTP channels may use different ones). What the changes record is :mod:`campaigns.responses.preferences`; the
pages are the autoescaped Jinja templates in ``preference_templates/``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from campaigns.config.options.smtp import SmtpChannelConfig
from campaigns.config.schema import AppConfig
from campaigns.config.secretvalues import read_secret
from campaigns.customers.masking import mask_email, mask_phone
from campaigns.responses.preferences import (
    MessageRecipient,
    load_recipient,
    unsubscribe_once,
    withdraw_families,
)
from campaigns.sending.tokens import verify_unsubscribe_token
from workers.http.errors import guarded, json_error, read_limited
from workers.http.forms import parse_form
from workers.http.privacy import PAGE_HEADERS, PRIVATE_HEADERS

logger = logging.getLogger("nurture.http.preferences")

#: Folder of the page templates (shipped as package data).
TEMPLATE_DIR = Path(__file__).with_name("preference_templates")
#: Largest request body accepted, in bytes (a one-click form is a few bytes).
MAX_BODY_BYTES = 1024 * 1024
#: Display names of the channel families on the preference page.
FAMILY_LABELS = {"email": "Email", "sms": "Text messages (SMS)", "wechat": "WeChat"}

Endpoint = Callable[[Request], Awaitable[Response]]


class PreferencePages:
    """The HTML pages of ``/u/``: the preference page, "link not valid" and "something
    went wrong", all with :data:`~workers.http.privacy.PAGE_HEADERS`."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATE_DIR),
            # The address and the token come from the customer's data and the URL.
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """``template`` rendered with ``context``, as an answer."""
        return HTMLResponse(self.env.get_template(template).render(**context), status_code=status,
                            headers=PAGE_HEADERS)

    def preferences(self, recipient: MessageRecipient, token: str, *, notice: str | None = None) -> HTMLResponse:
        """The preference page of ``recipient`` (reached by ``token``), with an optional notice."""
        return self.render("preferences.html", title="Your message preferences", notice=notice, token=token,
                           address=masked_address(recipient.family, recipient.address),
                           consents=recipient.consents, labels=FAMILY_LABELS)

    def not_found(self) -> HTMLResponse:
        """The 404 page of a token that names no message."""
        return self.render("message.html", 404, title="Link not valid",
                           message="This link is not valid. If you copied it from a message, "
                                   "please check that it is complete.")

    def failure(self) -> HTMLResponse:
        """The 500 page: the customer never sees a traceback."""
        return self.render("message.html", 500, title="Something went wrong",
                           message="We could not process this request. Please try again later.")


def masked_address(family: str, address: str | None) -> str:
    """How the page names the customer's address on ``family``: masked, never whole."""
    if not address:
        return "your address"
    if family == "email":
        return mask_email(address)
    if family == "sms":
        return mask_phone(address)
    return "your WeChat account"


def unsubscribe_send_key(config: AppConfig, token: str) -> str | None:
    """The send key an unsubscribe ``token`` names, verified with the secret of any SMTP
    channel (``List-Unsubscribe``) or the link secret (the ``unsubscribe_url`` and
    ``preferences_url`` of message bodies, :mod:`campaigns.sending.bodylinks`); None when
    no configured secret verifies it."""
    secrets = [read_secret(channel.unsubscribe_secret_env) for channel in config.channels.values()
               if isinstance(channel, SmtpChannelConfig)]
    tried: list[str] = []
    for secret in [*secrets, read_secret(config.api.link_secret_env)]:
        if secret and secret not in tried:
            tried.append(secret)
            send_key = verify_unsubscribe_token(token, secret)
            if send_key is not None:
                return send_key
    return None


def one_click_endpoint(*, config: AppConfig, engine: Engine, clock: Callable[[], datetime]) -> Endpoint:
    """``POST /u/{token}``: RFC 8058 one-click unsubscribe; ``clock`` gives the aware current time."""

    async def one_click(request: Request) -> Response:
        """RFC 8058 one-click unsubscribe."""
        body = await read_limited(request, MAX_BODY_BYTES)
        fields = parse_form(request.headers.get("content-type"), body)
        if fields is None or "One-Click" not in [v.strip() for v in fields.get("List-Unsubscribe", [])]:
            return json_error(400, "expected the form field List-Unsubscribe=One-Click (RFC 8058)")
        send_key = unsubscribe_send_key(config, request.path_params["token"])
        if send_key is None:
            return json_error(404, "unknown link")
        recipient = await run_in_threadpool(load_recipient, engine, config, send_key)
        if recipient is None:
            return json_error(404, "unknown link")
        await run_in_threadpool(unsubscribe_once, engine, recipient, now=clock())
        return PlainTextResponse("You are unsubscribed.\n", headers=PRIVATE_HEADERS)

    return guarded(one_click, lambda: json_error(500, "internal error; please try again"),
                   logger=logger, body_limit=MAX_BODY_BYTES)


def preference_page_endpoint(*, config: AppConfig, engine: Engine, pages: PreferencePages) -> Endpoint:
    """``GET /u/{token}``: the preference page, read only."""

    async def preferences_page(request: Request) -> Response:
        """The preference page: read only."""
        token = request.path_params["token"]
        send_key = unsubscribe_send_key(config, token)
        recipient = await run_in_threadpool(load_recipient, engine, config, send_key) if send_key else None
        if recipient is None:
            return pages.not_found()
        return pages.preferences(recipient, token)

    return guarded(preferences_page, pages.failure, logger=logger, body_limit=MAX_BODY_BYTES)


def save_preferences_endpoint(*, config: AppConfig, engine: Engine, clock: Callable[[], datetime],
                              pages: PreferencePages) -> Endpoint:
    """``POST /u/{token}/preferences``: withdraw consent on the unticked families."""

    async def save_preferences(request: Request) -> Response:
        """Withdraw consent on the unticked families."""
        token = request.path_params["token"]
        body = await read_limited(request, MAX_BODY_BYTES)
        send_key = unsubscribe_send_key(config, token)
        recipient = await run_in_threadpool(load_recipient, engine, config, send_key) if send_key else None
        if recipient is None:
            return pages.not_found()
        fields = parse_form(request.headers.get("content-type"), body)
        if fields is None or fields.get("save") != ["1"]:
            # An empty POST must not read as "untick everything".
            return json_error(400, "expected the preference form (save=1 and a family field per ticked channel)")
        ticked = set(fields.get("family", []))
        if not ticked <= set(recipient.consents):
            # A family the page never offered (NUL, "NaN", a forged name): the form was not
            # the page's, so it must not read as "every real family unticked".
            return json_error(400, "the family field names a channel this page does not offer")
        withdrawn = [f for f, status in recipient.consents.items() if status == "granted" and f not in ticked]
        if withdrawn:
            await run_in_threadpool(withdraw_families, engine, recipient, withdrawn, now=clock())
            recipient = await run_in_threadpool(load_recipient, engine, config, send_key) or recipient
        return pages.preferences(recipient, token, notice="Your preferences are saved.")

    return guarded(save_preferences, pages.failure, logger=logger, body_limit=MAX_BODY_BYTES)
