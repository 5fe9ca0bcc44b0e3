"""Values that cross the boundary between the domain and the channels."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Outcome(enum.StrEnum):
    """How a provider's answer to one send is handled (see shared CHANNELS.md §0.2)."""

    #: Accepted by the provider; store its ids and wait for a receipt.
    OK = "ok"
    #: Transient failure (network, timeout, 429, 5xx): back off and try again.
    RETRY = "retry"
    #: Not now but at a known later time (quota, quiet window): reschedule, never drop.
    DEFER = "defer"
    #: This message can never be delivered (bad address, rejected request).
    PERMANENT = "permanent"
    #: Permanent, and the address must never be messaged again (opt-out, hard bounce).
    SUPPRESS = "suppress"
    #: Account or configuration problem: pause the whole campaign until an operator acts.
    HALT = "halt"


@dataclass(frozen=True)
class OutboundMessage:
    """One rendered message for one recipient on one channel.

    ``parts`` holds the rendered template parts by name (``subject``, ``txt``, ``html``,
    ``json``, ``sms``); a channel uses the ones it understands.
    """

    send_key: str
    delivery_id: int
    campaign: str
    step: int
    channel: str
    recipient: str
    customer_external_id: str
    parts: dict[str, str]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    """A channel's verdict on one send, already classified into an :class:`Outcome`."""

    outcome: Outcome
    provider_message_id: str | None = None
    #: Short, PII-free description of what went wrong (status code, provider code).
    error: str | None = None
    #: For RETRY: the provider's Retry-After, in seconds, when it gave one.
    retry_after_s: float | None = None
    #: For DEFER: when to try again.
    defer_until: datetime | None = None
    #: Provider status code or HTTP status, recorded on the attempt.
    code: str | None = None

    @classmethod
    def ok(cls, provider_message_id: str | None = None, *, code: str | None = None) -> SendResult:
        """A successful send."""
        return cls(Outcome.OK, provider_message_id=provider_message_id, code=code)
