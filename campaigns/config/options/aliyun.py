"""Options of the Aliyun Dysms SMS channel (``kind = "aliyun_sms"``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field

from campaigns.config.base import Duration
from campaigns.config.options.sms import CHINA_OPT_OUT_TEXT, SmsOptions
from campaigns.config.values import Endpoint


class AliyunSmsConfig(SmsOptions):
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
