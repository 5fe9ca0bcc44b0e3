"""Callbacks of the SMS providers: delivery receipts and replies (issue #7).

:func:`sms_routes` returns Starlette routes for

* Twilio (CHANNELS.md §5): ``POST /callbacks/twilio/{channel}/status`` (status callback)
  and ``POST /callbacks/twilio/{channel}/inbound`` (incoming message), both form-encoded
  and verified with ``X-Twilio-Signature`` against the auth token of the channel;
* Aliyun Dysms (§3): ``POST /callbacks/aliyun/{channel}/report`` (SmsReport) and
  ``POST /callbacks/aliyun/{channel}/up`` (SmsUp), JSON arrays;
* Tencent Cloud SMS (§4): ``POST /callbacks/tencent/{channel}/status`` (receipt, a JSON
  array) and ``POST /callbacks/tencent/{channel}/reply`` (one JSON object).

Aliyun and Tencent do not sign their pushes, so their URLs carry a shared secret,
``?token=<value of NURTURE_CALLBACK_TOKEN>``; while that variable is unset they answer
503 rather than accept pushes from anyone.

Each push becomes :class:`~campaigns.responses.recording.InboundResponse` items handed to
:func:`~campaigns.responses.recording.record_responses`, which stores each response once (providers
retry their pushes, so the provider's own ids are the deduplication key), updates the
delivery and writes suppressions; a reply is checked for opt-out keywords there, in the
same transaction, so no queued send fires after a "TD". The ``payload`` handed over
carries no phone number and no message text (the domain keeps a reply's text, masked).

The Twilio signature covers the URL Twilio called. This module verifies against the URL
of the request as the server sees it (scheme, ``Host`` header, path and query); behind a
TLS-terminating proxy run uvicorn with ``--proxy-headers`` so the scheme is the public
one. (``[api]`` has no ``public_url`` key yet; when it gets one it should replace the
request's scheme and host here.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from base64 import b64encode
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from campaigns.config.options.sms import AliyunSmsConfig, TencentSmsConfig, TwilioConfig
from campaigns.config import jsonvalues
from campaigns.config.schema import AppConfig
from campaigns.config.secretvalues import read_secret
from campaigns.responses.recording import EARLIEST_PROVIDER_TIME, LATEST_PROVIDER_TIME, InboundResponse
from workers.channels.sms import ALIYUN_SUPPRESS, TENCENT_SUPPRESS, TWILIO_SUPPRESS
from workers.http.batching import ResponseWriter
from workers.http.errors import BodyTooLarge, read_limited

logger = logging.getLogger("nurture.receivers.sms")

#: Environment variable holding the shared secret Aliyun and Tencent push URLs carry as
#: ``?token=``; the providers sign nothing, so this is what keeps strangers out.
CALLBACK_TOKEN_ENV = "NURTURE_CALLBACK_TOKEN"
#: Largest callback body accepted, in bytes. Providers batch receipts, but a push of
#: 1 MiB is already thousands of them.
MAX_BODY_BYTES = 1024 * 1024
#: Most items accepted in one JSON push or form fields in one Twilio request.
MAX_ITEMS = 10_000
#: Longest identifier or code accepted in a push (message ids, phone numbers, error
#: codes): providers' are under 64 characters, and the dedupe key that holds them has 256.
MAX_FIELD_CHARS = 128
#: Provider times outside this window are refused (the window every receiver shares).
EARLIEST_TIME, LATEST_TIME = EARLIEST_PROVIDER_TIME, LATEST_PROVIDER_TIME

#: Aliyun and Tencent stamp their times in Beijing time without an offset.
CHINA_ZONE = ZoneInfo("Asia/Shanghai")
#: Twilio statuses that are recorded, and as what; the others (queued, sending, sent,
#: accepted, scheduled, read, canceled, ...) are intermediate or not a delivery outcome.
TWILIO_KINDS = {"delivered": "delivered", "undelivered": "undelivered", "failed": "undelivered"}

#: The empty TwiML answer: Twilio sends no automatic reply to an inbound message.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
#: What Aliyun expects back from a push it should not retry.
ALIYUN_OK = {"code": 0, "msg": "成功"}
#: What Tencent expects back from a push it should not retry.
TENCENT_OK = {"result": 0, "errmsg": "OK"}

#: The receiver's clock: returns aware UTC.
Clock = Callable[[], datetime]


class CallbackError(Exception):
    """A callback refused: ``status`` and a reason safe to return to the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- Twilio


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


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """The fields of an ``application/x-www-form-urlencoded`` body, in order, repeated keys
    kept (the signature covers every value); CallbackError(400) when it is not UTF-8."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise CallbackError(400, "form body is not UTF-8") from None
    try:
        fields = parse_qsl(text, keep_blank_values=True, strict_parsing=False, encoding="utf-8",
                           errors="strict", max_num_fields=MAX_ITEMS)
    except UnicodeDecodeError:
        raise CallbackError(400, "form body is not UTF-8 once percent-decoded") from None
    except ValueError as exc:
        raise CallbackError(400, f"unreadable form body: {exc}") from None
    for name, value in fields:
        if "\x00" in name or "\x00" in value:
            raise CallbackError(400, f"{field_name(name)}: contains a NUL character, which cannot be stored")
    return fields


def field_name(name: str) -> str:
    """A field's name as error messages show it: only when short and printable."""
    return jsonvalues.shown_name(name, "<field>")


