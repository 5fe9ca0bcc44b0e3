"""WeChat Official Account message pushes: receipts, unfollows and replies (issue #7).

:func:`wechat_routes` returns Starlette routes for the "server URL" (服务器配置) of a
``wechat_oa`` channel, ``/callbacks/wechat/{channel}``:

* ``GET``: WeChat's URL verification when an operator saves the server configuration:
  ``?signature=&timestamp=&nonce=&echostr=``; a valid signature is answered with
  ``echostr`` verbatim (text/plain), anything else with 403.
* ``POST``: a message push: an XML document signed in the query string the same way,
  plaintext or encrypted (below). Recorded (CHANNELS.md §2b):

  - ``MsgType=event``, ``Event=TEMPLATESENDJOBFINISH``: the receipt of a template message,
    ``Status`` ``success`` (delivered), ``failed:user block`` (blocked: the openid is
    suppressed and its wechat consent withdrawn) or ``failed:system failed`` (undelivered);
    matched to the delivery through ``MsgID``, the ``msgid`` the channel stored;
  - ``MsgType=event``, ``Event=unsubscribe``: the user unfollowed the account (consent on
    the wechat family withdrawn);
  - ``MsgType=text``: a message the user wrote, a reply; an opt-out word (``退订``, ``TD``
    ...) suppresses the openid.

  Everything else (other events, images, voice ...) is answered and not recorded.

The signature (WeChat's documented algorithm, as wechatpy's ``check_signature``;
:func:`~workers.http.callbacks.wechat_crypto.wechat_signature`) is the hex SHA-1 of
``token``, ``timestamp`` and ``nonce`` sorted and concatenated. ``token`` is
the one an operator types into the account's server configuration; the channel options
have no field for it, so it is read from the environment variable
:data:`WECHAT_PUSH_TOKEN_ENV` (one token for every ``wechat_oa`` channel); while it is
unset the routes answer 503 rather than accept pushes from anyone.

In plaintext mode the signature covers the query string only, not the body: whoever sees
one signed URL could post any XML with it. Timestamps further than
:data:`MAX_TIMESTAMP_SKEW` from our clock are therefore refused too. In encrypted mode
(安全模式 and 兼容模式, ``encrypt_type=aes``) the push is opened with the account's
EncodingAESKey (``[api] wechat_aes_key_env``) after its ``msg_signature``, which covers
the ciphertext, is checked (:mod:`workers.http.callbacks.wechat_crypto`); the plaintext
fields a 兼容模式 push also carries are ignored, only the encrypted ones are believed.
The answer ``success`` needs no encryption in either mode.

WeChat waits 5 s for an answer and otherwise pushes again (three tries in all); the
answer ``success`` tells it the push was handled and makes it show the user nothing. A
push is recorded once: the dedupe key is ``MsgID`` + ``Status`` for receipts, ``MsgId``
for messages.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from xml.etree import ElementTree

from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from campaigns.config.options.wechat import WeChatOAChannelConfig
from campaigns.config.schema import AppConfig
from campaigns.config.secretvalues import read_secret
from campaigns.responses.recording import InboundResponse
from workers.http.batching import ResponseWriter
from workers.http.callbacks.common import (
    MAX_BODY_BYTES,
    MAX_FIELD_CHARS,
    CallbackError,
    Clock,
    channel_named,
    read_body,
    record_or_refuse,
    unix_time,
)
from workers.http.callbacks.wechat_crypto import (
    PushDecryptError,
    aes_key,
    decrypt_push,
    msg_signature_valid,
    wechat_signature_valid,
)
from workers.http.errors import answering_refusals

logger = logging.getLogger("nurture.receivers.wechat")

#: Environment variable holding the Token of the account's server configuration
#: (公众号 基本配置 -> 服务器配置 -> 令牌); ``WeChatOAChannelConfig`` has no field for it.
WECHAT_PUSH_TOKEN_ENV = "NURTURE_WECHAT_TOKEN"
#: Largest push accepted, in bytes (a WeChat push is well under 10 KiB).
MAX_XML_BYTES = MAX_BODY_BYTES
#: Signed timestamps further than this from our clock are refused: in plaintext mode the
#: signature does not cover the body, so an old signed URL must not stay usable. WeChat's
#: own retries come within seconds of the first try.
MAX_TIMESTAMP_SKEW = timedelta(minutes=5)
#: What WeChat expects back from a push it should not retry (it then shows the user nothing).
SUCCESS = "success"
#: Deepest element nesting accepted (WeChat's deepest event, a picture push, has 4 levels).
MAX_XML_DEPTH = 16
#: The encodings a push may declare: WeChat sends UTF-8, and expat cannot read multi-byte
#: encodings such as gb2312 anyway.
XML_ENCODINGS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_DECLARED_ENCODING = re.compile(rb"""\A(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?\bencoding\s*=\s*["']([^"']{0,64})["']""")

#: The TEMPLATESENDJOBFINISH ``Status`` (as :func:`normalize_status` writes it) of a user
#: who refuses the account's messages: recorded as blocked, which suppresses the openid.
#: ``success`` is delivered; any other status is undelivered (``failed:system failed``).
USER_BLOCK = "failed:user block"

# --------------------------------------------------------------------------- signature


def check_push_signature(request: Request, now: datetime, env: str = WECHAT_PUSH_TOKEN_ENV) -> None:
    """Refuse a request whose query string is not signed with the token held by the
    environment variable ``env`` (``[api] wechat_token_env``): 503 while it is unset, 403
    for a missing or wrong signature or a timestamp more than :data:`MAX_TIMESTAMP_SKEW`
    from ``now``."""
    token = read_secret(env)
    if token is None:
        raise CallbackError(503, f"WeChat pushes disabled: set the environment variable {env} "
                                 "to the Token of the account's server configuration")
    query = request.query_params
    signature, timestamp, nonce = query.get("signature", ""), query.get("timestamp", ""), query.get("nonce", "")
    if not signature or not timestamp or not wechat_signature_valid(token, timestamp, nonce, signature):
        raise CallbackError(403, "missing or wrong signature")
    # Checked after the signature, so a stranger learns nothing about our clock.
    readable = timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12  # int() of 4,301 digits raises
    if not readable or abs(int(timestamp) - now.timestamp()) > MAX_TIMESTAMP_SKEW.total_seconds():
        raise CallbackError(403, "timestamp too far from the current time")


# --------------------------------------------------------------------------- XML


class _DoctypeRefused(Exception):
    """Raised by :class:`_RefuseDoctype` to abort a parse."""


class _TooDeep(Exception):
    """Raised by :class:`_RefuseDoctype` past :data:`MAX_XML_DEPTH`."""


class _RefuseDoctype(ElementTree.TreeBuilder):
    """A tree builder that aborts the parse at the first DOCTYPE declaration, and past
    :data:`MAX_XML_DEPTH` levels of elements.

    Entity declarations (billion laughs, external entities) can only appear inside a
    DOCTYPE, and expat reports its start before reading the internal subset, so nothing
    is ever expanded. This holds whatever encoding the document claims."""

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        """Called by the parser at ``<!DOCTYPE``: refuse."""
        raise _DoctypeRefused

    def start(self, tag: str, attrs: dict[str, str]) -> ElementTree.Element:
        """An element opens: refused past :data:`MAX_XML_DEPTH`."""
        self._depth += 1
        if self._depth > MAX_XML_DEPTH:
            raise _TooDeep
        return super().start(tag, attrs)

    def end(self, tag: str) -> ElementTree.Element:
        """An element closes."""
        self._depth -= 1
        return super().end(tag)


def parse_push(body: bytes) -> dict[str, str]:
    """The fields of a WeChat push, ``<xml><Name>value</Name>...</xml>``, as a dict of the
    root's children (text stripped of surrounding whitespace; nested elements, which some
    events carry, are ignored). CallbackError(413) past :data:`MAX_XML_BYTES`, (400) for
    anything that is not such a document, including any DOCTYPE or ENTITY declaration."""
    if len(body) > MAX_XML_BYTES:
        raise CallbackError(413, f"request body larger than {MAX_XML_BYTES} bytes")
    declared = _DECLARED_ENCODING.match(body)
    if declared is not None:
        encoding = declared.group(1).decode("ascii", "replace").strip()
        if encoding.lower() not in XML_ENCODINGS:
            shown = encoding if encoding.isprintable() else "?"
            raise CallbackError(400, f"XML encoding {shown!r} is not supported: WeChat pushes are UTF-8")
    lowered = body.lower()
    # A clear message for the plain case; _RefuseDoctype also covers encodings that hide it.
    if b"<!doctype" in lowered or b"<!entity" in lowered:
        raise CallbackError(400, "XML with DOCTYPE or ENTITY declarations is refused")
    parser = ElementTree.XMLParser(target=_RefuseDoctype())
    try:
        parser.feed(body)
        root = parser.close()
    except _DoctypeRefused:
        raise CallbackError(400, "XML with DOCTYPE or ENTITY declarations is refused") from None
    except _TooDeep:
        raise CallbackError(400, f"XML nested deeper than {MAX_XML_DEPTH} levels") from None
    except ElementTree.ParseError as exc:
        _require_utf8(body)  # the likelier cause, named as such
        raise CallbackError(400, f"invalid XML: {exc}") from None
    except (ValueError, LookupError) as exc:  # pyexpat on an encoding it cannot read
        raise CallbackError(400, f"unreadable XML: {exc}") from None
    # Checked after the parse, so a DOCTYPE in UTF-16 is still refused as a DOCTYPE.
    _require_utf8(body)
    if root.tag != "xml":
        raise CallbackError(400, f"expected an <xml> document, got <{root.tag}>")
    fields: dict[str, str] = {}
    for child in root:
        if len(child) == 0 and child.tag not in fields:
            fields[child.tag] = (child.text or "").strip()
    return fields


def _require_utf8(body: bytes) -> None:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CallbackError(400, f"XML body is not UTF-8 (byte {exc.start}): WeChat pushes are UTF-8") from None


def _required(fields: Mapping[str, str], key: str, *, limit: int = MAX_FIELD_CHARS) -> str:
    value = fields.get(key, "")
    if not value:
        raise CallbackError(400, f"{key}: required")
    if len(value) > limit:
        raise CallbackError(400, f"{key}: longer than {limit} characters")
    return value


def create_time(fields: Mapping[str, str]) -> datetime:
    """``CreateTime`` (unix seconds) as aware UTC; CallbackError(400) when absent or unreadable."""
    return unix_time(_required(fields, "CreateTime"), "CreateTime")


# --------------------------------------------------------------------------- pushes


def normalize_status(status: str) -> str:
    """A TEMPLATESENDJOBFINISH ``Status`` compared loosely: lower case, spaces around ":"
    dropped (copies of WeChat's examples write both ``failed:system failed`` and
    ``failed: system failed``)."""
    head, colon, tail = status.strip().lower().partition(":")
    return f"{head.strip()}{colon}{' '.join(tail.split())}"


def parse_template_finish(fields: Mapping[str, str], *, channel: str) -> InboundResponse:
    """The receipt a TEMPLATESENDJOBFINISH event reports: ``success`` is delivered,
    ``failed:user block`` blocked (which suppresses), any other status undelivered;
    deduplicated on ``MsgID`` and ``Status``."""
    msg_id = _required(fields, "MsgID")
    status = _required(fields, "Status")
    openid = _required(fields, "FromUserName")
    normalized = normalize_status(status)
    if normalized == "success":
        kind = "delivered"
    elif normalized == USER_BLOCK:
        kind = "blocked"
    else:
        kind = "undelivered"
    payload: dict[str, Any] = {"channel": channel, "event": "TEMPLATESENDJOBFINISH", "status": status}
    if fields.get("ToUserName"):
        payload["account"] = fields["ToUserName"]  # the account's original id (gh_...), not a person
    return InboundResponse(
        kind=kind, provider="wechat", provider_ref=f"{msg_id}:{status}", occurred_at=create_time(fields),
        provider_message_id=msg_id, address=openid, family="wechat",
        error=None if kind == "delivered" else status, permanent=kind == "blocked", payload=payload,
    )


def parse_unsubscribe(fields: Mapping[str, str], *, channel: str) -> InboundResponse:
    """The unfollow an ``unsubscribe`` event reports (consent on wechat withdrawn). WeChat
    gives the event no id, so who and when are the deduplication key."""
    openid = _required(fields, "FromUserName")
    created = _required(fields, "CreateTime")
    return InboundResponse(
        kind="unsubscribed", provider="wechat", provider_ref=f"unsubscribe:{hashlib.sha256(openid.encode()).hexdigest()[:16]}:{created}",
        occurred_at=create_time(fields), address=openid, family="wechat",
        payload={"channel": channel, "event": "unsubscribe"},
    )


def parse_text(fields: Mapping[str, str], *, channel: str) -> InboundResponse:
    """The reply a text message is: who wrote (``FromUserName``) and what (``Content``),
    deduplicated on its ``MsgId``. ``Content`` is taken as sent (not stripped) and checked
    for opt-out words when it is recorded."""
    msg_id = _required(fields, "MsgId")
    openid = _required(fields, "FromUserName")
    return InboundResponse(
        kind="replied", provider="wechat", provider_ref=msg_id, occurred_at=create_time(fields),
        address=openid, family="wechat", text=fields.get("Content", ""),
        payload={"channel": channel, "msg_id": msg_id},
    )


def parse_push_response(fields: Mapping[str, str], *, channel: str) -> InboundResponse | None:
    """The response a push carries, or None for a push that is not recorded."""
    msg_type = fields.get("MsgType", "").lower()
    if msg_type == "event":
        event = fields.get("Event", "")
        if event.upper() == "TEMPLATESENDJOBFINISH":
            return parse_template_finish(fields, channel=channel)
        if event.lower() == "unsubscribe":
            return parse_unsubscribe(fields, channel=channel)
        return None
    if msg_type == "text":
        return parse_text(fields, channel=channel)
    return None


# --------------------------------------------------------------------------- routes


def wechat_routes(*, config: AppConfig, engine: Engine, clock: Clock,
                  writer: ResponseWriter | None = None) -> list[Route]:
    """The WeChat push routes (see the module docstring) for the ``wechat_oa`` channels of
    ``config``; responses are recorded through ``engine`` at ``clock()``, which must be
    aware UTC, by ``writer`` (the app's shared one; else a writer of these routes' own)."""
    writer = writer or ResponseWriter(engine=engine, clock=clock)

    def channel_of(request: Request) -> str:
        return channel_named(request, config, WeChatOAChannelConfig, "wechat_oa")

    def open_encrypted(request: Request, outer: Mapping[str, str], *, channel: str) -> dict[str, str]:
        """The fields inside an encrypted push, once ``msg_signature`` (which covers the
        ciphertext) and the appid inside it are checked."""
        token = read_secret(config.api.wechat_token_env) or ""  # check_push_signature ensured it is set
        key_env = config.api.wechat_aes_key_env
        encoding_aes_key = read_secret(key_env)
        if encoding_aes_key is None:
            raise CallbackError(503, f"encrypted WeChat pushes need the account's EncodingAESKey in the "
                                     f"environment variable {key_env} ([api] wechat_aes_key_env)")
        try:
            key = aes_key(encoding_aes_key)
        except ValueError as exc:
            logger.error("%s does not hold an EncodingAESKey: %s", key_env, exc)
            raise CallbackError(503, f"{key_env} does not hold a valid EncodingAESKey") from None
        encrypted = _required(outer, "Encrypt", limit=MAX_XML_BYTES)
        query = request.query_params
        if not msg_signature_valid(token, query.get("timestamp", ""), query.get("nonce", ""), encrypted,
                                   query.get("msg_signature", "")):
            raise CallbackError(403, "missing or wrong msg_signature")
        options = config.channels[channel]
        assert isinstance(options, WeChatOAChannelConfig)
        try:
            inner = decrypt_push(encrypted, key=key, appid=options.appid)
        except PushDecryptError as refused:
            raise CallbackError(refused.status, refused.message) from None
        return parse_push(inner)

    async def verify(request: Request) -> Response:
        """WeChat's server URL verification: echo ``echostr`` when the signature is right."""
        # Signature before the channel, so strangers cannot probe channel names.
        check_push_signature(request, clock(), config.api.wechat_token_env)
        channel_of(request)
        echostr = request.query_params.get("echostr")
        if echostr is None:
            raise CallbackError(400, "echostr: required")
        return PlainTextResponse(echostr)

    async def push(request: Request) -> Response:
        """A message push (plaintext or encrypted): receipts, unfollows and text messages are recorded."""
        now = clock()
        check_push_signature(request, now, config.api.wechat_token_env)
        name = channel_of(request)
        mode = request.query_params.get("encrypt_type", "raw").lower()
        if mode not in ("", "raw", "aes"):
            raise CallbackError(501, f"encrypt_type={mode!r} is not supported (raw and aes are)")
        encrypted = mode == "aes"
        fields = parse_push(await read_body(request))
        if encrypted:
            fields = open_encrypted(request, fields, channel=name)
        item = parse_push_response(fields, channel=name)
        if item is not None:
            # WeChat documents retries only for pushes it sees no answer to; a 503 at
            # least does not claim "success".
            await record_or_refuse(writer, [item], logger=logger, what=f"a WeChat {item.kind} response",
                                   refusal="could not record the push; retry later")
        return PlainTextResponse(SUCCESS)

    return [
        Route("/callbacks/wechat/{channel}", answering_refusals(verify), methods=["GET"]),
        Route("/callbacks/wechat/{channel}", answering_refusals(push), methods=["POST"]),
    ]
