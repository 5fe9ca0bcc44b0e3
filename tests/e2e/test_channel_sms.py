"""SMS channels against loopback fakes of Aliyun, Tencent Cloud and Twilio.

Each fake recomputes the provider's documented signature or auth from the raw request,
independently of the channel's code, checks the required parameters, and answers with a
scripted provider response. Every row of CHANNELS.md §3-§5's error tables is played.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlsplit
from zoneinfo import ZoneInfo

import pytest

from campaigns.config.options.aliyun import AliyunSmsConfig
from campaigns.config.options.tencent import TencentSmsConfig
from campaigns.config.options.twilio import TwilioConfig
from campaigns.sending.messages import OutboundMessage, Outcome
from workers.channels.sms.aliyun import AliyunSmsChannel
from workers.channels.sms.tencent import TencentSmsChannel
from workers.channels.sms.twilio import TwilioChannel

SEND_KEY = "9f" * 32
ALIYUN_ID, ALIYUN_SECRET = "LTAI-test-id", "aliyun/secret+*~ key"
TENCENT_ID, TENCENT_KEY = "AKIDtest", "tencent-secret-key"
TWILIO_SID, TWILIO_TOKEN = "AC" + "0" * 32, "twilio-token"


# --------------------------------------------------------------------------- fake provider


@dataclass
class Fake:
    """A loopback provider: ``check`` validates a request (returns problems), ``answers``
    are played in order (status, json body, headers), then ``default``."""

    check: Callable[[str, str, dict[str, str], bytes], list[str]]
    default: tuple[int, Any, dict[str, str]]
    url: str = ""
    answers: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.answers.append((status, body, headers or {}))


def serve(fake: Fake) -> Iterator[Fake]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            problems = fake.check(self.command, self.path, headers, body)
            with fake.lock:
                fake.requests.append((self.command, self.path, headers, body))
                fake.problems.extend(problems)
                status, payload, extra = fake.answers.pop(0) if fake.answers else fake.default
            if problems:  # a wrongly signed request gets the provider's auth error shape
                status, payload, extra = 400, {"problems": problems}, {}
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = _handle

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def message(*, purpose: str | None = "transactional", recipient: str = "+8613800138000",
            **parts: str) -> OutboundMessage:
    return OutboundMessage(
        send_key=SEND_KEY, delivery_id=7, campaign="spring", step=0, channel="sms",
        recipient=recipient, customer_external_id="C42",
        parts=parts or {"json": json.dumps({"name": "李雷", "code": "A b*~"})},
        metadata={"purpose": purpose} if purpose else {},
    )


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALI_ID", ALIYUN_ID)
    monkeypatch.setenv("ALI_SECRET", ALIYUN_SECRET)
    monkeypatch.setenv("TC_ID", TENCENT_ID)
    monkeypatch.setenv("TC_KEY", TENCENT_KEY)
    monkeypatch.setenv("TW_SID", TWILIO_SID)
    monkeypatch.setenv("TW_TOKEN", TWILIO_TOKEN)


# --------------------------------------------------------------------------- Aliyun


def aliyun_encode(value: str) -> str:
    # The documented recipe: form-encode, then "+" -> %20, "*" -> %2A, %7E -> "~".
    return quote_plus(value, safe="").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


def aliyun_check(method: str, path: str, headers: dict[str, str], body: bytes) -> list[str]:
    problems = []
    query = dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))
    signature = query.pop("Signature", None)
    canonical = "&".join(f"{aliyun_encode(k)}={aliyun_encode(v)}" for k, v in sorted(query.items()))
    to_sign = "GET&%2F&" + aliyun_encode(canonical)
    expected = base64.b64encode(
        hmac.new((ALIYUN_SECRET + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    if method != "GET" or urlsplit(path).path != "/":
        problems.append(f"bad request line {method} {path}")
    if signature is None or not hmac.compare_digest(signature, expected):
        problems.append("SignatureDoesNotMatch")
    fixed = {"Action": "SendSms", "Version": "2017-05-25", "Format": "JSON", "SignatureMethod": "HMAC-SHA1",
             "SignatureVersion": "1.0", "AccessKeyId": ALIYUN_ID, "RegionId": "cn-hangzhou",
             "OutId": SEND_KEY}
    problems += [f"{k}={query.get(k)!r}" for k, v in fixed.items() if query.get(k) != v]
    for required in ("PhoneNumbers", "SignName", "TemplateCode", "SignatureNonce", "Timestamp"):
        if not query.get(required):
            problems.append(f"missing {required}")
    try:
        stamp = datetime.strptime(query.get("Timestamp", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if abs((datetime.now(UTC) - stamp).total_seconds()) > 900:
            problems.append("InvalidTimeStamp.Expired")
    except ValueError:
        problems.append("Timestamp not ISO 8601 UTC")
    if "TemplateParam" in query and not isinstance(json.loads(query["TemplateParam"]), dict):
        problems.append("TemplateParam is not a JSON object string")
    return problems


ALIYUN_OK = (200, {"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0", "RequestId": "R1"}, {})


@pytest.fixture
def aliyun() -> Iterator[Fake]:
    yield from serve(Fake(check=aliyun_check, default=ALIYUN_OK))


def aliyun_channel(fake: Fake, **overrides: Any) -> AliyunSmsChannel:
    options = AliyunSmsConfig(
        kind="aliyun_sms", access_key_id_env="ALI_ID", access_key_secret_env="ALI_SECRET",
        sign_name="阿里云短信测试", template_code="SMS_1", endpoint=fake.url, **overrides,
    )
    return AliyunSmsChannel(name="ali", options=options)


def test_aliyun_signs_as_documented_and_stores_the_biz_id(aliyun: Fake) -> None:
    channel = aliyun_channel(aliyun)
    result = channel.send(message())
    channel.close()
    assert aliyun.problems == []
    assert result.outcome is Outcome.OK
    assert result.provider_message_id == "900619746936498440^0"
    query = dict(parse_qsl(urlsplit(aliyun.requests[0][1]).query))
    assert query["PhoneNumbers"] == "13800138000"  # mainland numbers go bare
    assert query["SignName"] == "阿里云短信测试"
    assert json.loads(query["TemplateParam"]) == {"name": "李雷", "code": "A b*~"}


def test_aliyun_marketing_uses_the_marketing_signature_template_and_opt_out(aliyun: Fake) -> None:
    channel = aliyun_channel(aliyun, marketing_sign_name="品牌", marketing_template_code="SMS_M",
                             opt_out_param="unsub", params={"name": "sms"})
    assert channel.send(message(purpose="marketing", sms=" 韩梅梅\n")).outcome is Outcome.OK
    assert channel.send(message(purpose="transactional", sms="韩梅梅")).outcome is Outcome.OK
    channel.close()
    assert aliyun.problems == []
    marketing, transactional = (dict(parse_qsl(urlsplit(r[1]).query)) for r in aliyun.requests)
    assert (marketing["SignName"], marketing["TemplateCode"]) == ("品牌", "SMS_M")
    assert json.loads(marketing["TemplateParam"]) == {"name": "韩梅梅", "unsub": "拒收请回复R"}
    assert (transactional["SignName"], transactional["TemplateCode"]) == ("阿里云短信测试", "SMS_1")
    assert json.loads(transactional["TemplateParam"]) == {"name": "韩梅梅"}


ALIYUN_ROWS = [
    ("isp.SYSTEM_ERROR", "", Outcome.RETRY),
    ("Throttling.User", "", Outcome.RETRY),
    ("Throttling.Api", "", Outcome.RETRY),
    ("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1", Outcome.DEFER),
    ("isv.DAY_LIMIT_CONTROL", "", Outcome.HALT),
    ("isv.MONTH_LIMIT_CONTROL", "", Outcome.HALT),
    ("isv.AMOUNT_NOT_ENOUGH", "", Outcome.HALT),
    ("isv.OUT_OF_SERVICE", "", Outcome.HALT),
    ("isp.RAM_PERMISSION_DENY", "", Outcome.HALT),
    ("isv.SMS_SIGNATURE_ILLEGAL", "", Outcome.HALT),
    ("isv.SMS_TEMPLATE_ILLEGAL", "", Outcome.HALT),
    ("isv.SMS_SIGNATURE_SCENE_ILLEGAL", "", Outcome.HALT),
    ("isv.MOBILE_NUMBER_ILLEGAL", "", Outcome.SUPPRESS),
    ("isv.BLACK_KEY_CONTROL_LIMIT", "", Outcome.SUPPRESS),
    ("isv.INVALID_PARAMETERS", "", Outcome.PERMANENT),
    ("isv.TEMPLATE_MISSING_PARAMETERS", "", Outcome.PERMANENT),
    ("isv.INVALID_JSON_PARAM", "", Outcome.PERMANENT),
    ("isv.PARAM_LENGTH_LIMIT", "", Outcome.PERMANENT),
    ("isv.PARAM_NOT_SUPPORT_URL", "", Outcome.PERMANENT),
    ("isv.SMS_CONTENT_ILLEGAL", "", Outcome.PERMANENT),
    ("SignatureDoesNotMatch", "", Outcome.HALT),
    ("InvalidAccessKeyId.NotFound", "", Outcome.HALT),
]


@pytest.mark.parametrize(("code", "text", "outcome"), ALIYUN_ROWS)
def test_aliyun_error_codes_map_to_outcomes(aliyun: Fake, code: str, text: str, outcome: Outcome) -> None:
    aliyun.answer(200, {"Code": code, "Message": text or code.lower(), "RequestId": "R2"})
    channel = aliyun_channel(aliyun)
    result = channel.send(message())
    channel.close()
    assert aliyun.problems == []
    assert (result.outcome, result.code) == (outcome, code)


@pytest.mark.parametrize(
    ("text", "window"),
    [("触发分钟级流控Permits:1", timedelta(minutes=1)), ("触发小时级流控Permits:5", timedelta(hours=1)),
     ("触发天级流控Permits:10", timedelta(days=1)), ("flow control", timedelta(hours=2))],
)
def test_aliyun_flow_control_defers_to_the_window_in_the_message(aliyun: Fake, text: str,
                                                                  window: timedelta) -> None:
    aliyun.answer(200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": text})
    channel = aliyun_channel(aliyun, flow_control_default_defer="2h")
    before = datetime.now(UTC)
    result = channel.send(message())
    channel.close()
    assert result.outcome is Outcome.DEFER and result.defer_until is not None
    assert before + window <= result.defer_until <= datetime.now(UTC) + window


def test_aliyun_http_errors_without_a_code_and_redacts_numbers(aliyun: Fake) -> None:
    aliyun.answer(503, b"<html>busy</html>", {"Retry-After": "7"})
    aliyun.answer(200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "invalid 13800138000"})
    aliyun.answer(500, {"Code": "isv.UNKNOWN_THING", "Message": "x"})
    channel = aliyun_channel(aliyun)
    busy, bad, unknown = (channel.send(message()) for _ in range(3))
    channel.close()
    assert (busy.outcome, busy.retry_after_s) == (Outcome.RETRY, 7)
    assert bad.outcome is Outcome.SUPPRESS and "13800138000" not in (bad.error or "")
    assert unknown.outcome is Outcome.RETRY


def test_missing_credentials_halt_and_missing_params_are_permanent(aliyun: Fake,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    channel = aliyun_channel(aliyun, params={"name": "nope"})
    assert channel.send(message(sms="x")).outcome is Outcome.PERMANENT
    monkeypatch.delenv("ALI_SECRET")
    assert channel.send(message()).outcome is Outcome.HALT
    channel.close()
    assert aliyun.requests == []


def test_network_failures_and_timeouts_retry() -> None:
    options = AliyunSmsConfig(kind="aliyun_sms", access_key_id_env="ALI_ID", access_key_secret_env="ALI_SECRET",
                              sign_name="s", template_code="t", endpoint="http://127.0.0.1:9")
    result = AliyunSmsChannel(name="ali", options=options).send(message())
    assert (result.outcome, result.code) == (Outcome.RETRY, "network")


def test_a_silent_provider_is_a_retryable_timeout() -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        options = TencentSmsConfig(kind="tencent_sms", secret_id_env="TC_ID", secret_key_env="TC_KEY",
                                   sdk_app_id="1400000000", sign_name="s", template_id="1", timeout=timedelta(milliseconds=300),
                                   endpoint=f"http://127.0.0.1:{listener.getsockname()[1]}")
        channel = TencentSmsChannel(name="tc", options=options)
        result = channel.send(message())
        channel.close()
    finally:
        listener.close()
    assert (result.outcome, result.code) == (Outcome.RETRY, "timeout")


# --------------------------------------------------------------------------- Tencent


def tencent_check(method: str, path: str, headers: dict[str, str], body: bytes) -> list[str]:
    problems = []
    timestamp = int(headers.get("x-tc-timestamp", "0"))
    date = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    canonical_request = (
        f"POST\n/\n\ncontent-type:{headers.get('content-type', '')}\nhost:{headers.get('host', '')}\n\n"
        f"content-type;host\n{hashlib.sha256(body).hexdigest()}"
    )
    string_to_sign = (f"TC3-HMAC-SHA256\n{timestamp}\n{date}/sms/tc3_request\n"
                      f"{hashlib.sha256(canonical_request.encode()).hexdigest()}")
    key = hmac.new(b"TC3" + TENCENT_KEY.encode(), date.encode(), hashlib.sha256).digest()
    key = hmac.new(key, b"sms", hashlib.sha256).digest()
    key = hmac.new(key, b"tc3_request", hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    expected = (f"TC3-HMAC-SHA256 Credential={TENCENT_ID}/{date}/sms/tc3_request, "
                f"SignedHeaders=content-type;host, Signature={signature}")
    if method != "POST" or path != "/":
        problems.append(f"bad request line {method} {path}")
    if not hmac.compare_digest(headers.get("authorization", ""), expected):
        problems.append("AuthFailure.SignatureFailure")
    if abs(time.time() - timestamp) > 300:
        problems.append("AuthFailure.SignatureExpire")
    expected_headers = {"x-tc-action": "SendSms", "x-tc-version": "2021-01-11", "x-tc-region": "ap-guangzhou",
                        "content-type": "application/json; charset=utf-8"}
    problems += [f"{k}: {headers.get(k)!r}" for k, v in expected_headers.items() if headers.get(k) != v]
    payload = json.loads(body)
    numbers = payload.get("PhoneNumberSet")
    if not (isinstance(numbers, list) and len(numbers) == 1 and numbers[0].startswith("+")):
        problems.append("PhoneNumberSet must hold one E.164 number")
    for required in ("SmsSdkAppId", "SignName", "TemplateId"):
        if not payload.get(required):
            problems.append(f"missing {required}")
    params = payload.get("TemplateParamSet", [])
    if not (isinstance(params, list) and all(isinstance(p, str) for p in params)):
        problems.append("TemplateParamSet must be a list of strings")
    if payload.get("SessionContext") != SEND_KEY:
        problems.append("SessionContext is not the send key")
    return problems


def tencent_status(code: str = "Ok", message: str = "send success", serial: str = "") -> dict[str, Any]:
    return {"Response": {"SendStatusSet": [{
        "SerialNo": serial, "PhoneNumber": "+8613800138000", "Fee": 1, "SessionContext": SEND_KEY,
        "Code": code, "Message": message, "IsoCode": "CN"}], "RequestId": "req-1"}}


def tencent_error(code: str, message: str = "error") -> dict[str, Any]:
    return {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": "req-2"}}


@pytest.fixture
def tencent() -> Iterator[Fake]:
    yield from serve(Fake(check=tencent_check, default=(200, tencent_status(serial="2433:3388"), {})))


def tencent_channel(fake: Fake, **overrides: Any) -> TencentSmsChannel:
    options = TencentSmsConfig(kind="tencent_sms", secret_id_env="TC_ID", secret_key_env="TC_KEY",
                               sdk_app_id="1400006666", sign_name="腾讯云", template_id="449739",
                               endpoint=fake.url, **overrides)
    return TencentSmsChannel(name="tc", options=options)


def test_tencent_signs_tc3_as_documented_and_stores_the_serial_no(tencent: Fake) -> None:
    channel = tencent_channel(tencent)
    result = channel.send(message(recipient="13800138000", json='["1234", "5"]'))
    channel.close()
    assert tencent.problems == []
    assert (result.outcome, result.provider_message_id) == (Outcome.OK, "2433:3388")
    body = json.loads(tencent.requests[0][3])
    assert body["PhoneNumberSet"] == ["+8613800138000"]
    assert body["TemplateParamSet"] == ["1234", "5"]


def test_tencent_marketing_appends_the_opt_out_param(tencent: Fake) -> None:
    channel = tencent_channel(tencent, params=["sms", "customer_external_id"], opt_out_param=True,
                              marketing_template_id="777")
    assert channel.send(message(purpose="marketing", sms="春季特卖")).outcome is Outcome.OK
    assert channel.send(message(purpose=None, sms="春季特卖")).outcome is Outcome.OK
    channel.close()
    assert tencent.problems == []
    marketing, plain = (json.loads(r[3]) for r in tencent.requests)
    assert (marketing["TemplateId"], marketing["TemplateParamSet"]) == ("777", ["春季特卖", "C42", "拒收请回复R"])
    assert (plain["TemplateId"], plain["TemplateParamSet"]) == ("449739", ["春季特卖", "C42"])


TENCENT_ROWS = [
    ("RequestLimitExceeded", Outcome.RETRY),
    ("RequestLimitExceeded.PhoneNumberCountLimit", Outcome.RETRY),
    ("InternalError.Timeout", Outcome.RETRY),
    ("LimitExceeded.DeliveryFrequencyLimit", Outcome.DEFER),
    ("LimitExceeded.PhoneNumberThirtySecondLimit", Outcome.DEFER),
    ("LimitExceeded.PhoneNumberOneHourLimit", Outcome.DEFER),
    ("LimitExceeded.PhoneNumberDailyLimit", Outcome.DEFER),
    ("LimitExceeded.PhoneNumberSameContentDailyLimit", Outcome.DEFER),
    ("LimitExceeded.AppDailyLimit", Outcome.HALT),
    ("FailedOperation.PhoneNumberInBlacklist", Outcome.SUPPRESS),
    ("InvalidParameterValue.IncorrectPhoneNumber", Outcome.SUPPRESS),
    ("FailedOperation.SignatureIncorrectOrUnapproved", Outcome.HALT),
    ("FailedOperation.TemplateIncorrectOrUnapproved", Outcome.HALT),
    ("AuthFailure.SignatureFailure", Outcome.HALT),
    ("AuthFailure.SecretIdNotFound", Outcome.HALT),
    ("FailedOperation.InsufficientBalanceInSmsPackage", Outcome.HALT),
    ("UnauthorizedOperation.SmsSdkAppIdVerifyFail", Outcome.HALT),
    ("FailedOperation.ContainSensitiveWord", Outcome.PERMANENT),
    ("FailedOperation.MarketingSendTimeConstraint", Outcome.DEFER),
    ("InvalidParameterValue.ProhibitedUseUrlInTemplateParameter", Outcome.PERMANENT),
]


@pytest.mark.parametrize(("code", "outcome"), TENCENT_ROWS)
@pytest.mark.parametrize("where", ["api_error", "send_status"])
def test_tencent_codes_map_to_outcomes(tencent: Fake, code: str, outcome: Outcome, where: str) -> None:
    # Tencent reports a code either for the whole call (Response.Error) or per number.
    tencent.answer(200, tencent_error(code) if where == "api_error" else tencent_status(code, "no"))
    channel = tencent_channel(tencent)
    result = channel.send(message())
    channel.close()
    assert tencent.problems == []
    assert (result.outcome, result.code) == (outcome, code)


def test_tencent_deferrals_follow_the_window() -> None:
    from workers.channels.sms.tencent import classify_tencent

    now = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    shanghai = ZoneInfo("Asia/Shanghai")
    assert classify_tencent("LimitExceeded.DeliveryFrequencyLimit", "", now=now).defer_until == now + timedelta(seconds=30)
    assert classify_tencent("LimitExceeded.PhoneNumberOneHourLimit", "", now=now).defer_until == now + timedelta(hours=1)
    daily = classify_tencent("LimitExceeded.PhoneNumberDailyLimit", "", now=now).defer_until
    assert daily == datetime(2026, 3, 2, 0, 0, tzinfo=shanghai)
    night = classify_tencent("FailedOperation.MarketingSendTimeConstraint", "", now=now).defer_until
    assert night == datetime(2026, 3, 2, 8, 0, tzinfo=shanghai)


def test_tencent_http_errors_retry(tencent: Fake) -> None:
    tencent.answer(502, b"bad gateway")
    channel = tencent_channel(tencent)
    result = channel.send(message())
    channel.close()
    assert (result.outcome, result.code) == (Outcome.RETRY, "502")


# --------------------------------------------------------------------------- Twilio


def twilio_check(method: str, path: str, headers: dict[str, str], body: bytes) -> list[str]:
    problems = []
    expected_auth = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
    if not hmac.compare_digest(headers.get("authorization", ""), expected_auth):
        problems.append("20003 authenticate")
    if (method, path) != ("POST", f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"):
        problems.append(f"bad request line {method} {path}")
    if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        problems.append("not form encoded")
    form = dict(parse_qsl(body.decode()))
    if not form.get("To", "").startswith("+"):
        problems.append("To must be E.164")
    if not (form.get("From") or form.get("MessagingServiceSid")):
        problems.append("21603 From or MessagingServiceSid required")
    if not form.get("Body"):
        problems.append("21602 Body required")
    if "ValidityPeriod" in form and not 1 <= int(form["ValidityPeriod"]) <= 36000:
        problems.append("ValidityPeriod out of range")
    return problems


TWILIO_OK = (201, {"sid": "SM" + "a" * 32, "status": "queued", "num_segments": "1",
                   "error_code": None, "error_message": None}, {})


@pytest.fixture
def twilio() -> Iterator[Fake]:
    yield from serve(Fake(check=twilio_check, default=TWILIO_OK))


def twilio_channel(fake: Fake, **overrides: Any) -> TwilioChannel:
    options = TwilioConfig.model_validate({
        "kind": "twilio", "account_sid_env": "TW_SID", "auth_token_env": "TW_TOKEN",
        "from": "+15005550006", "endpoint": fake.url, **overrides})
    return TwilioChannel(name="tw", options=options)


def test_twilio_posts_with_basic_auth_and_stores_the_sid(twilio: Fake) -> None:
    channel = twilio_channel(twilio, status_callback="https://hooks.example.com/twilio/status",
                             validity_period=3600)
    result = channel.send(message(sms="Your code is 1234"))
    channel.close()
    assert twilio.problems == []
    assert (result.outcome, result.provider_message_id) == (Outcome.OK, "SM" + "a" * 32)
    form = dict(parse_qsl(twilio.requests[0][3].decode()))
    assert form == {"To": "+8613800138000", "From": "+15005550006", "Body": "Your code is 1234",
                    "StatusCallback": "https://hooks.example.com/twilio/status", "ValidityPeriod": "3600"}


def test_twilio_marketing_gets_brand_and_opt_out_once(twilio: Fake) -> None:
    channel = twilio_channel(twilio, marketing_prefix="Acme: ", messaging_service_sid="MG1")
    channel.send(message(purpose="marketing", sms="Spring sale!"))
    channel.send(message(purpose="marketing", sms="Acme: Sale. reply stop to opt out"))
    channel.send(message(purpose="transactional", txt="Your order shipped"))
    channel.close()
    assert twilio.problems == []
    forms = [dict(parse_qsl(r[3].decode())) for r in twilio.requests]
    assert forms[0]["Body"] == "Acme: Spring sale!\nReply STOP to opt out"
    assert forms[1]["Body"] == "Acme: Sale. reply stop to opt out"
    assert forms[2]["Body"] == "Your order shipped"
    assert forms[0]["MessagingServiceSid"] == "MG1" and "From" not in forms[0]


def test_twilio_marketing_expires_before_the_customers_quiet_hours(twilio: Fake) -> None:
    channel = twilio_channel(twilio, validity_period=3600)
    soon = message(purpose="marketing", sms="Sale")
    soon.metadata["deliver_within_s"] = 900  # quiet hours start in 15 minutes
    later = message(purpose="marketing", sms="Sale")
    later.metadata["deliver_within_s"] = 5 * 3600  # the channel's own hour is tighter
    channel.send(soon)
    channel.send(later)
    channel.close()
    assert twilio.problems == []
    assert [dict(parse_qsl(r[3].decode()))["ValidityPeriod"] for r in twilio.requests] == ["900", "3600"]


def twilio_error(status: int, code: int | None) -> dict[str, Any]:
    return {"code": code, "message": "error for +8613800138000", "more_info": "https://…", "status": status}


TWILIO_ROWS = [
    (429, 20429, {"Retry-After": "12"}, Outcome.RETRY),
    (429, None, {}, Outcome.RETRY),
    (400, 21610, {}, Outcome.SUPPRESS),
    (400, 21611, {}, Outcome.RETRY),
    (400, 30001, {}, Outcome.RETRY),
    (400, 30036, {}, Outcome.PERMANENT),
    (400, 30003, {}, Outcome.PERMANENT),
    (400, 30004, {}, Outcome.PERMANENT),
    (400, 30005, {}, Outcome.SUPPRESS),
    (400, 30006, {}, Outcome.SUPPRESS),
    (400, 30007, {}, Outcome.PERMANENT),
    (500, 20500, {}, Outcome.RETRY),
    (503, None, {}, Outcome.RETRY),
    (401, 20003, {}, Outcome.HALT),
    (400, 21211, {}, Outcome.PERMANENT),
]


@pytest.mark.parametrize(("status", "code", "headers", "outcome"), TWILIO_ROWS)
def test_twilio_errors_map_to_outcomes(twilio: Fake, status: int, code: int | None,
                                       headers: dict[str, str], outcome: Outcome) -> None:
    twilio.answer(status, twilio_error(status, code), headers)
    channel = twilio_channel(twilio, queue_overflow_retry_after="90s")
    result = channel.send(message(sms="hi"))
    channel.close()
    assert twilio.problems == []
    assert result.outcome is outcome
    assert result.code == str(code if code is not None else status)
    assert "13800138000" not in (result.error or "")
    if "Retry-After" in headers:
        assert result.retry_after_s == 12
    if code in (21611, 30001):
        assert result.retry_after_s == 90


def test_twilio_rejects_an_empty_body_without_calling(twilio: Fake) -> None:
    channel = twilio_channel(twilio)
    assert channel.send(message(html="<p>only html</p>")).outcome is Outcome.PERMANENT
    channel.close()
    assert twilio.requests == []


def test_channels_are_safe_across_threads(aliyun: Fake) -> None:
    channel = aliyun_channel(aliyun)
    results: list[Outcome] = []

    def work() -> None:
        for _ in range(5):
            results.append(channel.send(message()).outcome)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    channel.close()
    assert aliyun.problems == []
    assert results == [Outcome.OK] * 20


# --------------------------------------------------------------------------- published vectors


def test_aliyun_signature_matches_the_documented_example() -> None:
    from workers.channels.sms.aliyun import aliyun_sign

    # The worked SendSms example of Aliyun's signing documentation.
    params = {
        "AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123",
        "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0", "TemplateCode": "SMS_71390007", "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z", "Version": "2017-05-25",
    }
    assert aliyun_sign(params, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_tc3_signature_matches_the_documented_example() -> None:
    from workers.channels.sms.tencent import tc3_authorization

    # The worked DescribeInstances example of Tencent's "Signature v3" page (masked key as printed).
    payload = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
    header = tc3_authorization(
        secret_id="AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******", secret_key="Gu5t9xGARNpq86cd98joQYCN3*******",
        host="cvm.tencentcloudapi.com", payload=payload, timestamp=1551113065, service="cvm",
    )
    assert header == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/tc3_request, "
        "SignedHeaders=content-type;host, "
        "Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
    )
