"""Staff channels: alerts (a detractor's score, a complaint) posted to the team through a
WeCom group robot or a webhook (``[staff_channels.NAME]``, docs/feedback.md).

Each sender turns a leased :class:`~campaigns.feedback.alerts.DueAlert` into the request
of the channel of the same kind and reuses that channel's client and its classification
of answers (:class:`~workers.channels.wechat.wecom_robot.WeComRobotChannel`: errcode 0
ok, 45009 and -1 retry, 93000 invalid webhook, other 40xxx permanent;
:class:`~workers.channels.webhook.WebhookChannel`: signed with Standard Webhooks, 429/5xx
retry, 401/403/other 4xx not). The robot key travels in the query string, which httpx's
request log would print: the robot channel redacts it, and no error text holds a URL.

* WeCom: a ``markdown`` (default) or ``text`` message: the kind, the customer, the score,
  the reply quoted, the campaign; cut to the robot's byte limit at the reply's text.
* Webhook: ``{"type": "nurture.staff_alert", "key", "kind", "created_at", "alert": {...}}``
  with ``Idempotency-Key: <alert key>``; ``webhook-id`` is derived from the same key, so
  the receiver can drop the repeat of an alert resent after a crash.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import httpx

from campaigns.config.schema import AppConfig
from campaigns.config.staff import StaffWebhookConfig, StaffWeComRobotConfig
from campaigns.feedback.alerts import DueAlert
from campaigns.sending.messages import OutboundMessage, SendResult
from workers.channels.ratelimit import RateLimiter, make_rate_limiter
from workers.channels.webhook import WebhookChannel
from workers.channels.wechat.common import utc_now
from workers.channels.wechat.wecom_robot import WeComRobotChannel

#: Titles of the alert kinds (Chinese first: the group is a Chinese-speaking team's).
TITLES = {"complaint": "客户投诉 Complaint", "detractor": "低分反馈 Detractor"}
#: Payload keys shown first, with their labels; any other key follows as ``key: value``.
_SHOWN = (("question", "问题 Question"), ("score", "评分 Score"), ("campaign", "活动 Campaign"), ("step", "步骤 Step"),
          ("channel", "渠道 Channel"), ("replied_at", "时间 At"), ("answered_at", "时间 At"))
_HIDDEN = {"customer", "name", "text", "label", "rule", "response_id", "feedback_id"}


class StaffSender(Protocol):
    """Posts alerts to one staff channel and classifies the answer (never raises for it)."""

    name: str

    def send(self, alert: DueAlert) -> SendResult:
        """Post ``alert``; the channel's verdict."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def _customer(payload: dict[str, Any]) -> str | None:
    # A complaint says {"customer": {"external_id", "name"}}, a detractor
    # {"customer": external id, "name": name}: both read the same.
    customer = payload.get("customer")
    if isinstance(customer, dict):
        name, external = customer.get("name"), customer.get("external_id")
    elif customer is not None or payload.get("name"):
        name, external = payload.get("name"), customer
    else:
        return None
    if name and external:
        return f"{name} ({external})"
    return str(name or external) if (name or external) else None


def alert_lines(alert: DueAlert, *, markdown: bool) -> tuple[list[str], str | None]:
    """The alert's lines without the customer's text, and that text (quoted apart, so a
    message over the byte limit is cut there)."""
    payload = alert.payload
    title = TITLES.get(alert.kind, alert.kind)
    lines = [f"**{title}**" if markdown else f"【{title}】"]
    customer = _customer(payload)
    if customer:
        lines.append(f"客户 Customer: {customer}")
    for key, label in _SHOWN:
        if payload.get(key) not in (None, ""):
            lines.append(f"{label}: {payload[key]}")
    for key, value in payload.items():
        if key not in _HIDDEN and key not in dict(_SHOWN) and value not in (None, "", [], {}):
            lines.append(f"{key}: {value if not isinstance(value, (dict, list)) else json.dumps(value, ensure_ascii=False)}")
    lines.append(f"#{alert.key}")
    text = payload.get("text")
    return lines, (str(text) if text not in (None, "") else None)


