"""What the three SMS channels share: the HTTP channel base, template parameters,
the marketing flag and PII-free error texts.

Each provider module (:mod:`.aliyun`, :mod:`.tencent`, :mod:`.twilio`) signs its request
the way the provider documents it, implemented with ``hmac``/``hashlib`` (no provider SDKs),
and classifies answers per CHANNELS.md §3-§5 into :class:`~campaigns.sending.messages.Outcome`;
the provider's message id (Aliyun ``BizId``, Tencent ``SerialNo``, Twilio ``sid``) is
returned as ``provider_message_id``. A timeout is ambiguous for SMS (the provider may have
accepted), so it is a RETRY with code ``timeout``: whoever retries should check the receipt
first (§0.3). Errors carry the provider code and a message with long digit runs masked (no
phone numbers).
"""

from __future__ import annotations

import re
from typing import Any, Generic, TypeVar

import httpx

from campaigns.config.options.aliyun import AliyunSmsConfig
from campaigns.config.options.tencent import TencentSmsConfig
from campaigns.config.options.twilio import TwilioConfig
from campaigns.sending.messages import OutboundMessage, Outcome, SendResult
from workers.channels.httpclients import ThreadClients, parse_retry_after, request_or_retry

#: Message fields a template parameter may name besides the rendered parts.
MESSAGE_FIELDS = ("recipient", "customer_external_id", "send_key", "campaign")

_DIGITS = re.compile(r"\d{5,}")


def mask_digits(text: str) -> str:
    """``text`` with runs of 5+ digits masked, cut to 160 characters: provider messages
    sometimes echo the number, and errors must stay PII-free."""
    return _DIGITS.sub("***", text)[:160]


def provider_error(code: str, message: str) -> str:
    """The error recorded for a provider's ``code`` and ``message`` (masked)."""
    return f"{code}: {mask_digits(message)}" if message else code


def is_marketing(message: OutboundMessage) -> bool:
    """Whether compliance rules for marketing SMS apply (``metadata["purpose"]``)."""
    return message.metadata.get("purpose") == "marketing"


class MissingParam(Exception):
    """A template parameter names a part or message field the message does not have."""


def param_value(message: OutboundMessage, source: str) -> str:
    """The value of the template parameter filled by ``source``: a rendered part (stripped)
    or a message field (:data:`MESSAGE_FIELDS`); :class:`MissingParam` for anything else."""
    if source in message.parts:
        return message.parts[source].strip()
    if source in MESSAGE_FIELDS:
        return str(getattr(message, source))
    raise MissingParam(source)


#: The options of one SMS provider's channel.
OptionsT = TypeVar("OptionsT", AliyunSmsConfig, TencentSmsConfig, TwilioConfig)


class HttpSmsChannel(Generic[OptionsT]):
    """The base of the SMS channels: a name, the provider's options, per-thread keep-alive
    clients (:class:`~workers.channels.httpclients.ThreadClients`) and :meth:`call`.
    ``transport`` replaces the network (tests)."""

    #: The User-Agent of the provider's requests; each provider names itself.
    user_agent = "nurture-sms/1"

    def __init__(self, *, name: str, options: OptionsT, transport: httpx.BaseTransport | None = None) -> None:
        self.name = name
        self.options = options
        self._clients = ThreadClients(timeout_s=options.timeout.total_seconds(), transport=transport,
                                      headers={"User-Agent": self.user_agent})

    def call(self, method: str, url: str, **kwargs: Any) -> SendResult:
        """Send one request (``kwargs`` go to httpx) and classify the provider's answer with
        :meth:`classify`; a timeout or network error is a RETRY."""
        response = request_or_retry(self._clients.get(), method, url, **kwargs)
        if isinstance(response, SendResult):
            return response
        return self.classify(response)

    def classify(self, response: httpx.Response) -> SendResult:
        """Map the provider's HTTP answer to an outcome (each provider its own way)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close every thread's client."""
        self._clients.close()


def classify_by_status(response: httpx.Response, code: str, error: str) -> SendResult:
    """Classify by HTTP status when the body carries no provider code we know."""
    status = response.status_code
    if status == 429 or status >= 500 or status == 408:
        return SendResult(Outcome.RETRY, error=error, code=code,
                          retry_after_s=parse_retry_after(response.headers.get("Retry-After")))
    if status in (401, 403):
        return SendResult(Outcome.HALT, error=error, code=code)
    return SendResult(Outcome.PERMANENT, error=error, code=code)
