"""Options of the Twilio SMS channel (``kind = "twilio"``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from campaigns.config.base import Duration
from campaigns.config.options.sms import SmsOptions
from campaigns.config.values import Endpoint, check_endpoint

#: Default opt-out sentence of Twilio marketing SMS (STOP is handled by Twilio itself).
TWILIO_OPT_OUT_TEXT = "Reply STOP to opt out"


class TwilioConfig(SmsOptions):
    """Twilio Programmable Messaging: ``POST /2010-04-01/Accounts/{sid}/Messages.json``."""

    kind: Literal["twilio"]
    account_sid_env: str
    auth_token_env: str
    #: Sender number (E.164); or a Messaging Service, which takes precedence.
    from_number: str | None = Field(default=None, alias="from")
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    #: Seconds Twilio may queue the message (1..36000); keeps promotions out of quiet hours.
    validity_period: int | None = Field(default=None, ge=1, le=36000)
    #: Marketing bodies start with this (e.g. "Acme: ") unless they already do.
    marketing_prefix: str = ""
    #: Appended to marketing bodies unless already present (case-insensitive).
    opt_out_text: str = TWILIO_OPT_OUT_TEXT
    endpoint: Endpoint = "https://api.twilio.com"
    #: Pause after a queue-overflow error (21611/30001) before retrying.
    queue_overflow_retry_after: Duration = timedelta(seconds=60)

    @field_validator("status_callback")
    @classmethod
    def _callback_url(cls, value: str | None) -> str | None:
        return None if value is None else check_endpoint(value)

    @model_validator(mode="after")
    def _has_sender(self) -> TwilioConfig:
        if not (self.from_number or self.messaging_service_sid):
            raise ValueError("twilio needs `from` or `messaging_service_sid`")
        return self
