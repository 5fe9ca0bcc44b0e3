"""What the two WeChat channels share (CHANNELS.md §1, §2): posting JSON, reading
``{"errcode": N, "errmsg": "..."}`` answers, and keeping secrets out of the logs.

Both APIs answer HTTP 200 with ``{"errcode": N, "errmsg": "..."}``; the outcome comes from
``errcode`` (each channel's table, overridable per channel with the ``errcode_outcomes``
option). Network errors, timeouts, 429 and 5xx retry.

Secrets travel in query strings (the robot ``key``, the ``access_token``), where httpx's
INFO request log would print them; :class:`RedactQuerySecrets` scrubs them from that log,
and errors recorded on attempts never contain a URL.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import httpx

from campaigns.config.options.wechat import WeChatOAChannelConfig, WeComRobotChannelConfig
from campaigns.sending.messages import Outcome, SendResult
from workers.channels.httpclients import ThreadClients, parse_retry_after, request_or_retry

#: The options of one WeChat channel.
OptionsT = TypeVar("OptionsT", WeComRobotChannelConfig, WeChatOAChannelConfig)


class RedactQuerySecrets(logging.Filter):
    """Replaces ``key=`` and ``access_token=`` values in httpx's request log lines."""

    _pattern = re.compile(r"((?:^|[?&])(?:key|access_token)=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drops it."""
        text = record.getMessage()
        redacted = self._pattern.sub(r"\1***", text)
        if redacted != text:
            record.msg, record.args = redacted, ()
        return True


def install_redaction() -> None:
    """Add :class:`RedactQuerySecrets` to httpx's loggers, once per process."""
    # Once per process: httpx logs every request URL at INFO, query string included.
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQuerySecrets) for f in logger.filters):
            logger.addFilter(RedactQuerySecrets())


class Answer:
    """A provider answer: the parsed JSON object, or the SendResult that ended the call."""

    def __init__(self, data: dict[str, Any] | None = None, failure: SendResult | None = None) -> None:
        self.data = data or {}
        self.failure = failure

    @property
    def errcode(self) -> int:
        """The answer's ``errcode`` (0 when absent, -1 when not a number)."""
        try:
            return int(self.data.get("errcode", 0))
        except (TypeError, ValueError):
            return -1


def post_json(client: httpx.Client, url: str, params: dict[str, str], payload: Any) -> Answer:
    """POST ``payload``; transport problems and non-JSON answers become a RETRY/PERMANENT failure."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    response = request_or_retry(client, "POST", url, params=params, content=body,
                                headers={"Content-Type": "application/json; charset=utf-8"})
    if isinstance(response, SendResult):
        return Answer(failure=response)
    status = response.status_code
    if status == 429 or status >= 500:
        return Answer(failure=SendResult(Outcome.RETRY, error=f"HTTP {status}", code=str(status),
                                         retry_after_s=parse_retry_after(response.headers.get("Retry-After"))))
    if status != 200:
        return Answer(failure=SendResult(Outcome.PERMANENT, error=f"HTTP {status}", code=str(status)))
    try:
        data = response.json()
    except ValueError:
        return Answer(failure=SendResult(Outcome.RETRY, error="answer is not JSON", code="200"))
    if not isinstance(data, dict):
        return Answer(failure=SendResult(Outcome.RETRY, error="answer is not a JSON object", code="200"))
    return Answer(data)


def errmsg(data: dict[str, Any]) -> str:
    """The answer's ``errmsg``, on one line and cut to 160 characters, for error texts."""
    # WeChat's errmsg carries a "rid" for support tickets but no recipient data; keep it short.
    return str(data.get("errmsg", "")).replace("\n", " ")[:160]


def permanent(error: str, code: str = "invalid") -> SendResult:
    """A PERMANENT result: the message cannot be sent as rendered (no request is made)."""
    return SendResult(Outcome.PERMANENT, error=error, code=code)


def utc_now() -> datetime:
    """The channels' default clock: aware UTC."""
    return datetime.now(UTC)


class WeChatHttpChannel(Generic[OptionsT]):
    """The base of the WeChat channels: a name, the channel's options, a clock (the
    runtime's, so time windows follow simulated time in tests), per-thread keep-alive
    clients (:class:`~workers.channels.httpclients.ThreadClients`; ``transport`` replaces
    the network in tests) and httpx's request log redacted (:func:`install_redaction`)."""

    #: The User-Agent of the channel's requests.
    user_agent = "nurture-wechat/1"

    def __init__(self, *, name: str, options: OptionsT, transport: httpx.BaseTransport | None,
                 clock: Callable[[], datetime]) -> None:
        install_redaction()
        self.name = name
        self.options = options
        self._clock = clock
        self._clients = ThreadClients(timeout_s=options.timeout.total_seconds(), transport=transport,
                                      headers={"User-Agent": self.user_agent})

    def close(self) -> None:
        """Close every thread's client."""
        self._clients.close()