def time_in_range(moment: datetime, where: str) -> datetime:
    """``moment`` when within :data:`EARLIEST_TIME` and :data:`LATEST_TIME`; else
    CallbackError(400) naming ``where``."""
    if not EARLIEST_TIME <= moment < LATEST_TIME:
        raise out_of_range(where)
    return moment


def unix_time(digits: str, where: str) -> datetime:
    """Unix seconds written in decimal digits, as aware UTC within :data:`EARLIEST_TIME`..
    :data:`LATEST_TIME`; CallbackError(400) naming ``where`` otherwise."""
    if not (digits.isascii() and digits.isdigit()):
        raise CallbackError(400, f"{where}: expected unix seconds")
    if len(digits) > 12:  # past year 33658; int() of 4,301 digits would raise
        raise out_of_range(where)
    try:
        return time_in_range(datetime.fromtimestamp(int(digits), UTC), where)
    except (OverflowError, OSError, ValueError):
        raise out_of_range(where) from None


def out_of_range(where: str) -> CallbackError:
    """The refusal of a time outside :data:`EARLIEST_TIME`..:data:`LATEST_TIME`."""
    return CallbackError(400, f"{where}: out of range (expected a time between "
                              f"{EARLIEST_TIME.year} and {LATEST_TIME.year})")


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


# --------------------------------------------------------------------------- Aliyun and Tencent


def parse_json_items(body: bytes, *, array: bool) -> list[dict[str, Any]]:
    """The objects of a JSON push: a non-empty array of objects (``array``) or one object;
    CallbackError(400) otherwise, also for a value that could not be stored (NaN,
    Infinity, an integer beyond 64 bits, a NUL character, a lone surrogate, nesting
    deeper than :data:`campaigns.config.jsonvalues.MAX_JSON_DEPTH`), naming the field."""
    try:
        payload = jsonvalues.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CallbackError(400, f"invalid JSON: {exc}") from None
    except jsonvalues.UnstorableValue as exc:
        raise CallbackError(400, str(exc)) from None
    items = payload if array else [payload]
    if not isinstance(items, list) or (array and not items):
        raise CallbackError(400, "expected a non-empty JSON array of objects")
    if len(items) > MAX_ITEMS:
        raise CallbackError(413, f"{len(items)} items in one push; at most {MAX_ITEMS}")
    for position, item in enumerate(items):
        where = f"item {position}" if array else "body"
        if not isinstance(item, dict):
            raise CallbackError(400, f"{where}: expected a JSON object")
        try:
            jsonvalues.check(item, where)
        except jsonvalues.UnstorableValue as exc:
            raise CallbackError(400, str(exc)) from None
    return items


