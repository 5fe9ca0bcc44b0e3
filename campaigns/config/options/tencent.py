"""Options of the Tencent Cloud SMS channel (``kind = "tencent_sms"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from campaigns.config.options.sms import CHINA_OPT_OUT_TEXT, SmsOptions
from campaigns.config.values import Endpoint


class TencentSmsConfig(SmsOptions):
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
