"""WeChat channels: the WeCom group robot and the Official Account (CHANNELS.md §1, §2).

Both APIs answer HTTP 200 with ``{"errcode": N, "errmsg": "..."}``; the outcome comes from
``errcode`` (tables :data:`WECOM_ERRCODES` and :data:`OA_ERRCODES`, overridable per channel
with the ``errcode_outcomes`` option). Network errors, timeouts, 429 and 5xx retry.

Secrets travel in query strings (the robot ``key``, the ``access_token``), where httpx's
INFO request log would print them; :class:`_RedactQuerySecrets` scrubs them from that log,
and errors recorded on attempts never contain a URL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from campaigns.config.options.wechat import (
    WeChatOAChannelConfig,
    WeComRobotChannelConfig,
    refuses_marketing,
)
from campaigns.config.secretvalues import read_secret
from campaigns.sending.messages import OutboundMessage, Outcome, SendResult
from workers.channels.webhook import parse_retry_after
from workers.channels.ratelimit import MemoryRateLimiter, RateLimiter
from workers.channels.tokencache import CachedToken, MemoryTokenCache, TokenCache

__all__ = [
    "OA_ERRCODES",
    "TOKEN_ERRCODES",
    "WECOM_ERRCODES",
    "WeChatOAChannel",
    "WeComRobotChannel",
    "refuses_marketing",
]

#: WeCom robot errcodes (CHANNELS.md §1). Other 40xxx codes are permanent.
WECOM_ERRCODES: dict[int, Outcome] = {
    0: Outcome.OK,
    -1: Outcome.RETRY,  # system busy
    45009: Outcome.RETRY,  # api freq out of limit: wait freq_limit_retry_after
    93000: Outcome.HALT,  # invalid or removed webhook (3p)
}

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


class _RedactQuerySecrets(logging.Filter):
    """Replaces ``key=`` and ``access_token=`` values in httpx's request log lines."""

    _pattern = re.compile(r"((?:^|[?&])(?:key|access_token)=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        redacted = self._pattern.sub(r"\1***", text)
        if redacted != text:
            record.msg, record.args = redacted, ()
        return True


def _install_redaction() -> None:
    # Once per process: httpx logs every request URL at INFO, query string included.
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactQuerySecrets) for f in logger.filters):
            logger.addFilter(_RedactQuerySecrets())


