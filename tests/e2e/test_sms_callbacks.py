"""SMS provider callbacks (workers/http/callbacks/: twilio, aliyun, tencent) against a migrated SQLite database.

Every request is built the way the provider documents it: Twilio's form POST signed with
``X-Twilio-Signature`` (computed here independently, checked against twilio-python's
published test vectors), Aliyun's SmsReport/SmsUp JSON arrays and Tencent's receipt and
reply pushes (CHANNELS.md §3-§5). Providers retry pushes, so every test replays them and
counts rows in ``response``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 package for its TestClient and warns, once at import,
    # when it falls back to httpx (our dependency); the client itself works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from campaigns.config.schema import AppConfig
from campaigns.project.loading import parse_config
from campaigns.store.models import Consent, Customer, Delivery, Response, Suppression
from tests.conftest import grant_consent
from workers.http import batching as response_writer
from workers.http.callbacks.common import CALLBACK_TOKEN_ENV, MAX_BODY_BYTES
from workers.http.callbacks.sms import sms_routes
from workers.http.callbacks.twilio import twilio_signature_valid

NOW = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
BASE_URL = "https://nurture.example.com"
TWILIO_TOKEN = "twilio-auth-token-for-tests"
CALLBACK_TOKEN = "callback-token-for-tests"

CN_PHONE, CN_OTHER, US_PHONE = "+8613800138000", "+8613900139000", "+14155550100"
TWILIO_SID = "SM" + "a" * 32
ALIYUN_BIZ, ALIYUN_BIZ_2 = "123456789012345678^0", "123456789012349999^0"
TENCENT_SERIAL, TENCENT_SERIAL_2 = "2019:5388844469467111111", "2019:5388844469467222222"

CONFIG = """
[channels.sms_us]
kind = "twilio"
account_sid_env = "NURTURE_TEST_TWILIO_SID"
auth_token_env = "NURTURE_TEST_TWILIO_TOKEN"
from = "+15005550006"

[channels.sms_cn]
kind = "aliyun_sms"
access_key_id_env = "NURTURE_TEST_ALIYUN_ID"
access_key_secret_env = "NURTURE_TEST_ALIYUN_SECRET"
sign_name = "Acme"
template_code = "SMS_000001"

