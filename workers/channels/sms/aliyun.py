"""The Aliyun Dysms channel (CHANNELS.md §3): ``SendSms`` (2017-05-25) and Aliyun's phone numbers.

The request carries Aliyun's RPC signature: parameters sorted by name, names and values
percent-encoded (RFC 3986: space -> %20, ``*`` -> %2A, ``~`` kept), joined with ``&``;
``StringToSign = "GET&%2F&" + percent_encode(canonical)``;
``Signature = base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))``.

Aliyun writes numbers its own way, in both directions: :func:`to_aliyun_number` formats a
recipient for ``SendSms``, :func:`from_aliyun_number` reads a number of its receipts and
replies back to E.164 (:mod:`workers.http.callbacks.aliyun`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from campaigns.config.options.aliyun import AliyunSmsConfig
from campaigns.config.secretvalues import read_secret
from campaigns.sending.messages import OutboundMessage, Outcome, SendResult
from workers.channels.sms.common import (
    HttpSmsChannel,
    MissingParam,
    classify_by_status,
    is_marketing,
    param_value,
    provider_error,
)


def aliyun_percent_encode(value: str) -> str:
    """Percent-encode as Aliyun's RPC signature requires (RFC 3986 unreserved kept)."""
    return quote(value, safe="-_.~")


