"""Our own web endpoints for responses (issue #7): unsubscribes, preferences, clicks,
opens and bounces.

:func:`web_routes` returns Starlette routes for

* ``POST /u/{token}``: RFC 8058 one-click unsubscribe. The body is the form field
  ``List-Unsubscribe=One-Click`` (url-encoded or multipart, as RFC 8058 §3.1 allows); the
  token (:mod:`campaigns.sending.unsubscribe`) is the whole authorisation, which is what RFC 8058
  intends: no cookie, no login, no CSRF token. It withdraws the customer's consent on the
  family of the channel the message went out on.
* ``GET /u/{token}``: a small preference page (the customer's masked address and one
  checkbox per channel family the customer can be reached on). A GET changes nothing:
  mail scanners follow links.
* ``POST /u/{token}/preferences``: withdraws consent on every family the customer
  unticked (source ``preference page``) and records an ``unsubscribed`` response for each.
  The page only withdraws: a link in a forwarded mail must not be able to grant consent
  in somebody else's name, so families without consent are shown but cannot be ticked.
* ``GET /c/{token}``: click redirect. The click token (:mod:`campaigns.sending.links`) seals the
  send key and the target URL together (AES-SIV: neither is readable in the URL or an
  access log), so the redirect only ever goes where one of our messages pointed (never
  an open redirect); a bad token is a 404 without a Location.
* ``GET /o/{token}.gif``: open pixel, a 1x1 transparent GIF answered to every request
  (the image must never break a mail), recording an ``opened`` response only for a valid
  token (:func:`campaigns.sending.links.make_open_token`).
* ``POST /bounces``: a bounce (RFC 3464 DSN) as received, e.g. piped from the MTA that
  receives mail for the VERP address, authenticated like ``POST /events`` with
  ``Authorization: Bearer <value of [api] key_env>``; parsed by :mod:`campaigns.responses.dsn`.
  Anyone can mail the bounce address, so a report is only believed when it carries the
  keyed tag of one of our messages (VERP or Message-ID, :func:`campaigns.config.keys.message_tag`)
  and its Final-Recipient is the address that message went to; it then affects that one
  address only. Anything else is a 422 that records nothing; without the installation
  secret (``[security] secret_env``) every bounce is refused (503).

Secrets, all read from the environment at request time:

* unsubscribe tokens: the ``unsubscribe_secret_env`` of each ``smtp`` channel (every
  configured secret is tried, so several SMTP channels may use different ones);
* click and open tokens: ``[api] link_secret_env`` (default :data:`LINK_SECRET_ENV`,
  ``NURTURE_LINK_SECRET``). While it is
  unset, ``/c/`` answers 404 and the pixel records nothing.

Responses are recorded through :func:`campaigns.responses.recording.record_responses`: a repeated
unsubscribe, open or click of the same link in the same message is stored once.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import html
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from campaigns.customers.addresses import normalize_address
from campaigns.config.vocabulary import CHANNEL_FAMILY, FAMILY_FIELDS
from campaigns.config.options.smtp import SmtpChannelConfig
from campaigns.config.schema import AppConfig
from campaigns.config.secretvalues import read_secret
from campaigns.responses.dsn import (
    DELAYED,
    DELIVERED,
    HARD,
    SOFT,
    DsnError,
    DsnRecipient,
    DsnReport,
    parse_dsn,
    verp_hash,
)
from campaigns.config.keys import MIN_SECRET_LENGTH, derive_key, installation_secret, keyed_hex, tags_match
from campaigns.sending.links import verify_click_token, verify_open_token
from campaigns.customers.masking import mask_email, mask_phone, mask_text
from campaigns.store.models import Consent, Customer, Delivery
from campaigns.responses.optout import set_consent
from campaigns.responses.recording import InboundResponse, ResponseResult, record_responses
from campaigns.sending.unsubscribe import verify_unsubscribe_token
from workers.http.batching import ResponseWriter
from workers.http.errors import BodyTooLarge, bearer_refusal, read_limited

logger = logging.getLogger("nurture.receivers.web")

#: Environment variable holding the HMAC key of click and open tokens.
LINK_SECRET_ENV = "NURTURE_LINK_SECRET"
#: Purpose label (campaigns.config.keys) of the key hashing a bounced address into its response ref.
BOUNCE_REF_PURPOSE = "bounce-ref"
#: Largest request body accepted, in bytes (a bounce quoting a big message is cut by the
#: MTA long before this; a one-click form is a few bytes).
MAX_BODY_BYTES = 1024 * 1024
#: The ``source`` of consent withdrawn on the preference page.
PREFERENCE_SOURCE = "preference page"
#: Provider name of responses from our own links, and of bounces.
WEB_PROVIDER, EMAIL_PROVIDER = "web", "email"
#: A 1x1 transparent GIF (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
#: Headers of every answer that carries a token-derived page: no caching (a pixel must be
#: fetched on every open; a preference page must not linger in a shared cache), no
#: Referer (the token is in our URL), no framing (clickjacking the checkboxes).
_PRIVATE_HEADERS = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
    "Referrer-Policy": "no-referrer",
}
_PAGE_HEADERS = {
    **_PRIVATE_HEADERS,
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
#: Display names of the channel families on the preference page.
FAMILY_LABELS = {"email": "Email", "sms": "Text messages (SMS)", "wechat": "WeChat"}
_MAC_BYTES = hashlib.sha256().digest_size


def click_ref(send_key: str, url: str) -> str:
    """The dedupe ref of a click: one per link per message, however often it is clicked."""
    return f"{send_key}:{hashlib.sha256(url.encode('utf-8')).hexdigest()[:16]}"


# -- what a token leads to --------------------------------------------------------------------


@dataclass(frozen=True)
class _Recipient:
    """The delivery a token names and what the preference page needs of its customer."""

    send_key: str
    delivery_id: int
    customer_id: int
    #: Family of the channel the message went out on.
    family: str
    #: The customer's address on ``family`` (shown masked only).
    address: str | None
    #: Family -> consent status (granted, withdrawn, or None when nothing is recorded),
    #: for every family the customer has an address or a consent record on.
    consents: dict[str, str | None] = field(default_factory=dict)


def _channel_family(config: AppConfig, channel: str, default: str = "email") -> str:
    options = config.channels.get(channel)
    family = CHANNEL_FAMILY.get(str(getattr(options, "recipient", "")))
    return family or default


def _load_recipient(engine: Engine, config: AppConfig, send_key: str) -> _Recipient | None:
    with engine.connect() as conn:
        delivery = conn.execute(
            sa.select(Delivery.id, Delivery.customer_id, Delivery.channel).where(Delivery.send_key == send_key)
        ).first()
        if delivery is None:
            return None
        customer = conn.execute(
            sa.select(Customer.email, Customer.phone, Customer.wechat_openid).where(Customer.id == delivery.customer_id)
        ).first()
        consents = dict(conn.execute(
            sa.select(Consent.channel, Consent.status).where(Consent.customer_id == delivery.customer_id)
        ).all())
    addresses = {"email": customer.email, "sms": customer.phone, "wechat": customer.wechat_openid} if customer else {}
    family = _channel_family(config, delivery.channel)
    shown = {f: consents.get(f) for f in FAMILY_FIELDS if addresses.get(f) or f in consents}
    return _Recipient(send_key=send_key, delivery_id=delivery.id, customer_id=delivery.customer_id, family=family,
                      address=addresses.get(family), consents=shown)


# -- request helpers --------------------------------------------------------------------------


async def _read_body(request: Request) -> bytes:
    """The body within :data:`MAX_BODY_BYTES` (:class:`BodyTooLarge` past it)."""
    return await read_limited(request, MAX_BODY_BYTES)


def _form(content_type: str | None, body: bytes) -> dict[str, list[str]] | None:
    """Fields of an url-encoded or multipart/form-data body, or None when unreadable.

    Parsed here rather than by ``request.form()``, which needs the python-multipart
    package; the forms are tiny and RFC 8058 allows both encodings.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    fields: dict[str, list[str]] = {}
    if media in ("", "application/x-www-form-urlencoded"):
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            return None
        for name, value in pairs:
            fields.setdefault(name, []).append(value)
        return fields
    if media == "multipart/form-data":
        head = b"Content-Type: " + (content_type or "").encode("latin-1", "replace") + b"\r\n\r\n"
        message = email.message_from_bytes(head + body, policy=email.policy.compat32)
        if not message.is_multipart():
            return None
        for part in message.get_payload():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            data = part.get_payload(decode=True) or b""
            fields.setdefault(name, []).append(data.decode("utf-8", "replace").strip())
        return fields
    return None


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _guarded(handler: Callable[[Request], Awaitable[Response]],
             fallback: Callable[[], Response]) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` answering ``fallback()`` instead of raising: a customer clicking a link
    must never see a traceback, and neither must a mail provider."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except BodyTooLarge:
            return _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        except ClientDisconnect:
            return _error(400, "client disconnected")
        except Exception:
            logger.exception("%s %s failed", request.method, request.url.path.split("/", 2)[1])
            return fallback()

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


# -- pages ------------------------------------------------------------------------------------


def _masked(family: str, address: str | None) -> str:
    if not address:
        return "your address"
    if family == "email":
        return mask_email(address)
    if family == "sms":
        return mask_phone(address)
    return "your WeChat account"


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta name=\"robots\" content=\"noindex, nofollow\">"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;"
        "line-height:1.5}label{display:block;margin:.5rem 0}.muted{color:#666}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )
    return HTMLResponse(document, status_code=status, headers=_PAGE_HEADERS)


def _not_found_page() -> HTMLResponse:
    return _page("Link not valid", "<p>This link is not valid. If you copied it from a message, "
                                   "please check that it is complete.</p>", status=404)


def _preference_page(recipient: _Recipient, token: str, *, notice: str | None = None) -> HTMLResponse:
    rows = []
    for family, status in recipient.consents.items():
        label = html.escape(FAMILY_LABELS.get(family, family))
        value = html.escape(family)
        if status == "granted":
            rows.append(f'<label><input type="checkbox" name="family" value="{value}" checked> {label}</label>')
        else:
            rows.append(f'<label class="muted"><input type="checkbox" disabled> {label} '
                        "(you receive no marketing messages here)</label>")
    address = html.escape(_masked(recipient.family, recipient.address))
    notice_html = f"<p><strong>{html.escape(notice)}</strong></p>" if notice else ""
    # Relative action: resolves to /u/<token>/preferences under whatever prefix a proxy
    # serves this page at.
    action = html.escape(token, quote=True) + "/preferences"
    body = (
        f"{notice_html}<p>Marketing messages for <strong>{address}</strong>.</p>"
        "<p>Untick a channel to stop receiving marketing messages on it.</p>"
        f'<form method="post" action="{action}">{"".join(rows)}'
        '<input type="hidden" name="save" value="1">'
        '<p><button type="submit">Save preferences</button></p></form>'
    )
    return _page("Your message preferences", body)


# -- bounces ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Matched:
    delivery_id: int
    send_key: str
    provider_message_id: str | None
    email: str | None


_TAG = re.compile(r"<([0-9a-fA-F]{32})@([^<>@\s]+)>")


def _match_delivery(engine: Engine, config: AppConfig, report: DsnReport, secret: str) -> _Matched | None:
    """The delivery a bounce is about, found by the keyed tag it carries: the local part
    of the returned Message-ID, or the VERP tag in the report's own address.

    The tag must be ``message_tag(secret, send_key)`` of the delivery it names. Send keys
    are guessable (``win_back:0:<customer id>:once``), so a send key in clear
    (X-Nurture-Send-Key, Original-Envelope-Id) or an unkeyed SHA-256 of one (what was
    sent before the installation secret existed) proves nothing and is not accepted.
    """
    smtp = [ch for ch in config.channels.values() if isinstance(ch, SmtpChannelConfig)]
    tags: dict[str, str] = {}  # provider message id -> tag
    if report.original_message_id:
        found = _TAG.fullmatch(report.original_message_id)
        for channel in smtp if found else ():
            if found.group(2).lower() == channel.id_domain.lower():  # type: ignore[union-attr]
                tag = found.group(1).lower()  # type: ignore[union-attr]
                tags[f"<{tag}@{channel.id_domain}>"] = tag
    for channel in smtp:
        if not channel.envelope_from:
            continue
        for address in report.report_to:
            digest = verp_hash(address, channel.envelope_from)
            if digest:
                # The SMTP channel's Message-ID is <tag@id_domain> with the same tag.
                tags[f"<{digest}@{channel.id_domain}>"] = digest
    if not tags:
        return None
    columns = (Delivery.id, Delivery.send_key, Delivery.provider_message_id, Customer.email)
    base = sa.select(*columns).join(Customer, Customer.id == Delivery.customer_id)
    with engine.connect() as conn:
        rows = conn.execute(
            base.where(Delivery.provider_message_id.in_(sorted(tags))).order_by(Delivery.id.desc())
        ).all()
    for row in rows:
        if tags_match(secret, row.send_key, tags[row.provider_message_id]):
            return _Matched(row.id, row.send_key, row.provider_message_id, row.email)
    return None


def _bounce_items(report: DsnReport, matched: _Matched, *, now: datetime, ref_key: bytes
                  ) -> list[tuple[DsnRecipient, InboundResponse | None, bool, str | None]]:
    """Per recipient: (recipient, response to record or None, matched, why ignored)."""
    out: list[tuple[DsnRecipient, InboundResponse | None, bool, str | None]] = []
    for recipient in report.recipients:
        severity = recipient.severity
        # Only the block about the very address the matched message went to counts (its
        # Final-Recipient; an Original-Recipient is whatever the report says it is): one
        # bounce affects one address, the one in our ledger, never one the report names.
        ours = bool(matched.email) and normalize_address(matched.email or "") == normalize_address(
            recipient.final_recipient)
        if not ours:
            out.append((recipient, None, False, "not the address the bounced message was sent to"))
            continue
        if severity == DELAYED:
            # A warning: the MTA is still trying. The final report will follow.
            out.append((recipient, None, True, "delayed: the MTA is still retrying"))
            continue
        if severity == DELIVERED:
            kind = "delivered"
        elif severity == SOFT:
            kind = "undelivered"
        else:
            # hard, policy (5.7.x) and other permanent failures: the message bounced; only
            # a hard bounce of our own recipient suppresses (``blocked`` would suppress).
            kind = "bounced"
        # No address in the ref, not even its plain SHA-256 (guessable back from a list of
        # addresses): forgetting a customer erases payloads, not refs.
        recipient_hash = keyed_hex(ref_key, normalize_address(recipient.final_recipient))[:16]
        attempted = recipient.attempted_at
        item = InboundResponse(
            kind=kind,
            provider=EMAIL_PROVIDER,
            provider_ref=f"{report.message_ref()}:{recipient_hash}:{recipient.status}",
            occurred_at=min(attempted, now) if attempted is not None else now,
            provider_message_id=matched.provider_message_id,
            send_key=matched.send_key,
            address=matched.email,
            family="email",
            error=recipient.masked_error() if kind != "delivered" else None,
            permanent=severity == HARD,
            payload={"status": recipient.status, "action": recipient.action, "severity": severity},
        )
        out.append((recipient, item, ours, None))
    return out


# -- routes -----------------------------------------------------------------------------------


def web_routes(*, config: AppConfig, engine: Engine, clock: Callable[[], datetime],
               writer: ResponseWriter | None = None) -> list[Route]:
    """The routes of unsubscribe, preference page, click, open and bounce endpoints.

    ``clock`` gives the current time (aware; tests pass a fixed one); ``engine`` is the
    caller's, never disposed here. Clicks and opens, the many small requests, are
    recorded by ``writer`` (the app's shared one; else a writer of these routes' own).
    """
    key_env = config.api.key_env

    def now() -> datetime:
        return _aware(clock())

    writer = writer or ResponseWriter(engine=engine, clock=now)

    def unsubscribe_secrets() -> list[str]:
        secrets: list[str] = []
        for channel in config.channels.values():
            if isinstance(channel, SmtpChannelConfig):
                secret = read_secret(channel.unsubscribe_secret_env)
                if secret and secret not in secrets:
                    secrets.append(secret)
        return secrets

    def send_key_of(token: str) -> str | None:
        for secret in unsubscribe_secrets():
            send_key = verify_unsubscribe_token(token, secret)
            if send_key is not None:
                return send_key
        return None

    # -- unsubscribe ----------------------------------------------------------------------

    def unsubscribe_once(recipient: _Recipient, moment: datetime) -> ResponseResult:
        item = InboundResponse(
            kind="unsubscribed", provider=WEB_PROVIDER, provider_ref=recipient.send_key, occurred_at=moment,
            send_key=recipient.send_key, family=recipient.family, payload={"method": "one-click"},
        )
        result = record_responses(engine, [item], now=moment)[0]
        if result.duplicate and recipient.consents.get(recipient.family) == "granted":
            # Recorded before, but consent was granted again since: the customer asks
            # again, and an unsubscribe is honoured whatever the ledger already holds.
            set_consent(engine, customer_id=recipient.customer_id, family=recipient.family, status="withdrawn",
                        source=f"{WEB_PROVIDER} unsubscribe", now=moment)
        return result

    async def one_click(request: Request) -> Response:
        """RFC 8058 one-click unsubscribe."""
        body = await _read_body(request)
        fields = _form(request.headers.get("content-type"), body)
        if fields is None or "One-Click" not in [v.strip() for v in fields.get("List-Unsubscribe", [])]:
            return _error(400, "expected the form field List-Unsubscribe=One-Click (RFC 8058)")
        send_key = send_key_of(request.path_params["token"])
        if send_key is None:
            return _error(404, "unknown link")
        recipient = await run_in_threadpool(_load_recipient, engine, config, send_key)
        if recipient is None:
            return _error(404, "unknown link")
        await run_in_threadpool(unsubscribe_once, recipient, now())
        return PlainTextResponse("You are unsubscribed.\n", headers=_PRIVATE_HEADERS)

    async def preferences_page(request: Request) -> Response:
        """The preference page: read only."""
        token = request.path_params["token"]
        send_key = send_key_of(token)
        recipient = await run_in_threadpool(_load_recipient, engine, config, send_key) if send_key else None
        if recipient is None:
            return _not_found_page()
        return _preference_page(recipient, token)

    def withdraw(recipient: _Recipient, families: list[str], moment: datetime) -> None:
        items = [
            InboundResponse(
                kind="unsubscribed", provider=WEB_PROVIDER,
                # The message's own family shares the one-click ref: unsubscribing twice
                # from one message, by either route, is one response.
                provider_ref=recipient.send_key if family == recipient.family else f"{recipient.send_key}:{family}",
                occurred_at=moment, send_key=recipient.send_key,
                # No family: the consent change is ours below, with the page as its source.
                payload={"method": "preference page", "family": family},
            )
            for family in families
        ]
        # Recorded first: should the consent write fail, a retry finds the family still
        # granted and withdraws it (the response then being a duplicate).
        record_responses(engine, items, now=moment)
        for family in families:
            set_consent(engine, customer_id=recipient.customer_id, family=family, status="withdrawn",
                        source=PREFERENCE_SOURCE, now=moment)

    async def save_preferences(request: Request) -> Response:
        """Withdraw consent on the unticked families."""
        token = request.path_params["token"]
        body = await _read_body(request)
        send_key = send_key_of(token)
        recipient = await run_in_threadpool(_load_recipient, engine, config, send_key) if send_key else None
        if recipient is None:
            return _not_found_page()
        fields = _form(request.headers.get("content-type"), body)
        if fields is None or fields.get("save") != ["1"]:
            # An empty POST must not read as "untick everything".
            return _error(400, "expected the preference form (save=1 and a family field per ticked channel)")
        ticked = set(fields.get("family", []))
        withdrawn = [f for f, status in recipient.consents.items() if status == "granted" and f not in ticked]
        if withdrawn:
            await run_in_threadpool(withdraw, recipient, withdrawn, now())
            recipient = await run_in_threadpool(_load_recipient, engine, config, send_key) or recipient
        return _preference_page(recipient, token, notice="Your preferences are saved.")

    # -- clicks and opens -----------------------------------------------------------------

    async def click(request: Request) -> Response:
        """Record a click and redirect to the signed URL."""
        secret = read_secret(config.api.link_secret_env)
        if secret is None:
            logger.warning("click refused: %s is not set, no click token can be verified", config.api.link_secret_env)
        verified = verify_click_token(request.path_params["token"], secret or "")
        if verified is None:
            return PlainTextResponse("Not found\n", status_code=404, headers=_PRIVATE_HEADERS)
        send_key, url = verified
        moment = now()
        item = InboundResponse(
            kind="clicked", provider=WEB_PROVIDER, provider_ref=click_ref(send_key, url), occurred_at=moment,
            send_key=send_key, payload={"url": mask_text(url)[:2048]},
        )
        try:
            await writer.record([item])
        except Exception:
            # The reader came for the page, not for our statistics.
            logger.exception("could not record a click")
        return RedirectResponse(url, status_code=302, headers=_PRIVATE_HEADERS)

    async def pixel(request: Request) -> Response:
        """Record an open; always a transparent GIF."""
        send_key = verify_open_token(request.path_params["token"], read_secret(config.api.link_secret_env) or "")
        if send_key is not None:
            moment = now()
            item = InboundResponse(kind="opened", provider=WEB_PROVIDER, provider_ref=send_key, occurred_at=moment,
                                   send_key=send_key)
            try:
                await writer.record([item])
            except Exception:
                logger.exception("could not record an open")
        return _gif()

    # -- bounces --------------------------------------------------------------------------

    def record_bounce(report: DsnReport, moment: datetime, secret: str) -> dict[str, Any] | None:
        """The summary of what was recorded, or None when the report names no message of ours."""
        matched = _match_delivery(engine, config, report, secret)
        if matched is None:
            return None
        planned = _bounce_items(report, matched, now=moment, ref_key=derive_key(secret, BOUNCE_REF_PURPOSE))
        items = [item for _, item, _, _ in planned if item is not None]
        results = iter(record_responses(engine, items, now=moment) if items else [])
        summary: list[dict[str, Any]] = []
        for recipient, item, ours, ignored in planned:
            entry: dict[str, Any] = {"recipient": mask_email(recipient.final_recipient), "status": recipient.status,
                                     "action": recipient.action, "severity": recipient.severity, "matched": ours}
            if item is None:
                entry["ignored"] = ignored
            else:
                result = next(results)
                entry.update(kind=item.kind, permanent=item.permanent, duplicate=result.duplicate,
                             suppressed=result.suppressed)
            summary.append(entry)
        recorded = [e for e in summary if "kind" in e]
        return {
            "recipients": summary,
            "recorded": sum(1 for e in recorded if not e["duplicate"]),
            "duplicates": sum(1 for e in recorded if e["duplicate"]),
            "suppressed": sum(1 for e in recorded if e["suppressed"]),
        }

    async def bounces(request: Request) -> Response:
        """Record a DSN (bounce) as received."""
        refused = bearer_refusal(request, key_env, api="bounce API")
        if refused is not None:
            return refused
        content_type = request.headers.get("content-type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in ("message/rfc822", "multipart/report"):
            return _error(415, "send the bounce as received, as message/rfc822 or multipart/report")
        secret = installation_secret(config)
        if secret is None:
            logger.warning("bounce refused: %s is not set (or shorter than %d characters), no bounce can be "
                           "verified", config.security.secret_env, MIN_SECRET_LENGTH)
            return _error(503, f"{config.security.secret_env} is not set (or shorter than {MIN_SECRET_LENGTH} "
                               "characters): bounces cannot be verified")
        body = await _read_body(request)
        try:
            report = parse_dsn(body, content_type=content_type)
        except DsnError as exc:
            return _error(400, str(exc))
        summary = await run_in_threadpool(record_bounce, report, now(), secret)
        if summary is None:
            return _error(422, "the bounce names none of our messages (no Message-ID or VERP tag signed with "
                               "this installation's secret); nothing was recorded")
        return JSONResponse(summary, status_code=202)

    def json_failure() -> Response:
        return _error(500, "internal error; please try again")

    def page_failure() -> Response:
        return _page("Something went wrong", "<p>We could not process this request. Please try again later.</p>",
                     status=500)

    return [
        Route("/u/{token}", _guarded(one_click, json_failure), methods=["POST"]),
        Route("/u/{token}", _guarded(preferences_page, page_failure), methods=["GET"]),
        Route("/u/{token}/preferences", _guarded(save_preferences, page_failure), methods=["POST"]),
        Route("/c/{token}", _guarded(click, lambda: PlainTextResponse("Not found\n", status_code=404)),
              methods=["GET"]),
        Route("/o/{token}.gif", _guarded(pixel, _gif), methods=["GET"]),
        Route("/bounces", _guarded(bounces, json_failure), methods=["POST"]),
    ]


def _gif() -> Response:
    return Response(PIXEL, media_type="image/gif", headers=_PRIVATE_HEADERS)