[channels.sms_tc]
kind = "tencent_sms"
secret_id_env = "NURTURE_TEST_TENCENT_ID"
secret_key_env = "NURTURE_TEST_TENCENT_KEY"
sdk_app_id = "1400000000"
sign_name = "Acme"
template_id = "100001"
"""


# --------------------------------------------------------------------------- Twilio's algorithm, independently


def twilio_sign(token: str, url: str, params: list[tuple[str, str]]) -> str:
    """X-Twilio-Signature as Twilio documents it (twilio.com/docs/usage/security): the full
    URL, then each POST parameter name followed by its value, names sorted (a repeated
    name's values sorted too), HMAC-SHA1 with the auth token, base64."""
    grouped: dict[str, list[str]] = {}
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    data = url
    for name in sorted(grouped):
        for value in sorted(set(grouped[name])):
            data += name + value
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


TWILIO_EXAMPLE_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_EXAMPLE_PARAMS = [("CallSid", "CA1234567890ABCDE"), ("Digits", "1234"), ("From", "+14158675309"),
                         ("To", "+18005551212"), ("Caller", "+14158675309")]


def test_twilio_signature_matches_twilios_published_vectors() -> None:
    # twilio-python tests/campaigns/test_request_validator.py: token "12345" and these values.
    assert twilio_sign("12345", TWILIO_EXAMPLE_URL, TWILIO_EXAMPLE_PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    duplicate = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert twilio_sign("12345", TWILIO_EXAMPLE_URL, duplicate) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    # The receiver accepts the same vectors, with and without the port Twilio may sign.
    assert twilio_signature_valid("12345", TWILIO_EXAMPLE_URL, TWILIO_EXAMPLE_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert twilio_signature_valid("12345", TWILIO_EXAMPLE_URL, duplicate, "IK+Dwps556ElfBT0I3Rgjkr1wJU=")
    assert twilio_signature_valid("12345", TWILIO_EXAMPLE_URL, TWILIO_EXAMPLE_PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w=")
    assert twilio_signature_valid("12345", TWILIO_EXAMPLE_URL.replace(".com", ".com:1234"),
                                  TWILIO_EXAMPLE_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not twilio_signature_valid("12346", TWILIO_EXAMPLE_URL, TWILIO_EXAMPLE_PARAMS,
                                      "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not twilio_signature_valid("12345", TWILIO_EXAMPLE_URL, TWILIO_EXAMPLE_PARAMS[:-1],
                                      "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> AppConfig:
    monkeypatch.setenv("NURTURE_TEST_TWILIO_TOKEN", TWILIO_TOKEN)
    monkeypatch.setenv(CALLBACK_TOKEN_ENV, CALLBACK_TOKEN)
    return parse_config(CONFIG)


@pytest.fixture
def seeded(sqlite_engine: sa.Engine) -> dict[str, int]:
    """Three customers with SMS consent and one sent delivery per provider (plus a second
    one each for Aliyun and Tencent); returns ids by name."""
    ids: dict[str, int] = {}
    with sqlite_engine.begin() as conn:
        for name, phone in (("cn", CN_PHONE), ("cn_other", CN_OTHER), ("us", US_PHONE)):
            ids[name] = conn.execute(sa.insert(Customer.__table__).values(
                external_id=f"C-{name}", phone=phone, created_at=NOW, updated_at=NOW, attributes={},
            ).returning(Customer.__table__.c.id)).scalar_one()
        for name, customer, channel, provider_id in (
            ("twilio", "us", "sms_us", TWILIO_SID),
            ("aliyun", "cn", "sms_cn", ALIYUN_BIZ),
            ("aliyun_2", "cn_other", "sms_cn", ALIYUN_BIZ_2),
            ("tencent", "cn", "sms_tc", TENCENT_SERIAL),
            ("tencent_2", "cn_other", "sms_tc", TENCENT_SERIAL_2),
        ):
            ids[f"delivery_{name}"] = conn.execute(sa.insert(Delivery.__table__).values(
                send_key=f"key-{name}", campaign="promo", step=0, customer_id=ids[customer], channel=channel,
                template="promo/hello", status="sent", attempts=1, due_at=NOW - timedelta(hours=1),
                dispatch_after=NOW - timedelta(hours=1), provider_message_id=provider_id,
                created_at=NOW, updated_at=NOW, sent_at=NOW - timedelta(minutes=30),
            ).returning(Delivery.__table__.c.id)).scalar_one()
    grant_consent(sqlite_engine, now=NOW - timedelta(days=1), families=("sms",))
    return ids


@pytest.fixture
def client(config: AppConfig, sqlite_engine: sa.Engine, seeded: dict[str, int]) -> Iterator[TestClient]:
    app = Starlette(routes=sms_routes(config=config, engine=sqlite_engine, clock=lambda: NOW))
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=True) as test_client:
        yield test_client


def responses(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(Response.__table__).order_by(Response.id))]


def suppressed(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(Suppression.address).where(Suppression.channel == "sms")).scalars())


def consent(engine: sa.Engine, customer_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.select(Consent.status).where(Consent.customer_id == customer_id,
                                                            Consent.channel == "sms")).scalar_one()


def receipt(engine: sa.Engine, delivery_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(Delivery.receipt_status).where(Delivery.id == delivery_id)).scalar_one()


# --------------------------------------------------------------------------- Twilio


def twilio_post(client: TestClient, path: str, params: list[tuple[str, str]], *, token: str = TWILIO_TOKEN,
                signed_url: str | None = None, signature: str | None = None) -> Any:
    url = BASE_URL + path
    header = signature if signature is not None else twilio_sign(token, signed_url or url, params)
    return client.post(path, content=urlencode(params).encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": header})


def status_params(status: str, error_code: str | None = None) -> list[tuple[str, str]]:
    params = [("AccountSid", "AC" + "0" * 32), ("From", "+15005550006"), ("MessageSid", TWILIO_SID),
              ("MessageStatus", status), ("SmsSid", TWILIO_SID), ("SmsStatus", status), ("To", US_PHONE),
              ("ApiVersion", "2010-04-01")]
    if error_code is not None:
        params.append(("ErrorCode", error_code))
    return params


def test_twilio_delivered_updates_the_delivery_once_and_ignores_replays(client: TestClient,
                                                                         sqlite_engine: sa.Engine,
                                                                         seeded: dict[str, int]) -> None:
    for _ in range(3):  # Twilio retries a callback it did not see answered
        answer = twilio_post(client, "/callbacks/twilio/sms_us/status", status_params("delivered"))
        assert answer.status_code == 200
    rows = responses(sqlite_engine)
    assert [(r["kind"], r["provider"], r["provider_ref"], r["delivery_id"], r["customer_id"]) for r in rows] == [
        ("delivered", "twilio", f"{TWILIO_SID}:delivered", seeded["delivery_twilio"], seeded["us"])]
    assert US_PHONE not in json.dumps(rows[0]["payload"])
    assert receipt(sqlite_engine, seeded["delivery_twilio"]) == "delivered"
    assert suppressed(sqlite_engine) == set()


def test_twilio_intermediate_statuses_record_nothing(client: TestClient, sqlite_engine: sa.Engine) -> None:
    for status in ("queued", "sending", "sent", "accepted"):
        assert twilio_post(client, "/callbacks/twilio/sms_us/status", status_params(status)).status_code == 200
    assert responses(sqlite_engine) == []


def test_twilio_undelivered_30006_suppresses_the_number(client: TestClient, sqlite_engine: sa.Engine,
                                                        seeded: dict[str, int]) -> None:
    answer = twilio_post(client, "/callbacks/twilio/sms_us/status", status_params("undelivered", "30006"))
    assert answer.status_code == 200
    [row] = responses(sqlite_engine)
    assert (row["kind"], row["provider_ref"]) == ("undelivered", f"{TWILIO_SID}:undelivered")
    assert receipt(sqlite_engine, seeded["delivery_twilio"]) == "undelivered"
    assert suppressed(sqlite_engine) == {US_PHONE}
    assert consent(sqlite_engine, seeded["us"]) == "withdrawn"


def test_twilio_failed_with_a_transient_code_does_not_suppress(client: TestClient, sqlite_engine: sa.Engine,
                                                               seeded: dict[str, int]) -> None:
    assert twilio_post(client, "/callbacks/twilio/sms_us/status", status_params("failed", "30008")).status_code == 200
    [row] = responses(sqlite_engine)
    assert (row["kind"], row["provider_ref"]) == ("undelivered", f"{TWILIO_SID}:failed")
    assert suppressed(sqlite_engine) == set()
    assert consent(sqlite_engine, seeded["us"]) == "granted"


def test_twilio_rejects_bad_signatures_and_unknown_channels(client: TestClient, sqlite_engine: sa.Engine,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = "/callbacks/twilio/sms_us/status"
    params = status_params("delivered")
    assert twilio_post(client, path, params, token="another-token").status_code == 403
    assert twilio_post(client, path, params, signature="").status_code == 403
    assert twilio_post(client, path, params, signed_url=BASE_URL + "/callbacks/twilio/other/status").status_code == 403
    # A body changed after signing (an attacker flipping the status) fails the check.
    good = twilio_sign(TWILIO_TOKEN, BASE_URL + path, params)
    tampered = status_params("undelivered", "30006")
    assert twilio_post(client, path, tampered, signature=good).status_code == 403
    missing_header = client.post(path, content=urlencode(params).encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert missing_header.status_code == 403
    assert "error" in missing_header.json()
    assert twilio_post(client, "/callbacks/twilio/nope/status", params).status_code == 404
    assert twilio_post(client, "/callbacks/twilio/sms_cn/status", params).status_code == 404  # not a twilio channel
    # Twilio may sign the URL with the default port: accepted, as twilio-python does.
    assert twilio_post(client, path, params, signed_url=BASE_URL.replace(".com", ".com:443") + path).status_code == 200
    monkeypatch.delenv("NURTURE_TEST_TWILIO_TOKEN")
    assert twilio_post(client, path, status_params("failed", "30005")).status_code == 503
    assert [r["provider_ref"] for r in responses(sqlite_engine)] == [f"{TWILIO_SID}:delivered"]


def inbound_params(body: str, sid: str = "SM" + "b" * 32) -> list[tuple[str, str]]:
    return [("AccountSid", "AC" + "0" * 32), ("ApiVersion", "2010-04-01"), ("Body", body), ("From", US_PHONE),
            ("MessageSid", sid), ("NumMedia", "0"), ("NumSegments", "1"), ("SmsMessageSid", sid),
            ("SmsSid", sid), ("To", "+15005550006")]


@pytest.mark.parametrize("word", ["STOP", " stop ", "TD", "退订"])
def test_twilio_inbound_opt_out_suppresses_and_answers_empty_twiml(client: TestClient, sqlite_engine: sa.Engine,
                                                                  seeded: dict[str, int], word: str) -> None:
    for _ in range(2):
        answer = twilio_post(client, "/callbacks/twilio/sms_us/inbound", inbound_params(word))
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/xml")
        assert answer.text.endswith("<Response/>")
    [row] = responses(sqlite_engine)
    assert (row["kind"], row["customer_id"]) == ("replied", seeded["us"])
    assert suppressed(sqlite_engine) == {US_PHONE}
    assert consent(sqlite_engine, seeded["us"]) == "withdrawn"


def test_twilio_inbound_normal_reply_is_recorded_without_suppression(client: TestClient, sqlite_engine: sa.Engine,
                                                                     seeded: dict[str, int]) -> None:
    assert twilio_post(client, "/callbacks/twilio/sms_us/inbound",
                       inbound_params("Stop by the store tomorrow?")).status_code == 200
    [row] = responses(sqlite_engine)
    assert (row["kind"], row["customer_id"]) == ("replied", seeded["us"])
    assert suppressed(sqlite_engine) == set()
    assert consent(sqlite_engine, seeded["us"]) == "granted"


# --------------------------------------------------------------------------- Aliyun


def aliyun_report(biz_id: str, phone: str, *, success: bool = True, code: str = "DELIVERED",
                  out_id: str | None = None) -> dict[str, Any]:
    # The documented SmsReport item: a bare mainland number, Beijing times.
    return {"phone_number": phone.removeprefix("+86"), "send_time": "2026-03-02 11:59:58",
            "report_time": "2026-03-02 12:00:03", "success": success, "err_code": code,
            "err_msg": "用户接收成功" if success else "失败", "sms_size": "1", "biz_id": biz_id, "out_id": out_id}


def push(client: TestClient, path: str, body: Any, *, token: str | None = CALLBACK_TOKEN) -> Any:
    query = "" if token is None else "?" + urlencode({"token": token})
    return client.post(path + query, content=json.dumps(body, ensure_ascii=False).encode(),
                       headers={"Content-Type": "application/json"})


def test_aliyun_report_records_each_receipt_once(client: TestClient, sqlite_engine: sa.Engine,
                                                 seeded: dict[str, int]) -> None:
    batch = [aliyun_report(ALIYUN_BIZ, CN_PHONE, out_id="key-aliyun"),
             aliyun_report(ALIYUN_BIZ_2, CN_OTHER, success=False, code="isv.BLACK_KEY_CONTROL_LIMIT")]
    for _ in range(3):  # Aliyun pushes again at 1, 5 and 10 minutes
        answer = push(client, "/callbacks/aliyun/sms_cn/report", batch)
        assert answer.status_code == 200
        assert answer.json() == {"code": 0, "msg": "成功"}
    rows = responses(sqlite_engine)
    assert [(r["kind"], r["provider"], r["delivery_id"]) for r in rows] == [
        ("delivered", "aliyun", seeded["delivery_aliyun"]), ("undelivered", "aliyun", seeded["delivery_aliyun_2"])]
    digest = hashlib.sha256(b"13800138000").hexdigest()[:16]  # the key holds no phone number
    assert rows[0]["provider_ref"] == f"{ALIYUN_BIZ}:{digest}:DELIVERED"
    # report_time is Beijing time: 12:00:03 +08:00 is 04:00:03 UTC.
    assert rows[0]["occurred_at"].replace(tzinfo=UTC) == datetime(2026, 3, 2, 4, 0, 3, tzinfo=UTC)
    assert receipt(sqlite_engine, seeded["delivery_aliyun"]) == "delivered"
    assert receipt(sqlite_engine, seeded["delivery_aliyun_2"]) == "undelivered"
    # The blacklist answer suppresses that number only.
    assert suppressed(sqlite_engine) == {CN_OTHER}
    assert consent(sqlite_engine, seeded["cn_other"]) == "withdrawn"
    assert consent(sqlite_engine, seeded["cn"]) == "granted"


@pytest.mark.parametrize("word", ["TD", "退订", "ｔｄ。", "R"])
def test_aliyun_up_opt_out_suppresses_and_withdraws_consent(client: TestClient, sqlite_engine: sa.Engine,
                                                            seeded: dict[str, int], word: str) -> None:
    reply = {"phone_number": "13800138000", "content": word, "send_time": "2026-03-02 12:01:00",
             "dest_code": "1234", "sequence_id": 1234567890}
    for _ in range(2):
        answer = push(client, "/callbacks/aliyun/sms_cn/up", [reply])
        assert (answer.status_code, answer.json()) == (200, {"code": 0, "msg": "成功"})
    [row] = responses(sqlite_engine)
    assert (row["kind"], row["provider_ref"], row["customer_id"]) == ("replied", "1234567890", seeded["cn"])
    assert suppressed(sqlite_engine) == {CN_PHONE}
    assert consent(sqlite_engine, seeded["cn"]) == "withdrawn"
    assert "13800138000" not in json.dumps(row["payload"])


def test_aliyun_up_normal_reply_is_recorded_without_suppression(client: TestClient, sqlite_engine: sa.Engine,
                                                                seeded: dict[str, int]) -> None:
    reply = {"phone_number": "13800138000", "content": "好的，谢谢", "send_time": "2026-03-02 12:01:00",
             "dest_code": "1234", "sequence_id": 77}
    assert push(client, "/callbacks/aliyun/sms_cn/up", [reply]).status_code == 200
    [row] = responses(sqlite_engine)
    assert (row["kind"], row["customer_id"]) == ("replied", seeded["cn"])
    assert suppressed(sqlite_engine) == set()
    assert consent(sqlite_engine, seeded["cn"]) == "granted"


@pytest.mark.parametrize("path", ["/callbacks/aliyun/sms_cn/report", "/callbacks/tencent/sms_tc/status"])
def test_unsigned_pushes_need_the_callback_token(client: TestClient, sqlite_engine: sa.Engine,
                                                 monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    body = ([aliyun_report(ALIYUN_BIZ, CN_PHONE)] if "aliyun" in path
            else [tencent_report(TENCENT_SERIAL, "SUCCESS", "DELIVRD")])
    assert push(client, path, body, token=None).status_code == 403
    assert push(client, path, body, token="wrong").status_code == 403
    assert push(client, path, body, token=CALLBACK_TOKEN + "x").status_code == 403
    assert push(client, path.replace("sms_cn", "nope").replace("sms_tc", "nope"), body).status_code == 404
    assert push(client, path.replace("sms_cn", "sms_us").replace("sms_tc", "sms_us"), body).status_code == 404
    monkeypatch.delenv(CALLBACK_TOKEN_ENV)
    answer = push(client, path, body)
    assert answer.status_code == 503
    assert CALLBACK_TOKEN_ENV in answer.json()["error"]
    assert responses(sqlite_engine) == []


# --------------------------------------------------------------------------- Tencent


def tencent_report(sid: str, status: str, errmsg: str, phone: str = CN_PHONE) -> dict[str, Any]:
    # The documented receipt item (cloud.tencent.com/document/api/382/5807).
    return {"user_receive_time": "2026-03-02 12:00:05", "nationcode": "86", "mobile": phone.removeprefix("+86"),
            "report_status": status, "errmsg": errmsg, "sid": sid,
            "description": "用户短信送达成功" if status == "SUCCESS" else "失败"}


def test_tencent_status_records_each_receipt_once(client: TestClient, sqlite_engine: sa.Engine,
                                                  seeded: dict[str, int]) -> None:
    batch = [tencent_report(TENCENT_SERIAL, "SUCCESS", "DELIVRD"),
             tencent_report(TENCENT_SERIAL_2, "FAIL", "MK:0001", CN_OTHER)]
    for _ in range(2):
        answer = push(client, "/callbacks/tencent/sms_tc/status", batch)
        assert (answer.status_code, answer.json()) == (200, {"result": 0, "errmsg": "OK"})
    rows = responses(sqlite_engine)
    assert [(r["kind"], r["provider_ref"], r["delivery_id"]) for r in rows] == [
        ("delivered", f"{TENCENT_SERIAL}:SUCCESS", seeded["delivery_tencent"]),
        ("undelivered", f"{TENCENT_SERIAL_2}:FAIL", seeded["delivery_tencent_2"])]
    assert receipt(sqlite_engine, seeded["delivery_tencent"]) == "delivered"
    assert receipt(sqlite_engine, seeded["delivery_tencent_2"]) == "undelivered"
    assert suppressed(sqlite_engine) == set()  # a carrier failure is not a blacklist answer


def test_tencent_blacklist_receipt_suppresses(client: TestClient, sqlite_engine: sa.Engine,
                                              seeded: dict[str, int]) -> None:
    batch = [tencent_report(TENCENT_SERIAL_2, "FAIL", "FailedOperation.PhoneNumberInBlacklist", CN_OTHER)]
    assert push(client, "/callbacks/tencent/sms_tc/status", batch).status_code == 200
    assert suppressed(sqlite_engine) == {CN_OTHER}
    assert consent(sqlite_engine, seeded["cn_other"]) == "withdrawn"


def tencent_reply(text: str, time: int = 1772424000) -> dict[str, Any]:
    # The documented reply push: one object, unix seconds.
    return {"extend": "", "mobile": "13800138000", "nationcode": "86", "sign": "Acme", "text": text, "time": time}


@pytest.mark.parametrize("word", ["TD", "退订", "STOP"])
def test_tencent_reply_opt_out_suppresses_once(client: TestClient, sqlite_engine: sa.Engine,
                                               seeded: dict[str, int], word: str) -> None:
    for _ in range(2):
        answer = push(client, "/callbacks/tencent/sms_tc/reply", tencent_reply(word))
        assert (answer.status_code, answer.json()) == (200, {"result": 0, "errmsg": "OK"})
    [row] = responses(sqlite_engine)
    assert (row["kind"], row["customer_id"]) == ("replied", seeded["cn"])
    assert row["occurred_at"].replace(tzinfo=UTC) == datetime.fromtimestamp(1772424000, UTC)
    assert "13800138000" not in row["provider_ref"] and word not in row["provider_ref"]
    assert suppressed(sqlite_engine) == {CN_PHONE}
    assert consent(sqlite_engine, seeded["cn"]) == "withdrawn"


def test_tencent_normal_replies_are_recorded_without_suppression(client: TestClient, sqlite_engine: sa.Engine,
                                                                 seeded: dict[str, int]) -> None:
    assert push(client, "/callbacks/tencent/sms_tc/reply", tencent_reply("收到")).status_code == 200
    # The same words at another time are another reply, not a replay.
    assert push(client, "/callbacks/tencent/sms_tc/reply", tencent_reply("收到", time=1772424060)).status_code == 200
    rows = responses(sqlite_engine)
    assert [(r["kind"], r["customer_id"]) for r in rows] == [("replied", seeded["cn"])] * 2
    assert suppressed(sqlite_engine) == set()
    assert consent(sqlite_engine, seeded["cn"]) == "granted"
    assert push(client, "/callbacks/tencent/sms_tc/reply", tencent_reply("TD"), token="wrong").status_code == 403
    assert suppressed(sqlite_engine) == set()


# --------------------------------------------------------------------------- malformed and oversized


@pytest.mark.parametrize(("path", "body"), [
    ("/callbacks/aliyun/sms_cn/report", b"not json"),
    ("/callbacks/aliyun/sms_cn/report", b'{"biz_id": "1"}'),
    ("/callbacks/aliyun/sms_cn/report", b"[]"),
    ("/callbacks/aliyun/sms_cn/report", b"[1]"),
    ("/callbacks/aliyun/sms_cn/report", b'[{"phone_number": "13800138000", "success": true}]'),
    ("/callbacks/aliyun/sms_cn/report", b'[{"phone_number": "13800138000", "biz_id": "1", "success": "maybe"}]'),
    ("/callbacks/aliyun/sms_cn/up", b'[{"phone_number": "13800138000", "sequence_id": 5}]'),
    ("/callbacks/tencent/sms_tc/status", b'[{"sid": "x", "mobile": "13800138000", "report_status": "MAYBE"}]'),
    ("/callbacks/tencent/sms_tc/reply", b'{"mobile": "13800138000", "text": "TD"}'),
    ("/callbacks/tencent/sms_tc/reply", b'[{"mobile": "13800138000", "text": "TD", "time": 1}]'),
    ("/callbacks/tencent/sms_tc/reply", "\xff".encode("latin-1")),
])
def test_malformed_pushes_are_400_with_a_json_error(client: TestClient, sqlite_engine: sa.Engine,
                                                    path: str, body: bytes) -> None:
    answer = client.post(f"{path}?token={CALLBACK_TOKEN}", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert isinstance(answer.json()["error"], str)
    assert "Traceback" not in answer.text
    assert responses(sqlite_engine) == []


def test_a_signed_twilio_request_without_required_fields_is_400(client: TestClient, sqlite_engine: sa.Engine) -> None:
    answer = twilio_post(client, "/callbacks/twilio/sms_us/status", [("MessageStatus", "delivered")])
    assert answer.status_code == 400
    assert "MessageSid" in answer.json()["error"]
    assert responses(sqlite_engine) == []


def test_bodies_over_one_mebibyte_are_413(client: TestClient, sqlite_engine: sa.Engine) -> None:
    big = b"[" + b" " * MAX_BODY_BYTES + b"]"
    answer = client.post(f"/callbacks/aliyun/sms_cn/report?token={CALLBACK_TOKEN}", content=big,
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    # Without a Content-Length (chunked), the stream is cut off as it passes the limit.
    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(MAX_BODY_BYTES // 65536 + 1):
            yield b" " * 65536
        yield b"]"
    chunked = client.post(f"/callbacks/tencent/sms_tc/status?token={CALLBACK_TOKEN}", content=chunks(),
                          headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    params = [("Body", "x" * MAX_BODY_BYTES), ("From", US_PHONE), ("MessageSid", "SM1")]
    assert twilio_post(client, "/callbacks/twilio/sms_us/inbound", params).status_code == 413
    assert responses(sqlite_engine) == []


def test_a_database_failure_is_a_503_so_the_provider_pushes_again(client: TestClient, sqlite_engine: sa.Engine,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    working = response_writer.record_responses
    monkeypatch.setattr(response_writer, "record_responses", broken)
    answer = push(client, "/callbacks/aliyun/sms_cn/report", [aliyun_report(ALIYUN_BIZ, CN_PHONE)])
    assert answer.status_code == 503
    assert "retry" in answer.json()["error"]
    assert responses(sqlite_engine) == []
    monkeypatch.setattr(response_writer, "record_responses", working)  # the push comes again and is recorded
    assert push(client, "/callbacks/aliyun/sms_cn/report", [aliyun_report(ALIYUN_BIZ, CN_PHONE)]).status_code == 200
    assert len(responses(sqlite_engine)) == 1
