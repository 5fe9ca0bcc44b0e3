"""The WeCom group robot channel (CHANNELS.md §1): ``POST /cgi-bin/webhook/send?key=KEY``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx

from campaigns.config.options.wechat import WeComRobotChannelConfig
from campaigns.config.secretvalues import read_secret
from campaigns.sending.messages import OutboundMessage, Outcome, SendResult
from workers.channels.ratelimit import MemoryRateLimiter, RateLimiter
from workers.channels.wechat.common import (
    Answer,
    WeChatHttpChannel,
    errmsg,
    permanent,
    post_json,
    utc_now,
)

#: WeCom robot errcodes (CHANNELS.md §1). Other 40xxx codes are permanent.
WECOM_ERRCODES: dict[int, Outcome] = {
    0: Outcome.OK,
    -1: Outcome.RETRY,  # system busy
    45009: Outcome.RETRY,  # api freq out of limit: wait freq_limit_retry_after
    93000: Outcome.HALT,  # invalid or removed webhook (3p)
}


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))



class WeComRobotChannel(WeChatHttpChannel[WeComRobotChannelConfig]):
    """Posts each message to a WeCom group robot (``POST /cgi-bin/webhook/send?key=KEY``).

    ``rate_limiter`` enforces ``rate_limit_per_minute`` per robot; pass a
    :class:`~workers.channels.ratelimit.RedisRateLimiter` (limit ``rate_limit_per_minute``, window
    60 s) so the limit holds across worker processes. A refusal is a ``defer`` until a slot
    frees up, never a sleep.
    """

    user_agent = "nurture-wecom/1"

    def __init__(
        self,
        *,
        name: str,
        options: WeComRobotChannelConfig,
        rate_limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__(name=name, options=options, transport=transport, clock=clock)
        self._key = read_secret(options.key_env)
        self._rate_limiter = rate_limiter or MemoryRateLimiter(limit=options.rate_limit_per_minute, window_s=60.0)
        # The limiter key names the robot without revealing its secret key.
        digest = hashlib.sha256(f"{options.endpoint}|{self._key}".encode()).hexdigest()[:24]
        self.rate_limit_key = f"wecom_robot:{digest}"

    def payload(self, message: OutboundMessage) -> dict[str, Any] | SendResult:
        """The request body for ``message``, or a PERMANENT result when it cannot be sent."""
        options = self.options
        parts = message.parts
        if options.msgtype == "text":
            content = parts.get("txt") or parts.get("sms")
            if not content:
                return permanent("wecom text message needs a txt or sms template part", "no_part")
            if _utf8_len(content) > options.text_max_bytes:
                return permanent(f"text is {_utf8_len(content)} bytes, over WeCom's limit of "
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
                return permanent("wecom markdown message needs a txt template part", "no_part")
            if _utf8_len(content) > options.markdown_max_bytes:
                return permanent(f"markdown is {_utf8_len(content)} bytes, over WeCom's limit of "
                                  f"{options.markdown_max_bytes} bytes (UTF-8)", "too_long")
            return {"msgtype": "markdown", "markdown": {"content": content}}
        return self._news(parts)

    def _news(self, parts: dict[str, str]) -> dict[str, Any] | SendResult:
        options = self.options
        if "json" not in parts:
            return permanent("wecom news message needs a json template part with articles", "no_part")
        try:
            data = json.loads(parts["json"])
        except ValueError:
            return permanent("json template part is not valid JSON", "bad_json")
        articles = data.get("articles") if isinstance(data, dict) else data
        if not isinstance(articles, list) or not all(isinstance(a, dict) for a in articles):
            return permanent('json part must be {"articles": [{title, description, url, picurl}, ...]}', "bad_json")
        if not 1 <= len(articles) <= options.news_max_articles:
            return permanent(f"news needs 1 to {options.news_max_articles} articles, got {len(articles)}", "too_long")
        for index, article in enumerate(articles):
            if not article.get("title") or not article.get("url"):
                return permanent(f"news article {index} needs a title and a url", "bad_json")
            if _utf8_len(str(article["title"])) > options.news_title_max_bytes:
                return permanent(f"news article {index} title is over {options.news_title_max_bytes} bytes",
                                  "too_long")
            if _utf8_len(str(article.get("description", ""))) > options.news_description_max_bytes:
                return permanent(f"news article {index} description is over "
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
        answer = post_json(self._clients.get(), f"{self.options.endpoint}/cgi-bin/webhook/send",
                            {"key": self._key}, payload)
        if answer.failure is not None:
            return answer.failure
        return self.classify(answer.data)

    def classify(self, data: dict[str, Any]) -> SendResult:
        """Map a WeCom answer to an outcome."""
        errcode = Answer(data).errcode
        code = str(errcode)
        outcome = self.options.errcode_outcomes.get(errcode)
        mapped = Outcome(outcome) if outcome else WECOM_ERRCODES.get(errcode)
        if mapped is None:
            mapped = Outcome.PERMANENT  # 40xxx parameter errors and anything undocumented
        if mapped is Outcome.OK:
            return SendResult.ok(None, code=code)
        error = f"wecom errcode {errcode}: {errmsg(data)}"
        if mapped is Outcome.RETRY:
            retry_after = self.options.freq_limit_retry_after.total_seconds() if errcode == 45009 else None
            return SendResult(Outcome.RETRY, error=error, code=code, retry_after_s=retry_after)
        if mapped is Outcome.DEFER:
            return SendResult(Outcome.DEFER, error=error, code=code,
                              defer_until=self._clock() + self.options.freq_limit_retry_after)
        return SendResult(mapped, error=error, code=code)