class _ThreadClients:
    """One keep-alive httpx.Client per worker thread (as in the webhook channel)."""

    def __init__(self, *, timeout_s: float, transport: httpx.BaseTransport | None, agent: str) -> None:
        self._timeout_s = timeout_s
        self._transport = transport
        self._agent = agent
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def get(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(timeout=self._timeout_s, transport=self._transport,
                                  headers={"User-Agent": self._agent})
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()


class _Answer:
    """A provider answer: the parsed JSON object, or the SendResult that ended the call."""

    def __init__(self, data: dict[str, Any] | None = None, failure: SendResult | None = None) -> None:
        self.data = data or {}
        self.failure = failure

    @property
    def errcode(self) -> int:
        try:
            return int(self.data.get("errcode", 0))
        except (TypeError, ValueError):
            return -1


def _post_json(client: httpx.Client, url: str, params: dict[str, str], payload: Any) -> _Answer:
    """POST ``payload``; transport problems and non-JSON answers become a RETRY/PERMANENT failure."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    try:
        response = client.post(url, params=params, content=body,
                               headers={"Content-Type": "application/json; charset=utf-8"})
    except httpx.TimeoutException as exc:
        return _Answer(failure=SendResult(Outcome.RETRY, error=f"timeout: {type(exc).__name__}", code="timeout"))
    except httpx.TransportError as exc:
        return _Answer(failure=SendResult(Outcome.RETRY, error=f"network error: {type(exc).__name__}", code="network"))
    status = response.status_code
    if status == 429 or status >= 500:
        return _Answer(failure=SendResult(Outcome.RETRY, error=f"HTTP {status}", code=str(status),
                                          retry_after_s=parse_retry_after(response.headers.get("Retry-After"))))
    if status != 200:
        return _Answer(failure=SendResult(Outcome.PERMANENT, error=f"HTTP {status}", code=str(status)))
    try:
        data = response.json()
    except ValueError:
        return _Answer(failure=SendResult(Outcome.RETRY, error="answer is not JSON", code="200"))
    if not isinstance(data, dict):
        return _Answer(failure=SendResult(Outcome.RETRY, error="answer is not a JSON object", code="200"))
    return _Answer(data)


def _errmsg(data: dict[str, Any]) -> str:
    # WeChat's errmsg carries a "rid" for support tickets but no recipient data; keep it short.
    return str(data.get("errmsg", "")).replace("\n", " ")[:160]


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _permanent(error: str, code: str = "invalid") -> SendResult:
    return SendResult(Outcome.PERMANENT, error=error, code=code)


class WeComRobotChannel:
    """Posts each message to a WeCom group robot (``POST /cgi-bin/webhook/send?key=KEY``).

    ``rate_limiter`` enforces ``rate_limit_per_minute`` per robot; pass a
    :class:`~workers.channels.ratelimit.RedisRateLimiter` (limit ``rate_limit_per_minute``, window
    60 s) so the limit holds across worker processes. A refusal is a ``defer`` until a slot
    frees up, never a sleep.
    """

    def __init__(
        self,
        *,
        name: str,
        options: WeComRobotChannelConfig,
        rate_limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        _install_redaction()
        self.name = name
        self.options = options
        self._key = read_secret(options.key_env)
        self._rate_limiter = rate_limiter or MemoryRateLimiter(limit=options.rate_limit_per_minute, window_s=60.0)
        # The limiter key names the robot without revealing its secret key.
        digest = hashlib.sha256(f"{options.endpoint}|{self._key}".encode()).hexdigest()[:24]
        self.rate_limit_key = f"wecom_robot:{digest}"
        self._clock = clock
        self._clients = _ThreadClients(timeout_s=options.timeout.total_seconds(), transport=transport,
                                       agent="nurture-wecom/1")

    def payload(self, message: OutboundMessage) -> dict[str, Any] | SendResult:
        """The request body for ``message``, or a PERMANENT result when it cannot be sent."""
        options = self.options
        parts = message.parts
        if options.msgtype == "text":
            content = parts.get("txt") or parts.get("sms")
            if not content:
                return _permanent("wecom text message needs a txt or sms template part", "no_part")
            if _utf8_len(content) > options.text_max_bytes:
                return _permanent(f"text is {_utf8_len(content)} bytes, over WeCom's limit of "
                                  f"{options.text_max_bytes} bytes (UTF-8)", "too_long")
            text: dict[str, Any] = {"content": content}
            if options.mentioned_list:
                text["mentioned_list"] = list(options.mentioned_list)
            if options.mentioned_mobile_list:
                text["mentioned_mobile_list"] = list(options.mentioned_mobile_list)
            return {"msgtype": "text", "text": text}
        if options.msgtype == "markdown":
            content = parts.get("txt")
            if not content:
                return _permanent("wecom markdown message needs a txt template part", "no_part")
            if _utf8_len(content) > options.markdown_max_bytes:
                return _permanent(f"markdown is {_utf8_len(content)} bytes, over WeCom's limit of "
                                  f"{options.markdown_max_bytes} bytes (UTF-8)", "too_long")
            return {"msgtype": "markdown", "markdown": {"content": content}}
        return self._news(parts)

    def _news(self, parts: dict[str, str]) -> dict[str, Any] | SendResult:
        options = self.options
        if "json" not in parts:
            return _permanent("wecom news message needs a json template part with articles", "no_part")
        try:
            data = json.loads(parts["json"])
        except ValueError:
            return _permanent("json template part is not valid JSON", "bad_json")
        articles = data.get("articles") if isinstance(data, dict) else data
        if not isinstance(articles, list) or not all(isinstance(a, dict) for a in articles):
            return _permanent('json part must be {"articles": [{title, description, url, picurl}, ...]}', "bad_json")
        if not 1 <= len(articles) <= options.news_max_articles:
            return _permanent(f"news needs 1 to {options.news_max_articles} articles, got {len(articles)}", "too_long")
        for index, article in enumerate(articles):
            if not article.get("title") or not article.get("url"):
                return _permanent(f"news article {index} needs a title and a url", "bad_json")
            if _utf8_len(str(article["title"])) > options.news_title_max_bytes:
                return _permanent(f"news article {index} title is over {options.news_title_max_bytes} bytes",
                                  "too_long")
            if _utf8_len(str(article.get("description", ""))) > options.news_description_max_bytes:
                return _permanent(f"news article {index} description is over "
                                  f"{options.news_description_max_bytes} bytes", "too_long")
        return {"msgtype": "news", "news": {"articles": articles}}

    def send(self, message: OutboundMessage) -> SendResult:
        """Post the message to the group and classify WeCom's answer."""
        if not self._key:
            return SendResult(Outcome.HALT, error=f"robot key not set (environment variable {self.options.key_env})",
                              code="config")
        payload = self.payload(message)
        if isinstance(payload, SendResult):
            return payload
        wait_s = self._rate_limiter.acquire(self.rate_limit_key)
        if wait_s is not None:
            return SendResult(Outcome.DEFER, error=f"robot rate limit ({self.options.rate_limit_per_minute}/min)",
                              code="rate_limited", defer_until=self._clock() + timedelta(seconds=wait_s))
        answer = _post_json(self._clients.get(), f"{self.options.endpoint}/cgi-bin/webhook/send",
                            {"key": self._key}, payload)
        if answer.failure is not None:
            return answer.failure
        return self.classify(answer.data)

    def classify(self, data: dict[str, Any]) -> SendResult:
        """Map a WeCom answer to an outcome."""
        errcode = _Answer(data).errcode
        code = str(errcode)
        outcome = self.options.errcode_outcomes.get(errcode)
        mapped = Outcome(outcome) if outcome else WECOM_ERRCODES.get(errcode)
        if mapped is None:
            mapped = Outcome.PERMANENT  # 40xxx parameter errors and anything undocumented
        if mapped is Outcome.OK:
            return SendResult.ok(None, code=code)
        error = f"wecom errcode {errcode}: {_errmsg(data)}"
        if mapped is Outcome.RETRY:
            retry_after = self.options.freq_limit_retry_after.total_seconds() if errcode == 45009 else None
            return SendResult(Outcome.RETRY, error=error, code=code, retry_after_s=retry_after)
        if mapped is Outcome.DEFER:
            return SendResult(Outcome.DEFER, error=error, code=code,
                              defer_until=self._clock() + self.options.freq_limit_retry_after)
        return SendResult(mapped, error=error, code=code)

    def close(self) -> None:
        """Close every thread's client."""
        self._clients.close()


class _TokenFailure(Exception):
    """The access token could not be obtained; ``result`` says how the send ends."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result.error)
        self.result = result


class WeChatOAChannel:
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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        _install_redaction()
        self.name = name
        self.options = options
        self._secret = read_secret(options.secret_env)
        self._cache = token_cache or MemoryTokenCache()
        self.token_key = f"wechat_oa:{options.appid}"
        self._clock = clock
        self._clients = _ThreadClients(timeout_s=options.timeout.total_seconds(), transport=transport,
                                       agent="nurture-wechat/1")

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
        answer = _post_json(self._clients.get(), f"{self.options.endpoint}/cgi-bin/stable_token", {},
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
            raise _TokenFailure(SendResult(outcome, error=f"stable_token errcode {errcode}: {_errmsg(data)}",
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
            return _permanent(f"{kind} messages are for service notices only", "marketing_refused")
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
            return _permanent(f"{self.options.message_type} message needs a json template part with its data",
                              "no_part")
        try:
            parsed = json.loads(message.parts["json"])
        except ValueError:
            return _permanent("json template part is not valid JSON", "bad_json")
        if not isinstance(parsed, dict):
            return _permanent("json template part must be an object", "bad_json")
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
            return _permanent("customer-service messages need a recent interaction; none is recorded for "
                              "this customer", "outside_window")
        last = message.metadata.get("last_interaction_at")
        if last:
            try:
                last_at = datetime.fromisoformat(str(last))
            except ValueError:
                return _permanent("metadata last_interaction_at is not an ISO datetime", "bad_metadata")
            if last_at.tzinfo is None:
                last_at = last_at.replace(tzinfo=UTC)
            window = self.options.customer_service_window
            if self._clock() - last_at > window:
                hours = window.total_seconds() / 3600
                return _permanent(f"customer-service messages are only allowed within {hours:g} h of the "
                                  f"customer's last interaction (last at {last_at.isoformat()})", "outside_window")
        body: dict[str, Any] = {"touser": message.recipient}
        if "json" in message.parts:
            # A json part is a full customer-service message: {"msgtype": "news", "news": {...}}.
            try:
                parsed = json.loads(message.parts["json"])
            except ValueError:
                return _permanent("json template part is not valid JSON", "bad_json")
            if not isinstance(parsed, dict) or "msgtype" not in parsed:
                return _permanent('json part must be a customer-service message {"msgtype": ..., ...}', "bad_json")
            body.update({k: v for k, v in parsed.items() if k != "touser"})
        else:
            content = message.parts.get("txt") or message.parts.get("sms")
            if not content:
                return _permanent("customer-service message needs a txt, sms or json template part", "no_part")
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
            answer = _post_json(self._clients.get(), url, {"access_token": token}, body)
            if answer.failure is not None:
                return answer.failure
            if answer.errcode not in TOKEN_ERRCODES or rejected is not None:
                return self.classify(answer.data)
            rejected = token
        return self.classify(answer.data)

    def classify(self, data: dict[str, Any]) -> SendResult:
        """Map an Official Account answer to an outcome."""
        errcode = _Answer(data).errcode
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
        error = f"wechat errcode {errcode}: {_errmsg(data)}"
        if mapped is Outcome.DEFER:
            return SendResult(Outcome.DEFER, error=error, code=code, defer_until=next_beijing_midnight(self._clock()))
        return SendResult(mapped, error=error, code=code)

    def close(self) -> None:
        """Close every thread's client."""
        self._clients.close()


def next_beijing_midnight(now: datetime) -> datetime:
    """The next 00:00 in Beijing (when WeChat's daily quotas reset), in UTC."""
    local = now.astimezone(BEIJING)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=BEIJING)
    return midnight.astimezone(UTC)