def _fit(head: list[str], text: str | None, *, markdown: bool, max_bytes: int) -> str:
    """The message, the text cut (with an ellipsis) so the whole is within ``max_bytes``."""
    def join(quoted: str | None) -> str:
        body = list(head[:1])
        if quoted is not None:
            body.append("\n".join(("> " + line) if markdown else line for line in quoted.splitlines() or [""]))
        return "\n".join(body + head[1:])

    whole = join(text)
    if len(whole.encode("utf-8")) <= max_bytes or text is None:
        return whole.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
    room = max_bytes - len(join("…").encode("utf-8"))
    cut = text.encode("utf-8")[:max(room, 0)].decode("utf-8", "ignore")
    return join(cut + "…")


class WeComRobotStaffSender:
    """A staff alert as a WeCom group robot message (markdown or text)."""

    def __init__(self, *, name: str, options: StaffWeComRobotConfig, rate_limiter: RateLimiter | None = None,
                 transport: httpx.BaseTransport | None = None, clock: Callable[[], datetime] = utc_now) -> None:
        self.name = name
        self.options = options
        self._channel = WeComRobotChannel(name=name, options=options, rate_limiter=rate_limiter,
                                          transport=transport, clock=clock)

    def content(self, alert: DueAlert) -> str:
        """The message's content, within the robot's byte limit for its msgtype."""
        markdown = self.options.msgtype == "markdown"
        head, text = alert_lines(alert, markdown=markdown)
        limit = self.options.markdown_max_bytes if markdown else self.options.text_max_bytes
        return _fit(head, text, markdown=markdown, max_bytes=limit)

    def send(self, alert: DueAlert) -> SendResult:
        """Post the alert to the robot's group."""
        return self._channel.send(_message(alert, self.name, {"txt": self.content(alert)}))

    def close(self) -> None:
        """Close the robot's HTTP clients."""
        self._channel.close()


class WebhookStaffSender:
    """A staff alert as a signed JSON POST."""

    def __init__(self, *, name: str, options: StaffWebhookConfig,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.name = name
        self.options = options
        self._channel = WebhookChannel(name=name, options=options, transport=transport)

    @staticmethod
    def body(alert: DueAlert) -> dict[str, Any]:
        """The JSON object posted for ``alert``."""
        return {"type": "nurture.staff_alert", "key": alert.key, "kind": alert.kind,
                "created_at": alert.created_at.isoformat(), "attempt": alert.attempt, "alert": alert.payload}

    def send(self, alert: DueAlert) -> SendResult:
        """POST the alert, signed."""
        body = json.dumps(self.body(alert), ensure_ascii=False, separators=(",", ":"))
        return self._channel.send(_message(alert, self.name, {"json": body}))

    def close(self) -> None:
        """Close the webhook's HTTP clients."""
        self._channel.close()


def _message(alert: DueAlert, channel: str, parts: dict[str, str]) -> OutboundMessage:
    # The channels' own message type: the alert key is the send key, so the webhook's
    # Idempotency-Key and webhook-id are the same on every attempt of the alert.
    customer = alert.payload.get("customer") if isinstance(alert.payload.get("customer"), dict) else {}
    return OutboundMessage(send_key=alert.key, delivery_id=0, campaign=str(alert.payload.get("campaign") or ""),
                           step=0, channel=channel, recipient="staff",
                           customer_external_id=str(customer.get("external_id") or ""), parts=parts)


def build_staff_senders(config: AppConfig, *, clock: Callable[[], datetime] | None = None,
                        transport: httpx.BaseTransport | None = None) -> dict[str, StaffSender]:
    """One sender per ``[staff_channels.NAME]``; ``transport`` replaces the network in tests."""
    senders: dict[str, StaffSender] = {}
    for name, options in config.staff_channels.items():
        if isinstance(options, StaffWeComRobotConfig):
            # Shared through Redis when the broker is Redis, as the customer-facing robots.
            limiter = make_rate_limiter(redis_url=config.broker.url, limit=options.rate_limit_per_minute,
                                        window_s=60.0, prefix=config.broker.namespace)
            senders[name] = WeComRobotStaffSender(name=name, options=options, rate_limiter=limiter,
                                                  transport=transport, clock=clock or utc_now)
        else:
            senders[name] = WebhookStaffSender(name=name, options=options, transport=transport)
    return senders