def aliyun_sign(params: Mapping[str, str], access_key_secret: str, method: str = "GET") -> str:
    """The RPC ``Signature`` of ``params`` (which must not include ``Signature``)."""
    canonical = "&".join(
        f"{aliyun_percent_encode(k)}={aliyun_percent_encode(v)}" for k, v in sorted(params.items())
    )
    string_to_sign = f"{method}&{aliyun_percent_encode('/')}&{aliyun_percent_encode(canonical)}"
    digest = hmac.new((access_key_secret + "&").encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


ALIYUN_RETRY = frozenset({"isp.SYSTEM_ERROR", "SignatureNonceUsed", "ServiceUnavailable", "InternalError"})
ALIYUN_HALT = frozenset({
    "isv.DAY_LIMIT_CONTROL", "isv.MONTH_LIMIT_CONTROL",  # account thresholds
    "isv.AMOUNT_NOT_ENOUGH", "isv.OUT_OF_SERVICE", "isp.RAM_PERMISSION_DENY",
    "isv.SMS_SIGNATURE_ILLEGAL", "isv.SMS_TEMPLATE_ILLEGAL", "isv.SMS_SIGNATURE_SCENE_ILLEGAL",
    # Our credentials or clock are wrong: every further send fails the same way.
    "SignatureDoesNotMatch", "InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive",
    "IncompleteSignature", "InvalidTimeStamp.Expired", "isv.ACCOUNT_NOT_EXISTS",
    "isv.ACCOUNT_ABNORMAL", "Forbidden.RAM", "Forbidden.AccessKeyDisabled",
})
ALIYUN_SUPPRESS = frozenset({"isv.MOBILE_NUMBER_ILLEGAL", "isv.BLACK_KEY_CONTROL_LIMIT"})
ALIYUN_PERMANENT = frozenset({
    "isv.INVALID_PARAMETERS", "isv.TEMPLATE_MISSING_PARAMETERS", "isv.INVALID_JSON_PARAM",
    "isv.PARAM_LENGTH_LIMIT", "isv.PARAM_NOT_SUPPORT_URL", "isv.SMS_CONTENT_ILLEGAL",
})


def aliyun_flow_control_window(message: str, default: timedelta) -> timedelta:
    """How long ``isv.BUSINESS_LIMIT_CONTROL`` blocks, from its Message
    (e.g. "触发分钟级流控Permits:1", "触发小时级流控Permits:5", "触发天级流控Permits:10")."""
    lowered = message.lower()
    if "分钟" in message or "minute" in lowered:
        return timedelta(minutes=1)
    if "小时" in message or "hour" in lowered:
        return timedelta(hours=1)
    if "天" in message or "day" in lowered:
        # The per-number window is rolling 24 h (CHANNELS.md §3), not a calendar day.
        return timedelta(days=1)
    return default


def classify_aliyun(
    code: str, message: str, *, now: datetime | None = None,
    flow_control_default: timedelta = timedelta(hours=1),
) -> SendResult:
    """Map an Aliyun ``Code`` (not OK) to an outcome (CHANNELS.md §3)."""
    error = provider_error(code, message)
    if code in ALIYUN_RETRY or code.startswith("Throttling"):
        return SendResult(Outcome.RETRY, error=error, code=code)
    if code == "isv.BUSINESS_LIMIT_CONTROL":
        now = now or datetime.now(UTC)
        # Never tight-loop: wait out the window the message names.
        window = aliyun_flow_control_window(message, flow_control_default)
        return SendResult(Outcome.DEFER, error=error, code=code, defer_until=now + window)
    if code in ALIYUN_HALT:
        return SendResult(Outcome.HALT, error=error, code=code)
    if code in ALIYUN_SUPPRESS:
        return SendResult(Outcome.SUPPRESS, error=error, code=code)
    if code in ALIYUN_PERMANENT:
        return SendResult(Outcome.PERMANENT, error=error, code=code)
    if code.startswith("isp."):  # platform-side errors are transient
        return SendResult(Outcome.RETRY, error=error, code=code)
    return SendResult(Outcome.PERMANENT, error=error, code=code)


def to_aliyun_number(recipient: str) -> str:
    """A recipient as ``SendSms`` wants it: mainland numbers bare, others as country code +
    number, no "+" (the way out; :func:`from_aliyun_number` is the way back)."""
    number = recipient.strip().replace(" ", "").replace("-", "")
    if number.startswith("+86"):
        return number[3:]
    return number.lstrip("+")


def from_aliyun_number(number: str) -> str:
    """E.164 of a number as Aliyun's receipts and replies write it: a bare 11-digit mainland
    mobile gets ``+86``; a number already written with ``+`` is kept; other digits are taken
    to start with their country code (Aliyun's international numbers). The way back of
    :func:`to_aliyun_number`."""
    number = number.strip()
    if number.startswith("+"):
        return number
    if len(number) == 11 and number.startswith("1"):
        return "+86" + number
    return "+" + number


class AliyunSmsChannel(HttpSmsChannel[AliyunSmsConfig]):
    """Sends template SMS through Aliyun Dysms ``SendSms``."""

    user_agent = "nurture-aliyun-sms/1"

    def params(self, message: OutboundMessage) -> dict[str, str]:
        """The SendSms request parameters (without the common and signature parameters).

        Raises:
            ValueError: the template gives no usable TemplateParam.
        """
        opts = self.options
        marketing = is_marketing(message)
        template_param: dict[str, Any]
        if "json" in message.parts:
            loaded = json.loads(message.parts["json"])
            if not isinstance(loaded, dict):
                raise ValueError("json part must be an object for Aliyun TemplateParam")
            template_param = loaded
        else:
            template_param = {key: param_value(message, src) for key, src in opts.params.items()}
        if marketing and opts.opt_out_param:
            template_param.setdefault(opts.opt_out_param, opts.opt_out_text)
        params = {
            "PhoneNumbers": to_aliyun_number(message.recipient),
            "SignName": (opts.marketing_sign_name if marketing else None) or opts.sign_name,
            "TemplateCode": (opts.marketing_template_code if marketing else None) or opts.template_code,
            "OutId": message.send_key,
        }
        if template_param:
            params["TemplateParam"] = json.dumps(template_param, ensure_ascii=False, separators=(",", ":"))
        return params

    def send(self, message: OutboundMessage) -> SendResult:
        """Call SendSms for one number and classify the answer."""
        key_id = read_secret(self.options.access_key_id_env)
        secret = read_secret(self.options.access_key_secret_env)
        if not key_id or not secret:
            return SendResult(Outcome.HALT, error="Aliyun AccessKey env vars are not set", code="config")
        try:
            params = self.params(message)
        except (ValueError, MissingParam) as exc:
            return SendResult(Outcome.PERMANENT, error=f"template params: {exc}", code="params")
        params.update({
            "AccessKeyId": key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "RegionId": self.options.region_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
        })
        signature = aliyun_sign(params, secret)
        query = "&".join(
            f"{aliyun_percent_encode(k)}={aliyun_percent_encode(v)}"
            for k, v in [("Signature", signature), *sorted(params.items())]
        )
        return self.call("GET", f"{self.options.endpoint}/?{query}")

    def classify(self, response: httpx.Response) -> SendResult:
        """Map an HTTP answer of SendSms to an outcome."""
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not data.get("Code"):
            status = str(response.status_code)
            return classify_by_status(response, status, f"HTTP {status}")
        code = str(data["Code"])
        if code == "OK" and 200 <= response.status_code < 300:
            biz_id = data.get("BizId")
            return SendResult.ok(str(biz_id) if biz_id else None, code=code)
        result = classify_aliyun(
            code, str(data.get("Message") or ""),
            flow_control_default=self.options.flow_control_default_defer,
        )
        if result.outcome is Outcome.PERMANENT and response.status_code >= 500:
            return SendResult(Outcome.RETRY, error=result.error, code=code)
        return result
