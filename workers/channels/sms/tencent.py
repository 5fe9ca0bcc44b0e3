"""The Tencent Cloud SMS channel (CHANNELS.md §4): ``SendSms`` (2021-01-11).

The request is signed with TC3-HMAC-SHA256: CanonicalRequest (method, URI, query,
canonical headers ``content-type`` and ``host``, signed headers, sha256 of the payload) ->
``StringToSign = "TC3-HMAC-SHA256\\n{ts}\\n{date}/sms/tc3_request\\n{sha256(canonical)}"``;
key chain ``HMAC("TC3"+SecretKey, date)`` -> ``sms`` -> ``tc3_request``; hex signature in
``Authorization: TC3-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx

from campaigns.config.options.tencent import TencentSmsConfig
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


def tc3_signature(
    *, secret_key: str, date: str, service: str, string_to_sign: str,
) -> str:
    """Hex TC3-HMAC-SHA256 signature: derived key chain, then HMAC of StringToSign."""

    def _hmac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    secret_date = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    secret_service = _hmac(secret_date, service)
    secret_signing = _hmac(secret_service, "tc3_request")
    return hmac.new(secret_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def tc3_authorization(
    *, secret_id: str, secret_key: str, host: str, payload: bytes, timestamp: int,
    service: str = "sms", content_type: str = "application/json; charset=utf-8",
) -> str:
    """The ``Authorization`` header of a TC3-HMAC-SHA256 POST to ``/``."""
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical_headers = f"content-type:{content_type}\nhost:{host}\n"
    signed_headers = "content-type;host"
    canonical_request = "\n".join([
        "POST", "/", "", canonical_headers, signed_headers, hashlib.sha256(payload).hexdigest(),
    ])
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join([
        "TC3-HMAC-SHA256", str(timestamp), scope,
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
    ])
    signature = tc3_signature(secret_key=secret_key, date=date, service=service,
                              string_to_sign=string_to_sign)
    return (f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}")


TENCENT_HALT = frozenset({
    "FailedOperation.SignatureIncorrectOrUnapproved", "FailedOperation.TemplateIncorrectOrUnapproved",
    "FailedOperation.TemplateUnapprovedOrNotExist", "FailedOperation.InsufficientBalanceInSmsPackage",
    "InternalError.SigFieldMissing", "InternalError.SigVerificationFail",
    # Account-wide daily thresholds, like Aliyun's DAY_LIMIT_CONTROL: an operator decides.
    "LimitExceeded.AppDailyLimit", "LimitExceeded.AppGlobalDailyLimit",
    "LimitExceeded.AppMainlandChinaDailyLimit", "LimitExceeded.AppCountryOrRegionDailyLimit",
})
TENCENT_SUPPRESS = frozenset({
    "FailedOperation.PhoneNumberInBlacklist", "InvalidParameterValue.IncorrectPhoneNumber",
})
TENCENT_PERMANENT = frozenset({
    "FailedOperation.ContainSensitiveWord", "LimitExceeded.PhoneNumberCountLimit",
})
#: Per-number frequency windows: seconds to wait, or "day" for the next calendar day.
TENCENT_DEFER: dict[str, float | str] = {
    "LimitExceeded.DeliveryFrequencyLimit": 30.0,  # same content to same number ≤ 1 per 30 s
    "LimitExceeded.PhoneNumberThirtySecondLimit": 30.0,
    "LimitExceeded.PhoneNumberOneHourLimit": 3600.0,
    "LimitExceeded.PhoneNumberDailyLimit": "day",
    "LimitExceeded.PhoneNumberSameContentDailyLimit": "day",
}


def _next_local(now: datetime, tz: ZoneInfo, at: dtime) -> datetime:
    local = now.astimezone(tz)
    candidate = datetime.combine(local.date(), at, tzinfo=tz)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=tz)
    return candidate.astimezone(UTC)


def classify_tencent(
    code: str, message: str, *, now: datetime | None = None, quota_timezone: str = "Asia/Shanghai",
) -> SendResult:
    """Map a Tencent error code (not ``Ok``) to an outcome (CHANNELS.md §4)."""
    error = provider_error(code, message)
    now = now or datetime.now(UTC)
    if code.startswith("RequestLimitExceeded") or (
        code.startswith("InternalError") and code not in TENCENT_HALT
    ):
        return SendResult(Outcome.RETRY, error=error, code=code)
    if code in TENCENT_HALT or code.startswith(("AuthFailure", "UnauthorizedOperation")):
        return SendResult(Outcome.HALT, error=error, code=code)
    if code in TENCENT_SUPPRESS:
        return SendResult(Outcome.SUPPRESS, error=error, code=code)
    if code in TENCENT_PERMANENT:
        return SendResult(Outcome.PERMANENT, error=error, code=code)
    if code == "FailedOperation.MarketingSendTimeConstraint":
        # Tencent refuses marketing at night: come back at 08:00 local.
        until = _next_local(now, ZoneInfo(quota_timezone), dtime(8))
        return SendResult(Outcome.DEFER, error=error, code=code, defer_until=until)
    if code.startswith("LimitExceeded"):
        wait = TENCENT_DEFER.get(code, 3600.0)
        if wait == "day":  # per-number daily caps count natural days
            until = _next_local(now, ZoneInfo(quota_timezone), dtime(0))
        else:
            until = now + timedelta(seconds=float(wait))
        return SendResult(Outcome.DEFER, error=error, code=code, defer_until=until)
    return SendResult(Outcome.PERMANENT, error=error, code=code)


def e164(recipient: str, default_country_code: str) -> str:
    """``recipient`` in E.164 (``+`` and country code), as Tencent requires."""
    number = recipient.strip().replace(" ", "").replace("-", "")
    if number.startswith("+"):
        return number
    if number.startswith("00"):
        return "+" + number[2:]
    return f"+{default_country_code}{number}"


class TencentSmsChannel(HttpSmsChannel[TencentSmsConfig]):
    """Sends template SMS through Tencent Cloud SMS ``SendSms``."""

    user_agent = "nurture-tencent-sms/1"

    def body(self, message: OutboundMessage) -> dict[str, Any]:
        """The SendSms JSON body.

        Raises:
            ValueError: the template gives no usable TemplateParamSet.
        """
        opts = self.options
        marketing = is_marketing(message)
        if "json" in message.parts:
            loaded = json.loads(message.parts["json"])
            if isinstance(loaded, dict):  # an object: its values, in order
                loaded = list(loaded.values())
            if not isinstance(loaded, list):
                raise ValueError("json part must be a list for Tencent TemplateParamSet")
            param_set = [str(v) for v in loaded]
        else:
            param_set = [param_value(message, src) for src in opts.params]
        if marketing and opts.opt_out_param:
            param_set.append(opts.opt_out_text)
        return {
            "PhoneNumberSet": [e164(message.recipient, opts.default_country_code)],
            "SmsSdkAppId": opts.sdk_app_id,
            "SignName": (opts.marketing_sign_name if marketing else None) or opts.sign_name,
            "TemplateId": (opts.marketing_template_id if marketing else None) or opts.template_id,
            "TemplateParamSet": param_set,
            "SessionContext": message.send_key[:512],
        }

    def send(self, message: OutboundMessage) -> SendResult:
        """Call SendSms for one number and classify the answer."""
        secret_id = read_secret(self.options.secret_id_env)
        secret_key = read_secret(self.options.secret_key_env)
        if not secret_id or not secret_key:
            return SendResult(Outcome.HALT, error="Tencent SecretId/SecretKey env vars are not set",
                              code="config")
        try:
            body = self.body(message)
        except (ValueError, MissingParam) as exc:
            return SendResult(Outcome.PERMANENT, error=f"template params: {exc}", code="params")
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        host = urlsplit(self.options.endpoint).netloc
        timestamp = int(datetime.now(UTC).timestamp())
        content_type = "application/json; charset=utf-8"
        headers = {
            "Authorization": tc3_authorization(
                secret_id=secret_id, secret_key=secret_key, host=host, payload=payload,
                timestamp=timestamp, content_type=content_type,
            ),
            "Content-Type": content_type,
            "Host": host,
            "X-TC-Action": "SendSms",
            "X-TC-Version": "2021-01-11",
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": self.options.region,
        }
        return self.call("POST", self.options.endpoint + "/", content=payload, headers=headers)

    def classify(self, response: httpx.Response) -> SendResult:
        """Map an HTTP answer of SendSms to an outcome (API error, else the number's status)."""
        try:
            data = response.json()["Response"]
        except (ValueError, KeyError, TypeError):
            status = str(response.status_code)
            return classify_by_status(response, status, f"HTTP {status}")
        tz = self.options.quota_timezone
        error = data.get("Error")
        if isinstance(error, dict):
            return classify_tencent(str(error.get("Code", "")), str(error.get("Message", "")),
                                    quota_timezone=tz)
        statuses = data.get("SendStatusSet") or []
        if not statuses:
            return SendResult(Outcome.RETRY, error="no SendStatusSet in answer", code="empty")
        status = statuses[0]
        code = str(status.get("Code", ""))
        if code == "Ok":
            serial = status.get("SerialNo")
            return SendResult.ok(str(serial) if serial else None, code=code)
        return classify_tencent(code, str(status.get("Message", "")), quota_timezone=tz)
