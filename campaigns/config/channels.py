"""``[channels.NAME]``: the channel option models, gathered into one union by ``kind``.

The outbox and webhook channels are defined here; the providers with many options have
a module each under :mod:`campaigns.config.options`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator

from campaigns.config.base import Duration, RecipientField, StrictModel
from campaigns.config.options.aliyun import AliyunSmsConfig
from campaigns.config.options.smtp import SmtpChannelConfig
from campaigns.config.options.tencent import TencentSmsConfig
from campaigns.config.options.twilio import TwilioConfig
from campaigns.config.options.wechat import WeChatOAChannelConfig, WeComRobotChannelConfig


class OutboxChannelConfig(StrictModel):
    """Writes each rendered message to a file, like Django's file-based email backend."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["outbox"]
    dir: Path = Path("var/outbox")
    recipient: RecipientField = "email"
    #: The From header of written emails (``from`` in the file).
    sender: str = Field(default="nurture <nurture@localhost>", alias="from")


class WebhookChannelConfig(StrictModel):
    """POSTs a JSON body rendered from the template to ``url``, signed with HMAC-SHA256."""

    kind: Literal["webhook"]
    url: str
    #: Name of the environment variable that holds the signing secret.
    secret_env: str | None = None
    timeout: Duration = timedelta(seconds=10)
    recipient: RecipientField = "external_id"
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("webhook url must start with http:// or https://")
        return value


#: One ``[channels.NAME]`` table: the model its ``kind`` names.
ChannelConfig = Annotated[
    OutboxChannelConfig
    | WebhookChannelConfig
    | AliyunSmsConfig
    | TencentSmsConfig
    | TwilioConfig
    | WeComRobotChannelConfig
    | WeChatOAChannelConfig
    | SmtpChannelConfig,
    Field(discriminator="kind"),
]
