"""The Twilio channel (CHANNELS.md §5): free-text SMS through the Messages resource,
authenticated with HTTP Basic ``AccountSid:AuthToken`` and a form-encoded body.

Twilio's callbacks (status and inbound messages), signed with ``X-Twilio-Signature``, are
received by :mod:`workers.http.callbacks.twilio`.
"""

from __future__ import annotations

import httpx

from campaigns.config.options.twilio import TwilioConfig
from campaigns.config.secretvalues import read_secret
from campaigns.sending.messages import OutboundMessage, Outcome, SendResult
from workers.channels.httpclients import parse_retry_after
from workers.channels.sms.common import HttpSmsChannel, is_marketing, provider_error

TWILIO_RETRY = frozenset({20429, 21611, 30001})
TWILIO_SUPPRESS = frozenset({21610, 30005, 30006})
TWILIO_PERMANENT = frozenset({30036, 30003, 30004, 30007})
#: Our account or sender is wrong (authentication, unknown account, bad From/service).
TWILIO_HALT = frozenset({20003, 20404, 21606, 21212, 21408, 21703, 21704})


def classify_twilio_error(
    error_code: int | None, message: str = "", *, http_status: int | None = None,
    retry_after_s: float | None = None, queue_overflow_retry_after_s: float | None = None,
) -> SendResult:
    """Map a Twilio error code (API answer or status callback ``ErrorCode``) to an outcome."""
    code = str(error_code) if error_code is not None else str(http_status)
    error = provider_error(code, message)
    if error_code in (21611, 30001):  # queue overflow: retry later, slower
        return SendResult(Outcome.RETRY, error=error, code=code,
                          retry_after_s=retry_after_s or queue_overflow_retry_after_s)
    if error_code in TWILIO_RETRY or http_status == 429 or (http_status or 0) >= 500:
        return SendResult(Outcome.RETRY, error=error, code=code, retry_after_s=retry_after_s)
    if error_code in TWILIO_SUPPRESS:
        return SendResult(Outcome.SUPPRESS, error=error, code=code)
    if error_code in TWILIO_PERMANENT:
        return SendResult(Outcome.PERMANENT, error=error, code=code)
    if error_code in TWILIO_HALT or http_status in (401, 403):
        return SendResult(Outcome.HALT, error=error, code=code)
    return SendResult(Outcome.PERMANENT, error=error, code=code)


#: Twilio's upper bound for ValidityPeriod, in seconds (10 hours).
TWILIO_MAX_VALIDITY_S = 36000


class TwilioChannel(HttpSmsChannel[TwilioConfig]):
    """Sends free-text SMS through Twilio's Messages resource."""

    user_agent = "nurture-twilio/1"

    def text(self, message: OutboundMessage) -> str:
        """The Body: the ``sms`` part (else ``txt``), with brand and opt-out for marketing."""
        body = (message.parts.get("sms") or message.parts.get("txt") or "").strip()
        if body and is_marketing(message):
            prefix = self.options.marketing_prefix
            if prefix and not body.startswith(prefix):
                body = prefix + body
            opt_out = self.options.opt_out_text
            if opt_out and opt_out.lower() not in body.lower():
                body = f"{body}\n{opt_out}"
        return body

    def form(self, message: OutboundMessage) -> dict[str, str]:
        """The form fields of the Messages POST."""
        opts = self.options
        form = {"To": message.recipient.strip(), "Body": self.text(message)}
        if opts.messaging_service_sid:
            form["MessagingServiceSid"] = opts.messaging_service_sid
        else:
            assert opts.from_number is not None  # enforced by TwilioConfig
            form["From"] = opts.from_number
        if opts.status_callback:
            form["StatusCallback"] = opts.status_callback
        # The tighter of the channel's own limit and the time left before the customer's
        # quiet hours (set by the worker for marketing): Twilio drops what it could not
        # deliver by then instead of waking someone up.
        limits = [v for v in (opts.validity_period, message.metadata.get("deliver_within_s")) if v]
        if limits:
            form["ValidityPeriod"] = str(max(1, min(TWILIO_MAX_VALIDITY_S, *map(int, limits))))
        return form

    def send(self, message: OutboundMessage) -> SendResult:
        """POST one message and classify the answer."""
        sid = read_secret(self.options.account_sid_env)
        token = read_secret(self.options.auth_token_env)
        if not sid or not token:
            return SendResult(Outcome.HALT, error="Twilio AccountSid/AuthToken env vars are not set",
                              code="config")
        form = self.form(message)
        if not form["Body"]:
            return SendResult(Outcome.PERMANENT, error="template has no sms or txt part", code="params")
        url = f"{self.options.endpoint}/2010-04-01/Accounts/{sid}/Messages.json"
        return self.call("POST", url, data=form, auth=(sid, token))

    def classify(self, response: httpx.Response) -> SendResult:
        """Map an HTTP answer of the Messages POST to an outcome."""
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            data = {}
        status = response.status_code
        if 200 <= status < 300:
            if data.get("error_code") and data.get("status") in ("failed", "undelivered"):
                return classify_twilio_error(int(data["error_code"]), str(data.get("error_message") or ""))
            sid = data.get("sid")
            return SendResult.ok(str(sid) if sid else None, code=str(status))
        raw = data.get("code")
        error_code = int(raw) if isinstance(raw, int) or (isinstance(raw, str) and raw.isdigit()) else None
        return classify_twilio_error(
            error_code, str(data.get("message") or f"HTTP {status}"), http_status=status,
            retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
            queue_overflow_retry_after_s=self.options.queue_overflow_retry_after.total_seconds(),
        )
