"""The WeChat Official Account channel (CHANNELS.md §2): template, subscribe and
customer-service messages, with the access token shared by every worker process.

The account's pushes (template receipts, unfollows, replies) are received by
:mod:`workers.http.callbacks.wechat`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from campaigns.config.options.wechat import WeChatOAChannelConfig, refuses_marketing
from campaigns.config.secretvalues import read_secret
from campaigns.sending.messages import OutboundMessage, Outcome, SendResult
from workers.channels.tokencache import CachedToken, MemoryTokenCache, TokenCache
from workers.channels.wechat.common import (
    Answer,
    WeChatHttpChannel,
    errmsg,
    permanent,
    post_json,
    utc_now,
)

#: Official Account errcodes (CHANNELS.md §2d, plus the codes of the same family WeChat documents).
OA_ERRCODES: dict[int, Outcome] = {
    0: Outcome.OK,
    -1: Outcome.RETRY,  # system busy
    40003: Outcome.PERMANENT,  # invalid openid
    43004: Outcome.SUPPRESS,  # the user does not follow the account
    47003: Outcome.PERMANENT,  # bad data field
    40037: Outcome.HALT,  # bad template_id: every message of the step would fail
    45009: Outcome.DEFER,  # daily quota: next Beijing midnight
    43101: Outcome.PERMANENT,  # user refuses the subscribe message until re-subscribing
    45015: Outcome.PERMANENT,  # customer-service reply outside the 48 h window
    45047: Outcome.PERMANENT,  # too many customer-service messages since the last interaction
    45011: Outcome.RETRY,  # api minute-quota reached
    48001: Outcome.HALT,  # api unauthorized for this account
    40013: Outcome.HALT,  # invalid appid
    40125: Outcome.HALT,  # invalid appsecret
    40164: Outcome.HALT,  # caller IP not in the account's whitelist
}

#: Errcodes meaning the access token is invalid or expired: refresh once, retry once.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})

#: WeChat resets daily quotas at midnight Beijing time.
BEIJING = ZoneInfo("Asia/Shanghai")

_log = logging.getLogger(__name__)


class _TokenFailure(Exception):
    """The access token could not be obtained; ``result`` says how the send ends."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result.error)
        self.result = result


