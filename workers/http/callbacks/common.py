"""What the provider callbacks share (:mod:`.twilio`, :mod:`.aliyun`, :mod:`.tencent`,
:mod:`.wechat`): the refusal they raise, body limits, reading form and JSON pushes, provider
times, the shared token of unsigned pushes, the channel a URL names, and recording.

Each push becomes :class:`~campaigns.responses.recording.InboundResponse` items handed to
:func:`~campaigns.responses.recording.record_responses` (through the app's
:class:`~workers.http.batching.ResponseWriter`), which stores each response once (providers
retry their pushes, so the provider's own ids are the deduplication key), updates the
delivery and writes suppressions; a reply is checked for opt-out keywords there, in the
same transaction, so no queued send fires after a "TD". The ``payload`` handed over
carries no phone number and no message text (the domain keeps a reply's text, masked).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from starlette.requests import Request

from campaigns.config import jsonvalues
from campaigns.config.schema import AppConfig
from campaigns.config.secretvalues import read_secret
from campaigns.responses.recording import (
    EARLIEST_PROVIDER_TIME,
    LATEST_PROVIDER_TIME,
    InboundResponse,
)
from workers.http.batching import ResponseWriter
from workers.http.errors import BodyTooLarge, Refused, read_limited

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

#: The receiver's clock: returns aware UTC.
Clock = Callable[[], datetime]


class CallbackError(Refused):
    """A callback refused: ``status`` and a reason safe to return to the caller (the
    provider's routes answer it with :func:`~workers.http.errors.json_error`)."""


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



def json_field(item: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    """``item[key]``, a string or integer, as stripped text; None when absent and not
    ``required``; CallbackError(400) naming ``where`` for anything else or past
    :data:`MAX_FIELD_CHARS`."""
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



def channel_named(request: Request, config: AppConfig, kind: type, label: str | None = None) -> str:
    """The channel the URL's ``{channel}`` names, when ``config`` has one of options
    ``kind``; else CallbackError(404) naming the kind (``label``, by default the options
    class's name without ``Config``)."""
    name = request.path_params["channel"]
    if not isinstance(config.channels.get(name), kind):
        label = label or kind.__name__.removesuffix("Config").lower()
        raise CallbackError(404, f"no {label} channel named {name!r}")
    return name


async def record_or_refuse(writer: ResponseWriter, items: list[InboundResponse], *, logger: logging.Logger,
                           what: str | None = None,
                           refusal: str = "could not record the responses; retry later") -> None:
    """Record ``items`` (none: nothing to do); when that fails nothing of the request was
    recorded (one transaction): log it on ``logger`` (``what`` names the items; by default
    their number, as SMS responses) and refuse with 503 and ``refusal``, so the provider
    pushes again."""
    if not items:
        return
    try:
        await writer.record(items)
    except Exception:
        logger.exception("could not record %s", what or f"{len(items)} SMS response(s)")
        raise CallbackError(503, refusal) from None


async def unsigned_json_push(request: Request, config: AppConfig, kind: type, *,
                             array: bool) -> tuple[str, list[dict[str, Any]]]:
    """The channel and the items of a JSON push from a provider that signs nothing (Aliyun,
    Tencent): the ``?token=`` is checked first, so strangers cannot probe channel names,
    then the channel (of options ``kind``) and the body (:func:`parse_json_items`)."""
    check_callback_token(request, config.api.callback_token_env)
    name = channel_named(request, config, kind)
    return name, parse_json_items(await read_body(request), array=array)