def _text(item: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        if required or value is not None:
            raise CallbackError(400, f"{where}.{key}: {'required' if value is None else 'expected a string'}")
        return None
    text = str(value).strip()
    if not text and required:
        raise CallbackError(400, f"{where}.{key}: required")
    if len(text) > MAX_FIELD_CHARS:
        raise CallbackError(400, f"{where}.{key}: longer than {MAX_FIELD_CHARS} characters")
    return text or None


def china_time(value: Any, fallback: datetime, *, where: str = "time") -> datetime:
    """A provider time written ``YYYY-MM-DD HH:MM:SS`` in Beijing time, as aware UTC;
    ``fallback`` when absent or unreadable (a receipt is still worth keeping);
    CallbackError(400) naming ``where`` for a readable time outside
    :data:`EARLIEST_TIME`..:data:`LATEST_TIME` (year 0001 included)."""
    if isinstance(value, str):
        try:
            local = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return fallback
        try:
            moment = local.replace(tzinfo=CHINA_ZONE).astimezone(UTC)
        except OverflowError:  # 0001-01-01 00:00 in Beijing would be year 0 in UTC
            raise out_of_range(where) from None
        return time_in_range(moment, where)
    return fallback


def aliyun_phone(number: str) -> str:
    """E.164 of a number as Aliyun writes it: a bare 11-digit mainland mobile gets ``+86``;
    a number already written with ``+`` is kept; other digits are taken to start with
    their country code (Aliyun's international numbers)."""
    number = number.strip()
    if number.startswith("+"):
        return number
    if len(number) == 11 and number.startswith("1"):
        return "+86" + number
    return "+" + number


def parse_aliyun_report(items: Sequence[Mapping[str, Any]], *, channel: str,
                        received_at: datetime) -> list[InboundResponse]:
    """Responses of an Aliyun SmsReport push: ``success`` true is delivered, false
    undelivered (permanent for the blacklist and invalid-number codes, which suppress);
    deduplicated on (``biz_id``, ``phone_number``, ``err_code``) as Aliyun advises."""
    responses = []
    for position, item in enumerate(items):
        where = f"item {position}"
        biz_id = _text(item, "biz_id", where)
        phone = _text(item, "phone_number", where)
        code = _text(item, "err_code", where, required=False) or ""
        success = item.get("success")
        if isinstance(success, str) and success.lower() in ("true", "false"):
            success = success.lower() == "true"  # tolerate a stringly-typed flag
        if not isinstance(success, bool):
            raise CallbackError(400, f"{where}.success: expected true or false")
        kind = "delivered" if success else "undelivered"
        payload = {"channel": channel, "biz_id": biz_id, "err_code": code}
        for key in ("err_msg", "sms_size", "send_time", "report_time"):
            if isinstance(item.get(key), (str, int)) and not isinstance(item.get(key), bool):
                payload[key] = item[key]
        responses.append(InboundResponse(
            # CHANNELS.md dedupes on (biz_id, phone_number, err_code); the number is kept as a
            # digest so the key holds no personal data (one BizId may cover many numbers).
            kind=kind, provider="aliyun",
            provider_ref=f"{biz_id}:{hashlib.sha256((phone or '').encode()).hexdigest()[:16]}:{code}",
            occurred_at=china_time(item.get("report_time"), received_at, where=f"{where}.report_time"),
            provider_message_id=biz_id, send_key=_text(item, "out_id", where, required=False),
            address=aliyun_phone(phone or ""), family="sms",
            error=None if success else (code or "UNDELIVERED"),
            permanent=not success and code in ALIYUN_SUPPRESS, payload=payload,
        ))
    return responses


def parse_aliyun_up(items: Sequence[Mapping[str, Any]], *, channel: str,
                    received_at: datetime) -> list[InboundResponse]:
    """Replies of an Aliyun SmsUp push, deduplicated on ``sequence_id``."""
    responses = []
    for position, item in enumerate(items):
        where = f"item {position}"
        sequence = _text(item, "sequence_id", where)
        phone = _text(item, "phone_number", where)
        content = item.get("content")
        if not isinstance(content, str):
            raise CallbackError(400, f"{where}.content: expected a string")
        payload = {"channel": channel, "sequence_id": sequence}
        for key in ("dest_code", "sign_name", "send_time"):
            if isinstance(item.get(key), (str, int)) and not isinstance(item.get(key), bool):
                payload[key] = item[key]
        responses.append(InboundResponse(
            kind="replied", provider="aliyun", provider_ref=str(sequence),
            occurred_at=china_time(item.get("send_time"), received_at, where=f"{where}.send_time"),
            address=aliyun_phone(phone or ""), family="sms", text=content, payload=payload,
        ))
    return responses


def tencent_phone(nationcode: str | None, mobile: str) -> str:
    """E.164 of a Tencent ``nationcode`` + ``mobile`` pair (nationcode 86 when absent)."""
    mobile = mobile.strip()
    if mobile.startswith("+"):
        return mobile
    return "+" + (nationcode or "86").strip().lstrip("+") + mobile


def parse_tencent_status(items: Sequence[Mapping[str, Any]], *, channel: str,
                         received_at: datetime) -> list[InboundResponse]:
    """Responses of a Tencent receipt push: ``report_status`` SUCCESS is delivered, FAIL
    undelivered; deduplicated on (``sid``, ``report_status``)."""
    responses = []
    for position, item in enumerate(items):
        where = f"item {position}"
        sid = _text(item, "sid", where)
        status = (_text(item, "report_status", where) or "").upper()
        if status not in ("SUCCESS", "FAIL"):
            raise CallbackError(400, f"{where}.report_status: expected SUCCESS or FAIL")
        mobile = _text(item, "mobile", where)
        nationcode = _text(item, "nationcode", where, required=False)
        errmsg = _text(item, "errmsg", where, required=False) or ""
        delivered = status == "SUCCESS"
        payload = {"channel": channel, "sid": sid, "report_status": status, "errmsg": errmsg}
        for key in ("description", "user_receive_time"):
            if isinstance(item.get(key), str):
                payload[key] = item[key]
        # ``ext`` is the SessionContext we sent (our send key) when Tencent echoes it.
        ext = item.get("ext")
        responses.append(InboundResponse(
            kind="delivered" if delivered else "undelivered", provider="tencent",
            provider_ref=f"{sid}:{status}",
            occurred_at=china_time(item.get("user_receive_time"), received_at, where=f"{where}.user_receive_time"),
            provider_message_id=sid, send_key=(ext.strip() or None) if isinstance(ext, str) else None,
            address=tencent_phone(nationcode, mobile or ""), family="sms",
            error=None if delivered else (errmsg or status),
            permanent=not delivered and errmsg in TENCENT_SUPPRESS, payload=payload,
        ))
    return responses


def parse_tencent_reply(item: Mapping[str, Any], *, channel: str, received_at: datetime) -> InboundResponse:
    """The reply of a Tencent reply push. Tencent gives it no id, so the deduplication key
    is a digest of who wrote, when and what (a retried push repeats all three) and keeps
    neither the number nor the text in the database."""
    mobile = _text(item, "mobile", "body")
    nationcode = _text(item, "nationcode", "body", required=False)
    text = item.get("text")
    if not isinstance(text, str):
        raise CallbackError(400, "body.text: expected a string")
    sent = item.get("time")
    digits = str(sent).strip() if isinstance(sent, (int, str)) and not isinstance(sent, bool) else ""
    occurred_at = unix_time(digits, "body.time")
    seconds = int(digits)
    address = tencent_phone(nationcode, mobile or "")
    ref = hashlib.sha256(f"{address}\x00{seconds}\x00{text}".encode()).hexdigest()
    payload: dict[str, Any] = {"channel": channel, "time": seconds}
    for key in ("extend", "sign"):
        if isinstance(item.get(key), str):
            payload[key] = item[key]
    return InboundResponse(
        kind="replied", provider="tencent", provider_ref=ref, occurred_at=occurred_at,
        address=address, family="sms", text=text, payload=payload,
    )


# --------------------------------------------------------------------------- routes


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request) -> bytes:
    """The request body, CallbackError(413) past :data:`MAX_BODY_BYTES`; read in chunks so
    an oversized body (even one without Content-Length) is never held whole."""
    try:
        return await read_limited(request, MAX_BODY_BYTES)
    except BodyTooLarge:
        raise CallbackError(413, f"request body larger than {MAX_BODY_BYTES} bytes") from None


