"""Twilio's callbacks (CHANNELS.md §5), the inbound side of :mod:`workers.channels.sms.twilio`.

:func:`twilio_routes`: ``POST /callbacks/twilio/{channel}/status`` (status callback) and
``POST /callbacks/twilio/{channel}/inbound`` (incoming message), both form-encoded and
verified with ``X-Twilio-Signature`` against the auth token of the channel.

The Twilio signature covers the URL Twilio called. This module verifies against the URL
of the request as the server sees it (scheme, ``Host`` header, path and query); behind a
TLS-terminating proxy run uvicorn with ``--proxy-headers`` so the scheme is the public
one. (``[api]`` has no ``public_url`` key yet; when it gets one it should replace the
request's scheme and host here.)
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from base64 import b64encode
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from campaigns.config.options.twilio import TwilioConfig
from campaigns.config.schema import AppConfig
from campaigns.config.secretvalues import read_secret
from campaigns.responses.recording import InboundResponse
from workers.channels.sms.twilio import TWILIO_SUPPRESS
from workers.http.batching import ResponseWriter
from workers.http.callbacks.common import (
    MAX_FIELD_CHARS,
    CallbackError,
    Clock,
    channel_named,
    parse_form,
    read_body,
    record_or_refuse,
)
from workers.http.errors import answering_refusals

logger = logging.getLogger("nurture.receivers.sms")

#: Twilio statuses that are recorded, and as what; the others (queued, sending, sent,
#: accepted, scheduled, read, canceled, ...) are intermediate or not a delivery outcome.
TWILIO_KINDS = {"delivered": "delivered", "undelivered": "undelivered", "failed": "undelivered"}

#: The empty TwiML answer: Twilio sends no automatic reply to an inbound message.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def twilio_signature(auth_token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """Twilio's ``X-Twilio-Signature`` for a form POST to ``url``: base64 of
    HMAC-SHA1(auth token, url + every key followed by its value, keys sorted, and a key's
    distinct values sorted), as twilio-python's ``RequestValidator.compute_signature``."""
    values: dict[str, set[str]] = {}
    for key, value in params:
        values.setdefault(key, set()).add(value)
    text = url + "".join(key + value for key in sorted(values) for value in sorted(values[key]))
    digest = hmac.new(auth_token.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return b64encode(digest).decode("ascii")


def twilio_signature_valid(auth_token: str, url: str, params: Sequence[tuple[str, str]],
                           signature: str) -> bool:
    """True when ``signature`` is Twilio's for ``url`` and ``params``, compared in constant
    time. Like twilio-python, the URL is tried without its port and with the scheme's
    default port, since Twilio signs ``https://host/...`` and ``https://host:443/...``
    inconsistently."""
    given = signature.strip().encode("utf-8")
    return any(hmac.compare_digest(twilio_signature(auth_token, candidate, params).encode("ascii"), given)
               for candidate in _with_and_without_port(url))


def _with_and_without_port(url: str) -> list[str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    if parts.username or parts.password:  # Twilio can call https://user:pass@host/ (basic auth)
        userinfo = parts.netloc.rpartition("@")[0]
        host = f"{userinfo}@{host}"
    default_port = 443 if parts.scheme == "https" else 80
    without = parts._replace(netloc=host).geturl()
    with_port = parts._replace(netloc=f"{host}:{parts.port or default_port}").geturl()
    return [without, with_port] if with_port != without else [without]



def _form_value(fields: Sequence[tuple[str, str]], key: str) -> str | None:
    for name, value in fields:
        if name == key:
            return value
    return None


def _required(fields: Sequence[tuple[str, str]], key: str) -> str:
    value = _form_value(fields, key)
    if not value:
        raise CallbackError(400, f"{key}: required")
    if len(value) > MAX_FIELD_CHARS:
        raise CallbackError(400, f"{key}: longer than {MAX_FIELD_CHARS} characters")
    return value


def parse_twilio_status(fields: Sequence[tuple[str, str]], *, channel: str,
                        received_at: datetime) -> InboundResponse | None:
    """The response a Twilio status callback reports, or None for a status that is not an
    outcome (queued, sent, ...). ``received_at``: the callback carries no event time."""
    sid = _required(fields, "MessageSid")
    status = _required(fields, "MessageStatus").strip().lower()
    kind = TWILIO_KINDS.get(status)
    if kind is None:
        return None
    code = (_form_value(fields, "ErrorCode") or "").strip() or None
    if code is not None and not (code.isascii() and code.isdigit() and len(code) <= 9):
        # Twilio's error codes are 5-digit numbers; int() of 4,301 digits would raise.
        raise CallbackError(400, "ErrorCode: expected Twilio's numeric error code")
    permanent = kind == "undelivered" and code is not None and int(code) in TWILIO_SUPPRESS
    payload: dict[str, Any] = {"channel": channel, "status": status}
    if code is not None:
        payload["error_code"] = code
    account = _form_value(fields, "AccountSid")
    if account:
        payload["account_sid"] = account
    return InboundResponse(
        kind=kind, provider="twilio", provider_ref=f"{sid}:{status}", occurred_at=received_at,
        provider_message_id=sid, address=_form_value(fields, "To") or None, family="sms",
        error=None if kind == "delivered" else (code or status), permanent=permanent, payload=payload,
    )


def parse_twilio_inbound(fields: Sequence[tuple[str, str]], *, channel: str,
                         received_at: datetime) -> InboundResponse:
    """The reply an incoming Twilio message is: who wrote (``From``) and what (``Body``),
    deduplicated on its ``MessageSid``."""
    sid = _required(fields, "MessageSid")
    sender = _required(fields, "From")
    payload: dict[str, Any] = {"channel": channel, "message_sid": sid}
    for key, name in (("AccountSid", "account_sid"), ("NumSegments", "num_segments"), ("NumMedia", "num_media")):
        value = _form_value(fields, key)
        if value:
            payload[name] = value
    return InboundResponse(
        kind="replied", provider="twilio", provider_ref=sid, occurred_at=received_at,
        address=sender.strip(), family="sms", text=_form_value(fields, "Body") or "", payload=payload,
    )


def twilio_routes(*, config: AppConfig, clock: Clock, writer: ResponseWriter) -> list[Route]:
    """The Twilio callback routes (see the module docstring) for the ``twilio`` channels of
    ``config``; responses are recorded by ``writer`` at ``clock()``, which must be aware UTC."""

    async def twilio_fields(request: Request) -> tuple[str, list[tuple[str, str]]]:
        name = channel_named(request, config, TwilioConfig)
        options = config.channels[name]
        assert isinstance(options, TwilioConfig)
        token = read_secret(options.auth_token_env)
        if token is None:
            raise CallbackError(503, f"cannot verify Twilio callbacks: the environment variable "
                                     f"{options.auth_token_env} (channels.{name}.auth_token_env) is not set")
        body = await read_body(request)
        fields = parse_form(body)
        signature = request.headers.get("x-twilio-signature", "")
        # Verified before anything in the body is believed.
        if not signature or not twilio_signature_valid(token, str(request.url), fields, signature):
            raise CallbackError(403, "missing or wrong X-Twilio-Signature")
        return name, fields

    async def twilio_status(request: Request) -> Response:
        """Twilio status callback: delivered and undelivered/failed are recorded."""
        name, fields = await twilio_fields(request)
        now = clock()
        item = parse_twilio_status(fields, channel=name, received_at=now)
        await record_or_refuse(writer, [item] if item else [], logger=logger)
        return Response(status_code=200)

    async def twilio_inbound(request: Request) -> Response:
        """Twilio incoming message: recorded as a reply; answered with empty TwiML."""
        name, fields = await twilio_fields(request)
        now = clock()
        reply = parse_twilio_inbound(fields, channel=name, received_at=now)
        await record_or_refuse(writer, [reply], logger=logger)
        return Response(EMPTY_TWIML, media_type="text/xml")

    return [
        Route("/callbacks/twilio/{channel}/status", answering_refusals(twilio_status), methods=["POST"]),
        Route("/callbacks/twilio/{channel}/inbound", answering_refusals(twilio_inbound), methods=["POST"]),
    ]
