"""The generic ``webhook`` channel: POST a JSON body to an HTTP endpoint.

The body is the template's ``json`` part (or, without one, a JSON object of the rendered
parts). Each request carries:

* ``Idempotency-Key: <send key>``, stable across retries, so the receiver can drop repeats;
* Standard Webhooks headers ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``, the key
  being the ``whsec_<base64>`` secret decoded exactly as the ``standardwebhooks`` library
  does. Unsigned requests are never sent: without a valid secret every send halts the
  campaign (``nurture check`` reports it first), as the SMS channels do without credentials.

Answers are classified: 2xx ok; 408/425/429/5xx and network errors retry (Retry-After
honoured); 401/403 halt the campaign (our credentials are wrong); 410 suppresses; any other
4xx is permanent. One keep-alive ``httpx.Client`` per worker thread
(:class:`~workers.channels.httpclients.ThreadClients`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx

from campaigns.config.channels import WebhookChannelConfig
from campaigns.config.secretvalues import read_secret, webhook_channel_key, webhook_signing_key
from campaigns.customers.masking import mask_text
from campaigns.sending.messages import OutboundMessage, Outcome, SendResult
from workers.channels.httpclients import ThreadClients, parse_retry_after, request_or_retry

RETRY_STATUSES = frozenset({408, 425, 429})
HALT_STATUSES = frozenset({401, 403})
SUPPRESS_STATUSES = frozenset({410})


def signing_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError for any other secret."""
    return webhook_signing_key(secret)


def webhook_id(send_key: str) -> str:
    """The ``webhook-id`` of the message with ``send_key``: stable across retries and
    resends, so a Standard Webhooks receiver that dedupes on it drops the repeat."""
    return "msg_" + hashlib.sha256(send_key.encode()).hexdigest()[:32]


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one request."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class WebhookChannel:
    """POSTs each message as JSON to one URL."""

    def __init__(
        self,
        *,
        name: str,
        options: WebhookChannelConfig,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.options = options
        self._key: bytes | None = None
        #: Why sends halt (no usable secret); None when requests can be signed.
        self._key_problem: str | None = None
        try:
            self._key = webhook_channel_key(options.secret_env, read_secret(options.secret_env))
        except ValueError as exc:
            self._key_problem = str(exc)
        self._clients = ThreadClients(
            timeout_s=options.timeout.total_seconds(), transport=transport,
            headers={"User-Agent": "nurture-webhook/1", **options.headers},
        )

    def body(self, message: OutboundMessage) -> bytes:
        """The request body for ``message``."""
        if "json" in message.parts:
            # Already checked to be valid JSON when rendered: send the bytes as they are
            # (parsing and re-serialising every body cost CPU on the hot path, P2).
            return message.parts["json"].strip().encode("utf-8")
        payload = {
            "recipient": message.recipient,
            "customer_id": message.customer_external_id,
            "campaign": message.campaign,
            "step": message.step,
            **{part: text for part, text in message.parts.items()},
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def send(self, message: OutboundMessage) -> SendResult:
        """POST the message and classify the answer."""
        if self._key is None:
            # Fail closed: a receiver that checks signatures would reject the request, one
            # that does not would accept anyone's; halt until the secret is fixed.
            return SendResult(Outcome.HALT, error=self._key_problem, code="config")
        body = self.body(message)
        message_id = webhook_id(message.send_key)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message.send_key,
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, message_id, timestamp, body),
        }
        response = request_or_retry(self._clients.get(), "POST", self.options.url, content=body, headers=headers)
        if isinstance(response, SendResult):
            return response
        return classify(response)

    def close(self) -> None:
        """Close every thread's client."""
        self._clients.close()


def classify(response: httpx.Response) -> SendResult:
    """Map an HTTP answer to an outcome."""
    status = response.status_code
    code = str(status)
    if 200 <= status < 300:
        provider_id = None
        try:
            data = response.json()
            if isinstance(data, dict) and data.get("id") is not None:
                provider_id = str(data["id"])[:128]
        except ValueError:
            pass
        return SendResult.ok(provider_id, code=code)
    # Receivers echo what they were sent ("unknown recipient bob@x"): keep errors PII-free,
    # as the SMTP and SMS channels do.
    excerpt = mask_text(response.text[:200].replace("\n", " "))
    error = f"HTTP {status}: {excerpt}" if excerpt else f"HTTP {status}"
    if status in RETRY_STATUSES or status >= 500:
        return SendResult(Outcome.RETRY, error=error, code=code,
                          retry_after_s=parse_retry_after(response.headers.get("Retry-After")))
    if status in HALT_STATUSES:
        return SendResult(Outcome.HALT, error=error, code=code)
    if status in SUPPRESS_STATUSES:
        return SendResult(Outcome.SUPPRESS, error=error, code=code)
    return SendResult(Outcome.PERMANENT, error=error, code=code)