def check_callback_token(request: Request, env: str = CALLBACK_TOKEN_ENV) -> None:
    """Refuse an unsigned push (Aliyun, Tencent) whose ``?token=`` is not the value of the
    environment variable ``env`` (``[api] callback_token_env``): 503 while it is unset,
    else 403."""
    expected = read_secret(env)
    if expected is None:
        raise CallbackError(503, f"SMS callbacks disabled: set the environment variable {env} "
                                 "and append ?token=<its value> to the callback URLs configured at the provider")
    given = request.query_params.get("token", "")
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise CallbackError(403, "missing or wrong callback token")


def sms_routes(*, config: AppConfig, engine: Engine, clock: Clock,
               writer: ResponseWriter | None = None) -> list[Route]:
    """The SMS callback routes (see the module docstring) for the channels of ``config``;
    responses are recorded through ``engine`` at ``clock()``, which must be aware UTC, by
    ``writer`` (the app's shared one; else a writer of these routes' own)."""
    writer = writer or ResponseWriter(engine=engine, clock=clock)

    def channel_of(request: Request, kind: type) -> str:
        name = request.path_params["channel"]
        if not isinstance(config.channels.get(name), kind):
            raise CallbackError(404, f"no {kind.__name__.removesuffix('Config').lower()} channel named {name!r}")
        return name

    async def record(items: list[InboundResponse]) -> None:
        if not items:
            return
        try:
            await writer.record(items)
        except Exception:
            # Nothing of this request was recorded: a 503 makes the provider push again.
            logger.exception("could not record %d SMS response(s)", len(items))
            raise CallbackError(503, "could not record the responses; retry later") from None

    def endpoint(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except CallbackError as refused:
                return _error(refused.status, refused.message)
        run.__name__ = run.__qualname__ = handler.__name__
        run.__doc__ = handler.__doc__
        return run

    async def twilio_fields(request: Request) -> tuple[str, list[tuple[str, str]]]:
        name = channel_of(request, TwilioConfig)
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
        await record([item] if item else [])
        return Response(status_code=200)

    async def twilio_inbound(request: Request) -> Response:
        """Twilio incoming message: recorded as a reply; answered with empty TwiML."""
        name, fields = await twilio_fields(request)
        now = clock()
        await record([parse_twilio_inbound(fields, channel=name, received_at=now)])
        return Response(EMPTY_TWIML, media_type="text/xml")

    async def china_items(request: Request, kind: type, *, array: bool) -> tuple[str, list[dict[str, Any]]]:
        check_callback_token(request, config.api.callback_token_env)  # before the channel, so strangers cannot probe names
        name = channel_of(request, kind)
        return name, parse_json_items(await read_body(request), array=array)

    async def aliyun_report(request: Request) -> Response:
        """Aliyun SmsReport push (JSON array of receipts)."""
        name, items = await china_items(request, AliyunSmsConfig, array=True)
        now = clock()
        await record(parse_aliyun_report(items, channel=name, received_at=now))
        return JSONResponse(ALIYUN_OK)

    async def aliyun_up(request: Request) -> Response:
        """Aliyun SmsUp push (JSON array of replies)."""
        name, items = await china_items(request, AliyunSmsConfig, array=True)
        now = clock()
        await record(parse_aliyun_up(items, channel=name, received_at=now))
        return JSONResponse(ALIYUN_OK)

    async def tencent_status(request: Request) -> Response:
        """Tencent receipt push (JSON array)."""
        name, items = await china_items(request, TencentSmsConfig, array=True)
        now = clock()
        await record(parse_tencent_status(items, channel=name, received_at=now))
        return JSONResponse(TENCENT_OK)

    async def tencent_reply(request: Request) -> Response:
        """Tencent reply push (one JSON object)."""
        name, items = await china_items(request, TencentSmsConfig, array=False)
        now = clock()
        await record([parse_tencent_reply(items[0], channel=name, received_at=now)])
        return JSONResponse(TENCENT_OK)

    return [
        Route("/callbacks/twilio/{channel}/status", endpoint(twilio_status), methods=["POST"]),
        Route("/callbacks/twilio/{channel}/inbound", endpoint(twilio_inbound), methods=["POST"]),
        Route("/callbacks/aliyun/{channel}/report", endpoint(aliyun_report), methods=["POST"]),
        Route("/callbacks/aliyun/{channel}/up", endpoint(aliyun_up), methods=["POST"]),
        Route("/callbacks/tencent/{channel}/status", endpoint(tencent_status), methods=["POST"]),
        Route("/callbacks/tencent/{channel}/reply", endpoint(tencent_reply), methods=["POST"]),
    ]
