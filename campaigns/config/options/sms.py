"""Options of the SMS channels: Aliyun Dysms, Tencent Cloud SMS and Twilio.

China providers (Aliyun, Tencent) send approved templates only: the provider prefixes the
approved signature as 【SignName】 and the approved template text is the whole body, so the
opt-out sentence (CHANNELS.md §8: 「拒收请回复R」, some platforms 「回T退订」) must be part of the
approved marketing template. The options let marketing sends use their own signature and
template and, for templates that take the opt-out sentence as a variable, name that variable
(``opt_out_param``). Twilio sends free text: marketing bodies get the brand prefix and the
opt-out sentence appended unless the body already carries it.

Template parameters come from the rendered template: its ``json`` part, when present, is the
parameter object (Aliyun ``TemplateParam``) or list (Tencent ``TemplateParamSet``); otherwise
``params`` names, per template variable, the rendered part (``sms``, ``txt``...) or message
field (``recipient``, ``customer_external_id``, ``send_key``) that fills it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from campaigns.config.base import Duration, RecipientField, StrictModel
from campaigns.config.values import Endpoint, check_endpoint

#: Default opt-out sentence of China marketing SMS (CHANNELS.md §8).
CHINA_OPT_OUT_TEXT = "拒收请回复R"
#: Default opt-out sentence of Twilio marketing SMS (STOP is handled by Twilio itself).
TWILIO_OPT_OUT_TEXT = "Reply STOP to opt out"


class _SmsOptions(StrictModel):
    """What every SMS channel takes: the field it sends to and the request timeout."""

    recipient: RecipientField = "phone"
    timeout: Duration = timedelta(seconds=10)


class AliyunSmsConfig(_SmsOptions):
    """Aliyun Dysms ``SendSms`` (API 2017-05-25), signed with the RPC HMAC-SHA1 signature."""

    kind: Literal["aliyun_sms"]
    #: Environment variables holding the AccessKey pair.
    access_key_id_env: str
    access_key_secret_env: str
    #: Approved signature; the provider shows it as 【sign_name】.
    sign_name: str
    #: Approved template code (``SMS_…``).
    template_code: str
    #: Signature and template for ``purpose = "marketing"`` sends (default: the ones above).
    marketing_sign_name: str | None = None
    marketing_template_code: str | None = None
    #: TemplateParam name -> rendered part or message field (used when there is no json part).
    params: dict[str, str] = Field(default_factory=dict)
    #: Template variable that receives ``opt_out_text`` on marketing sends, if the template has one.
    opt_out_param: str | None = None
    opt_out_text: str = CHINA_OPT_OUT_TEXT
    region_id: str = "cn-hangzhou"
    endpoint: Endpoint = "https://dysmsapi.aliyuncs.com"
    #: Deferral when ``isv.BUSINESS_LIMIT_CONTROL`` names no window.
    flow_control_default_defer: Duration = timedelta(hours=1)


class TencentSmsConfig(_SmsOptions):
    """Tencent Cloud SMS ``SendSms`` (API 2021-01-11), signed with TC3-HMAC-SHA256."""

    kind: Literal["tencent_sms"]
    secret_id_env: str
    secret_key_env: str
    #: ``SmsSdkAppId`` of the SMS application.
    sdk_app_id: str
    sign_name: str
    template_id: str
    marketing_sign_name: str | None = None
    marketing_template_id: str | None = None
    #: TemplateParamSet, in order: rendered part or message field per template variable.
    params: list[str] = Field(default_factory=list)
    #: Append ``opt_out_text`` as the last TemplateParamSet entry on marketing sends.
    opt_out_param: bool = False
    opt_out_text: str = CHINA_OPT_OUT_TEXT
    region: str = "ap-guangzhou"
    endpoint: Endpoint = "https://sms.tencentcloudapi.com"
    #: Phone numbers without "+" get this country code (E.164 is required).
    default_country_code: str = "86"
    #: Per-number daily caps reset at midnight here (documented as natural days).
    quota_timezone: str = "Asia/Shanghai"


class TwilioConfig(_SmsOptions):
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