class WeChatOAChannel(WeChatHttpChannel[WeChatOAChannelConfig]):
    """Sends Official Account template, subscribe or customer-service messages.

    The access token comes from ``stable_token`` and lives in ``token_cache`` (pass a
    :class:`~workers.channels.tokencache.RedisTokenCache` so every worker process shares it); one
    process refreshes it at a time, when it has ``token_refresh_margin`` left. When WeChat
    rejects a token (40001/40014/42001) the channel refreshes once and retries once.
    """

    #: Shortest time a process may hold the refresh lock (at least two request timeouts).
    lock_ttl_s: float = 30.0
    #: How long to wait for another process's refresh before giving up with RETRY.
    lock_wait_s: float = 10.0

    def __init__(
        self,
        *,
        name: str,
        options: WeChatOAChannelConfig,
        token_cache: TokenCache | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__(name=name, options=options, transport=transport, clock=clock)
        self._secret = read_secret(options.secret_env)
        self._cache = token_cache or MemoryTokenCache()
        self.token_key = f"wechat_oa:{options.appid}"

    # -- access token ---------------------------------------------------------------

    def access_token(self, *, rejected: str | None = None) -> str:
        """A valid access token, refreshed (single-flight across processes) when needed.

        ``rejected`` is a token WeChat just refused: it is never returned, and when nobody
        has replaced it yet it is replaced with ``force_refresh`` (if configured).

        Raises:
            _TokenFailure: the token could not be fetched.
        """
        margin = self.options.token_refresh_margin.total_seconds()
        deadline = time.monotonic() + self.lock_wait_s
        while True:
            cached = self._cache.get(self.token_key)
            usable = cached is not None and cached.value != rejected
            if usable and cached is not None and cached.expires_at - time.time() > margin:
                return cached.value
            # The lease outlives our stable_token call, so no second process refreshes meanwhile.
            lease = self._cache.try_lock(self.token_key, max(self.lock_ttl_s, 2 * self.options.timeout.total_seconds()))
            if lease is not None:
                try:
                    # Another process may have refreshed between our read and our lock.
                    again = self._cache.get(self.token_key)
                    if again is not None and again.value != rejected and again.expires_at - time.time() > margin:
                        return again.value
                    force = rejected is not None and self.options.force_refresh_on_token_error
                    token = self._fetch_token(force=force)
                    self._cache.put(self.token_key, token)
                    return token.value
                finally:
                    self._cache.unlock(self.token_key, lease)
            if usable and cached is not None:
                return cached.value  # still valid; the lock holder is rotating it early
            if time.monotonic() > deadline:
                raise _TokenFailure(SendResult(Outcome.RETRY, error="access token refresh by another process "
                                               "did not finish", code="token_wait"))
            time.sleep(0.05)

    def _fetch_token(self, *, force: bool) -> CachedToken:
        if not self._secret:
            raise _TokenFailure(SendResult(Outcome.HALT, code="config",
                                           error=f"AppSecret not set (environment variable {self.options.secret_env})"))
        answer = post_json(self._clients.get(), f"{self.options.endpoint}/cgi-bin/stable_token", {},
                            {"grant_type": "client_credential", "appid": self.options.appid,
                             "secret": self._secret, "force_refresh": force})
        if answer.failure is not None:
            raise _TokenFailure(answer.failure)
        data = answer.data
        token = data.get("access_token")
        if answer.errcode != 0 or not token:
            errcode = answer.errcode
            # Busy or throttled: try later. Anything else (bad appid/secret, IP whitelist) needs an operator.
            outcome = Outcome.RETRY if errcode in (-1, 45009, 45011) else Outcome.HALT
            raise _TokenFailure(SendResult(outcome, error=f"stable_token errcode {errcode}: {errmsg(data)}",
                                           code=str(errcode)))
        _log.info("wechat access token refreshed for channel %s (force=%s)", self.name, force)
        expires_in = float(data.get("expires_in", 7200))
        return CachedToken(value=str(token), expires_at=time.time() + expires_in)

    # -- messages -------------------------------------------------------------------

    def request(self, message: OutboundMessage) -> tuple[str, dict[str, Any]] | SendResult:
        """The API path and body for ``message``, or a PERMANENT result when it must not be sent."""
        options = self.options
        if message.metadata.get("purpose") == "marketing" and refuses_marketing(options):
            kind = "template" if options.message_type == "template" else "subscribe"
            return permanent(f"{kind} messages are for service notices only", "marketing_refused")
        if options.message_type == "customer_service":
            return self._customer_service(message)
        parsed = self._data(message)
        if isinstance(parsed, SendResult):
            return parsed
        data, overrides = parsed
        body: dict[str, Any] = {"touser": message.recipient, "template_id": options.template_id}
        miniprogram = overrides.get("miniprogram") or (options.miniprogram.model_dump(exclude_none=True)
                                                       if options.miniprogram else None)
        if options.message_type == "template":
            url = overrides.get("url") or options.url
            if url:
                body["url"] = url
            if miniprogram:
                body["miniprogram"] = miniprogram
            body["client_msg_id"] = message.send_key
            body["data"] = data
            return "/cgi-bin/message/template/send", body
        page = overrides.get("page") or options.page
        if page:
            body["page"] = page
        if miniprogram:
            body["miniprogram"] = miniprogram
        if options.miniprogram_state:
            body["miniprogram_state"] = options.miniprogram_state
        if options.lang:
            body["lang"] = options.lang
        body["data"] = data
        return "/cgi-bin/message/subscribe/bizsend", body

    def _data(self, message: OutboundMessage) -> tuple[dict[str, Any], dict[str, Any]] | SendResult:
        """``(data, overrides)`` from the json part: ``{"data": {...}, "url": ...}`` or the data itself.

        ``overrides`` are per-message ``url``, ``page`` or ``miniprogram`` values.

        A plain string value is shorthand for ``{"value": string}``.
        """
        if "json" not in message.parts:
            return permanent(f"{self.options.message_type} message needs a json template part with its data",
                              "no_part")
        try:
            parsed = json.loads(message.parts["json"])
        except ValueError:
            return permanent("json template part is not valid JSON", "bad_json")
        if not isinstance(parsed, dict):
            return permanent("json template part must be an object", "bad_json")
        overrides: dict[str, Any] = {}
        if isinstance(parsed.get("data"), dict):
            overrides = {k: parsed[k] for k in ("url", "page", "miniprogram") if parsed.get(k)}
            parsed = parsed["data"]
        data: dict[str, Any] = {
            field: value if isinstance(value, dict) else {"value": str(value)} for field, value in parsed.items()
        }
        return data, overrides

    def _customer_service(self, message: OutboundMessage) -> tuple[str, dict[str, Any]] | SendResult:
        if "last_interaction_at" in message.metadata and message.metadata["last_interaction_at"] is None:
            return permanent("customer-service messages need a recent interaction; none is recorded for "
                              "this customer", "outside_window")
        last = message.metadata.get("last_interaction_at")
        if last:
            try:
                last_at = datetime.fromisoformat(str(last))
            except ValueError:
                return permanent("metadata last_interaction_at is not an ISO datetime", "bad_metadata")
            if last_at.tzinfo is None:
                last_at = last_at.replace(tzinfo=UTC)
            window = self.options.customer_service_window
            if self._clock() - last_at > window:
                hours = window.total_seconds() / 3600
                return permanent(f"customer-service messages are only allowed within {hours:g} h of the "
                                  f"customer's last interaction (last at {last_at.isoformat()})", "outside_window")
        body: dict[str, Any] = {"touser": message.recipient}
        if "json" in message.parts:
            # A json part is a full customer-service message: {"msgtype": "news", "news": {...}}.
            try:
                parsed = json.loads(message.parts["json"])
            except ValueError:
                return permanent("json template part is not valid JSON", "bad_json")
            if not isinstance(parsed, dict) or "msgtype" not in parsed:
                return permanent('json part must be a customer-service message {"msgtype": ..., ...}', "bad_json")
            body.update({k: v for k, v in parsed.items() if k != "touser"})
        else:
            content = message.parts.get("txt") or message.parts.get("sms")
            if not content:
                return permanent("customer-service message needs a txt, sms or json template part", "no_part")
            body.update({"msgtype": "text", "text": {"content": content}})
        return "/cgi-bin/message/custom/send", body

    def send(self, message: OutboundMessage) -> SendResult:
        """Send the message and classify WeChat's answer."""
        request = self.request(message)
        if isinstance(request, SendResult):
            return request
        path, body = request
        url = f"{self.options.endpoint}{path}"
        rejected: str | None = None
        for _ in range(2):  # the first try, and one retry after a token refresh
            try:
                token = self.access_token(rejected=rejected)
            except _TokenFailure as failure:
                return failure.result
            answer = post_json(self._clients.get(), url, {"access_token": token}, body)
            if answer.failure is not None:
                return answer.failure
            if answer.errcode not in TOKEN_ERRCODES or rejected is not None:
                return self.classify(answer.data)
            rejected = token
        return self.classify(answer.data)

    def classify(self, data: dict[str, Any]) -> SendResult:
        """Map an Official Account answer to an outcome."""
        errcode = Answer(data).errcode
        code = str(errcode)
        override = self.options.errcode_outcomes.get(errcode)
        if override:
            mapped: Outcome = Outcome(override)
        elif errcode in TOKEN_ERRCODES:
            # Still rejected after a fresh token: likely another system refreshing this appid's token.
            mapped = Outcome.RETRY
        else:
            mapped = OA_ERRCODES.get(errcode, Outcome.PERMANENT)
        if mapped is Outcome.OK:
            msgid = data.get("msgid")
            return SendResult.ok(str(msgid) if msgid is not None else None, code=code)
        error = f"wechat errcode {errcode}: {errmsg(data)}"
        if mapped is Outcome.DEFER:
            return SendResult(Outcome.DEFER, error=error, code=code, defer_until=next_beijing_midnight(self._clock()))
        return SendResult(mapped, error=error, code=code)


def next_beijing_midnight(now: datetime) -> datetime:
    """The next 00:00 in Beijing (when WeChat's daily quotas reset), in UTC."""
    local = now.astimezone(BEIJING)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=BEIJING)
    return midnight.astimezone(UTC)
