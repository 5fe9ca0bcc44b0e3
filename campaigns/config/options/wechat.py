"""Options of the WeChat channels: the WeCom group robot and the Official Account.

See shared CHANNELS.md §1 (WeCom robot) and §2 (Official Account). Limits and error
codes backed only by third-party copies of WeCom's documentation are options, so an
operator can follow the provider when it changes them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from campaigns.config.base import Duration, RecipientField, StrictModel
from campaigns.config.values import Endpoint

#: An outcome an operator may assign to a provider errcode (``errcode_outcomes``).
OutcomeName = Literal["ok", "retry", "defer", "permanent", "suppress", "halt"]


class WeComRobotChannelConfig(StrictModel):
    """A WeCom (企业微信) group robot: posts each message to one group chat.

    The robot reaches a group, not a person, so ``recipient`` only says which customer
    field is recorded with the delivery.
    """

    kind: Literal["wecom_robot"]
    #: Environment variable holding the robot's webhook key (a bearer secret).
    key_env: str
    #: Base URL of the WeCom API; tests point it at a loopback server.
    endpoint: Endpoint = "https://qyapi.weixin.qq.com"
    #: ``text`` (body from the ``txt`` part, else ``sms``), ``markdown`` (from ``txt``) or
    #: ``news`` (articles from the ``json`` part).
    msgtype: Literal["text", "markdown", "news"] = "text"
    #: For ``text``: user ids to @-mention (``"@all"`` for everyone).
    mentioned_list: list[str] = Field(default_factory=list)
    #: For ``text``: mobile numbers to @-mention.
    mentioned_mobile_list: list[str] = Field(default_factory=list)
    #: Messages a minute per robot, across all worker processes (WeCom: 20, 3p).
    rate_limit_per_minute: int = Field(default=20, ge=1)
    #: Wait after errcode 45009 "api freq out of limit" (WeCom asks for >= 60 s).
    freq_limit_retry_after: Duration = timedelta(seconds=65)
    #: Byte limits of the UTF-8 content (3p: copies of WeCom doc 91770).
    text_max_bytes: int = Field(default=2048, ge=1)
    markdown_max_bytes: int = Field(default=4096, ge=1)
    news_max_articles: int = Field(default=8, ge=1)
    news_title_max_bytes: int = Field(default=128, ge=1)
    news_description_max_bytes: int = Field(default=512, ge=1)
    #: Overrides of the errcode -> outcome table (e.g. ``{"93000" = "halt"}``).
    errcode_outcomes: dict[int, OutcomeName] = Field(default_factory=dict)
    timeout: Duration = timedelta(seconds=10)
    recipient: RecipientField = "external_id"


class MiniProgramLink(StrictModel):
    """A mini-program page a notification opens (wins over ``url`` when both are set)."""

    appid: str
    pagepath: str | None = None


class WeChatOAChannelConfig(StrictModel):
    """A WeChat Official Account (公众号): template, subscribe or customer-service messages.

    Template and subscribe messages are service notices: WeChat forbids marketing on them,
    so this channel refuses campaigns whose purpose is ``marketing``.
    """

    kind: Literal["wechat_oa"]
    appid: str
    #: Environment variable holding the AppSecret.
    secret_env: str
    #: Base URL of the WeChat API; tests point it at a loopback server.
    endpoint: Endpoint = "https://api.weixin.qq.com"
    #: ``template`` (模板消息), ``subscribe`` (订阅通知, bizsend) or ``customer_service``
    #: (客服消息, only within 48 h of the customer's last interaction).
    message_type: Literal["template", "subscribe", "customer_service"] = "template"
    #: Required for ``template`` and ``subscribe``.
    template_id: str | None = None
    #: Web page the notification opens (template messages).
    url: str | None = None
    #: Page the subscribe notification opens (``page`` of bizsend).
    page: str | None = None
    miniprogram: MiniProgramLink | None = None
    #: Subscribe messages: ``developer`` | ``trial`` | ``formal``.
    miniprogram_state: Literal["developer", "trial", "formal"] | None = None
    #: Subscribe messages: ``zh_CN`` | ``en_US`` | ``zh_HK`` | ``zh_TW``.
    lang: Literal["zh_CN", "en_US", "zh_HK", "zh_TW"] | None = None
    #: How long after the customer's last interaction customer-service messages may be sent.
    customer_service_window: Duration = timedelta(hours=48)
    #: Events (by name) that count as the customer interacting with the account; the
    #: latest one opens the customer-service window.
    interaction_events: list[str] = Field(
        default_factory=lambda: ["wechat_message", "wechat_click", "wechat_subscribe", "wechat_scan"]
    )
    #: Refresh the shared access token when it has this much life left (WeChat rotates 5 min early).
    token_refresh_margin: Duration = timedelta(minutes=5)
    #: Use ``force_refresh=true`` when WeChat rejects a token nobody has replaced yet
    #: (limited by WeChat to 20 a day, 30 s apart).
    force_refresh_on_token_error: bool = True
    #: Overrides of the errcode -> outcome table (e.g. ``{"45047" = "defer"}``).
    errcode_outcomes: dict[int, OutcomeName] = Field(default_factory=dict)
    timeout: Duration = timedelta(seconds=10)
    recipient: RecipientField = "wechat_openid"

    @model_validator(mode="after")
    def _template_needed(self) -> WeChatOAChannelConfig:
        if self.message_type in ("template", "subscribe") and not self.template_id:
            raise ValueError(f"template_id is required when message_type is {self.message_type!r}")
        return self


def refuses_marketing(options: object) -> bool:
    """Whether a channel with these options must never carry a marketing campaign.

    WeChat's rules allow template and subscribe messages for service notices only
    (CHANNELS.md §2b), so ``nurture check`` rejects a marketing campaign on such a channel.
    """
    return isinstance(options, WeChatOAChannelConfig) and options.message_type in ("template", "subscribe")
