"""SMS channels: Aliyun Dysms, Tencent Cloud SMS and Twilio, one recipient per call.

Each channel signs its request the way the provider documents it, implemented here with
``hmac``/``hashlib`` (no provider SDKs):

* Aliyun ``SendSms`` (2017-05-25): RPC signature. Parameters sorted by name, names and values
  percent-encoded (RFC 3986: space -> %20, ``*`` -> %2A, ``~`` kept), joined with ``&``;
  ``StringToSign = "GET&%2F&" + percent_encode(canonical)``;
  ``Signature = base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))``.
* Tencent ``SendSms`` (2021-01-11): TC3-HMAC-SHA256. CanonicalRequest (method, URI, query,
  canonical headers ``content-type`` and ``host``, signed headers, sha256 of the payload) ->
  ``StringToSign = "TC3-HMAC-SHA256\\n{ts}\\n{date}/sms/tc3_request\\n{sha256(canonical)}"``;
  key chain ``HMAC("TC3"+SecretKey, date)`` -> ``sms`` -> ``tc3_request``; hex signature in
  ``Authorization: TC3-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…``.
* Twilio Messages: HTTP Basic ``AccountSid:AuthToken``, form-encoded body.

Answers are classified per CHANNELS.md §3-§5 into :class:`~campaigns.sending.messages.Outcome`; the
provider's message id (Aliyun ``BizId``, Tencent ``SerialNo``, Twilio ``sid``) is returned as
``provider_message_id``. A timeout is ambiguous for SMS (the provider may have accepted), so it
is a RETRY with code ``timeout``: whoever retries should check the receipt first (§0.3).
Errors carry the provider code and a message with long digit runs masked (no phone numbers).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import httpx

from campaigns.config.options.sms import AliyunSmsConfig, TencentSmsConfig, TwilioConfig
from campaigns.config.secretvalues import read_secret
from campaigns.sending.messages import OutboundMessage, Outcome, SendResult
from workers.channels.webhook import parse_retry_after

#: Message fields a template parameter may name besides the rendered parts.
MESSAGE_FIELDS = ("recipient", "customer_external_id", "send_key", "campaign")

_DIGITS = re.compile(r"\d{5,}")


def _mask(text: str) -> str:
    """Provider messages sometimes echo the number: keep them PII-free."""
    return _DIGITS.sub("***", text)[:160]


def _error(code: str, message: str) -> str:
    return f"{code}: {_mask(message)}" if message else code


def is_marketing(message: OutboundMessage) -> bool:
    """Whether compliance rules for marketing SMS apply (``metadata["purpose"]``)."""
    return message.metadata.get("purpose") == "marketing"


class _MissingParam(Exception):
    pass


def _param_value(message: OutboundMessage, source: str) -> str:
    if source in message.parts:
        return message.parts[source].strip()
    if source in MESSAGE_FIELDS:
        return str(getattr(message, source))
    raise _MissingParam(source)


class _HttpChannel:
    """Per-thread keep-alive clients, shared by the three providers."""

    _user_agent = "nurture-sms/1"

    def __init__(self, *, name: str, timeout_s: float, transport: httpx.BaseTransport | None) -> None:
        self.name = name
        self._timeout_s = timeout_s
        self._transport = transport
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(
                timeout=self._timeout_s, transport=self._transport,
                headers={"User-Agent": self._user_agent},
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response | SendResult:
        try:
            return self._client().request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            # Ambiguous: the provider may have accepted. Check the receipt before resending.
            return SendResult(Outcome.RETRY, error=f"timeout: {type(exc).__name__}", code="timeout")
        except httpx.TransportError as exc:
            return SendResult(Outcome.RETRY, error=f"network error: {type(exc).__name__}", code="network")

    def close(self) -> None:
        """Close every thread's client."""
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()


def _http_fallback(response: httpx.Response, code: str, error: str) -> SendResult:
    """Classify by HTTP status when the body carries no provider code we know."""
    status = response.status_code
    if status == 429 or status >= 500 or status == 408:
        return SendResult(Outcome.RETRY, error=error, code=code,
                          retry_after_s=parse_retry_after(response.headers.get("Retry-After")))
    if status in (401, 403):
        return SendResult(Outcome.HALT, error=error, code=code)
    return SendResult(Outcome.PERMANENT, error=error, code=code)


# --------------------------------------------------------------------------- Aliyun


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
    error = _error(code, message)
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


def aliyun_phone(recipient: str) -> str:
    """Aliyun wants mainland numbers bare and others as country code + number, no "+"."""
    number = recipient.strip().replace(" ", "").replace("-", "")
    if number.startswith("+86"):
        return number[3:]
    return number.lstrip("+")


class AliyunSmsChannel(_HttpChannel):
    """Sends template SMS through Aliyun Dysms ``SendSms``."""

    _user_agent = "nurture-aliyun-sms/1"

    def __init__(
        self, *, name: str, options: AliyunSmsConfig, transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(name=name, timeout_s=options.timeout.total_seconds(), transport=transport)
        self.options = options

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
            template_param = {key: _param_value(message, src) for key, src in opts.params.items()}
        if marketing and opts.opt_out_param:
            template_param.setdefault(opts.opt_out_param, opts.opt_out_text)
        params = {
            "PhoneNumbers": aliyun_phone(message.recipient),
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
        except (ValueError, _MissingParam) as exc:
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
        response = self._request("GET", f"{self.options.endpoint}/?{query}")
        if isinstance(response, SendResult):
            return response
        return self.classify(response)

    def classify(self, response: httpx.Response) -> SendResult:
        """Map an HTTP answer of SendSms to an outcome."""
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not data.get("Code"):
            status = str(response.status_code)
            return _http_fallback(response, status, f"HTTP {status}")
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


# --------------------------------------------------------------------------- Tencent


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
    error = _error(code, message)
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


class TencentSmsChannel(_HttpChannel):
    """Sends template SMS through Tencent Cloud SMS ``SendSms``."""

    _user_agent = "nurture-tencent-sms/1"

    def __init__(
        self, *, name: str, options: TencentSmsConfig, transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(name=name, timeout_s=options.timeout.total_seconds(), transport=transport)
        self.options = options

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
            param_set = [_param_value(message, src) for src in opts.params]
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
        except (ValueError, _MissingParam) as exc:
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
        response = self._request("POST", self.options.endpoint + "/", content=payload, headers=headers)
        if isinstance(response, SendResult):
            return response
        return self.classify(response)

    def classify(self, response: httpx.Response) -> SendResult:
        """Map an HTTP answer of SendSms to an outcome (API error, else the number's status)."""
        try:
            data = response.json()["Response"]
        except (ValueError, KeyError, TypeError):
            status = str(response.status_code)
            return _http_fallback(response, status, f"HTTP {status}")
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


# --------------------------------------------------------------------------- Twilio


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
    error = _error(code, message)
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


class TwilioChannel(_HttpChannel):
    """Sends free-text SMS through Twilio's Messages resource."""

    _user_agent = "nurture-twilio/1"

    def __init__(
        self, *, name: str, options: TwilioConfig, transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(name=name, timeout_s=options.timeout.total_seconds(), transport=transport)
        self.options = options

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
        response = self._request("POST", url, data=form, auth=(sid, token))
        if isinstance(response, SendResult):
            return response
        return self.classify(response)

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
