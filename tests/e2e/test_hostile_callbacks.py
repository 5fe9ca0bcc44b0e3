"""Every callback route under hostile input (issue #12): deep JSON, 5,000-digit numbers,
year-0001 dates, lone surrogates, NaN/Infinity, NUL, invalid UTF-8, XML in encodings
WeChat never uses, XML bombs. Each must be answered with a 4xx whose body names the
problem, never a 500, and must store nothing.

Every request is otherwise genuine (signed or carrying the callback token), so the
hostile part is what the route has to deal with. Run on SQLite and on PostgreSQL, which
refuses NUL characters and lone surrogates that SQLite would take.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from campaigns.project.loading import parse_config
from campaigns.store.db import make_engine
from campaigns.store.models import Customer, Delivery, Response
from workers.channels.smtp import message_hash
from workers.http.app import web_routes
from workers.http.callbacks.common import CALLBACK_TOKEN_ENV
from workers.http.callbacks.sms import sms_routes
from workers.http.callbacks.wechat import WECHAT_PUSH_TOKEN_ENV, wechat_routes

NOW = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
NOW_S = str(int(NOW.timestamp()))
BASE_URL = "https://nurture.example.com"
TWILIO_TOKEN, CALLBACK_TOKEN = "twilio-token-x1", "callback-token-x1"
WECHAT_TOKEN, API_KEY = "wechat-token-x1", "api-key-x1"

CONFIG = """
[api]
key_env = "NURTURE_TEST_HOSTILE_API_KEY"

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

[channels.mail]
kind = "smtp"
host = "smtp.shop.example"
from = "Shop <news@shop.example>"
envelope_from = "bounce+{send_key_hash}@shop.example"

[channels.wx]
kind = "wechat_oa"
appid = "wx0000000000000001"
secret_env = "NURTURE_TEST_WECHAT_SECRET"
template_id = "TPL_ORDER_SHIPPED"
"""

#: The installation secret keying bounce Message-IDs, and the delivery bounces are about.
SECRET, SEND_KEY, BOB = "installation-secret-for-tests", "3f" * 32, "bob@example.org"
DEEP = 100_000
HUGE = "9" * 5000


# --------------------------------------------------------------------------- how each route is called


def twilio_request(path: str, params: list[tuple[str, str]] | bytes) -> dict[str, Any]:
    """A form POST signed as Twilio signs it (a raw body is sent unsigned: it is refused
    before the signature is checked)."""
    if isinstance(params, bytes):
        return {"url": path, "content": params, "headers": {"Content-Type": "application/x-www-form-urlencoded",
                                                            "X-Twilio-Signature": "x"}}
    grouped: dict[str, set[str]] = {}
    for name, value in params:
        grouped.setdefault(name, set()).add(value)
    data = BASE_URL + path + "".join(name + value for name in sorted(grouped) for value in sorted(grouped[name]))
    signature = base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()
    return {"url": path, "content": urlencode(params).encode(),
            "headers": {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}}


def china_request(path: str, body: bytes | str) -> dict[str, Any]:
    return {"url": f"{path}?token={CALLBACK_TOKEN}", "content": body.encode() if isinstance(body, str) else body,
            "headers": {"Content-Type": "application/json"}}


def wechat_request(body: bytes | str, *, timestamp: str = NOW_S, method: str = "POST") -> dict[str, Any]:
    nonce = "1743502518"
    signature = hashlib.sha1("".join(sorted([WECHAT_TOKEN, timestamp, nonce])).encode()).hexdigest()
    query = urlencode({"signature": signature, "timestamp": timestamp, "nonce": nonce, "echostr": "e"})
    return {"method": method, "url": f"/callbacks/wechat/wx?{query}",
            "content": body.encode() if isinstance(body, str) else body, "headers": {"Content-Type": "text/xml"}}


def bounce_request(body: bytes) -> dict[str, Any]:
    return {"url": "/bounces", "content": body,
            "headers": {"Content-Type": "message/rfc822", "Authorization": f"Bearer {API_KEY}"}}


def twilio_status(**fields: str) -> list[tuple[str, str]]:
    base = {"AccountSid": "AC" + "0" * 32, "MessageSid": "SM" + "a" * 32, "MessageStatus": "undelivered",
            "To": "+14155550100", "ErrorCode": "30003"}
    return list({**base, **fields}.items())


def twilio_inbound(**fields: str) -> list[tuple[str, str]]:
    base = {"AccountSid": "AC" + "0" * 32, "MessageSid": "SM" + "b" * 32, "From": "+14155550100", "Body": "hello"}
    return list({**base, **fields}.items())


def aliyun_report(**fields: Any) -> str:
    item = {"phone_number": "13800138000", "send_time": "2026-03-02 12:00:00", "report_time": "2026-03-02 12:00:05",
            "success": False, "err_code": "DELIVRD", "err_msg": "x", "sms_size": "1", "biz_id": "1234^0",
            "out_id": "key-1", **fields}
    return json.dumps([item])


def aliyun_up(**fields: Any) -> str:
    item = {"phone_number": "13800138000", "send_time": "2026-03-02 12:00:00", "content": "TD",
            "sign_name": "Acme", "dest_code": "1234", "sequence_id": 1234567, **fields}
    return json.dumps([item])


def tencent_status(**fields: Any) -> str:
    item = {"user_receive_time": "2026-03-02 12:00:05", "nationcode": "86", "mobile": "13800138000",
            "report_status": "FAIL", "errmsg": "MN:0001", "description": "x", "sid": "2019:538884", **fields}
    return json.dumps([item])


def tencent_reply(**fields: Any) -> str:
    return json.dumps({"extend": "", "mobile": "13800138000", "nationcode": "86", "sign": "Acme",
                       "text": "TD", "time": int(NOW.timestamp()), **fields})


def wechat_text(content: str = "TD", *, created: str = NOW_S, msg_id: str = "1234567890123456",
                declaration: str = '<?xml version="1.0" encoding="UTF-8"?>') -> str:
    return (f"{declaration}<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>"
            f"<FromUserName><![CDATA[oia2TjuEGTNoeX76QEjQNrcURxG8]]></FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>")


def dsn(*, recipient: str = BOB, diagnostic: str = "smtp; 550 5.1.1 user unknown",
        last_attempt: str = "Mon, 2 Mar 2026 10:00:05 +0800") -> bytes:
    """A bounce of our delivery to BOB, naming it by its keyed Message-ID."""
    return (
        "From: MAILER-DAEMON@mx.shop.example\r\nTo: bounce@shop.example\r\nSubject: Undelivered\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.shop.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: {diagnostic}\r\nLast-Attempt-Date: {last_attempt}\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: <{message_hash(SEND_KEY, SECRET)}@shop.example>\r\nTo: {recipient}\r\n\r\n"
        "--B--\r\n"
    ).encode("utf-8", "surrogatepass")


# --------------------------------------------------------------------------- the hostile table


@dataclass(frozen=True)
class Case:
    name: str
    request: Callable[[], dict[str, Any]]
    #: Words the error message must contain (lower case), naming the problem.
    names: tuple[str, ...]


def json_cases(route: str, path: str, build: Callable[..., str], text_field: str, time_field: str | None) -> list[Case]:
    cases = [
        Case(f"{route}: deep JSON", lambda: china_request(path, "[" * DEEP + "]" * DEEP), ("nested",)),
        Case(f"{route}: 5,000-digit number", lambda: china_request(path, build(**{text_field: 1}).replace(
            '"' + text_field + '": 1', '"' + text_field + '": ' + HUGE)), ("digits",)),
        Case(f"{route}: NaN", lambda: china_request(path, build(**{text_field: float("nan")})), ("nan",)),
        Case(f"{route}: Infinity", lambda: china_request(path, build(**{text_field: float("inf")})), ("infinity",)),
        Case(f"{route}: lone surrogate", lambda: china_request(path, build(**{text_field: "a\ud800b"})),
             ("surrogate", text_field)),
        Case(f"{route}: NUL", lambda: china_request(path, build(**{text_field: "a\u0000b"})), ("nul", text_field)),
        Case(f"{route}: invalid UTF-8", lambda: china_request(path, build().encode()[:-3] + b'\xff"}]'), ("utf-8",)),
    ]
    if time_field:
        year_1 = build(**{time_field: "0001-01-01 00:00:00"})
        cases.append(Case(f"{route}: year 0001", lambda: china_request(path, year_1), (time_field, "range")))
    return cases


CASES: list[Case] = [
    *json_cases("aliyun report", "/callbacks/aliyun/sms_cn/report", aliyun_report, "biz_id", "report_time"),
    *json_cases("aliyun up", "/callbacks/aliyun/sms_cn/up", aliyun_up, "content", "send_time"),
    *json_cases("tencent status", "/callbacks/tencent/sms_tc/status", tencent_status, "sid", "user_receive_time"),
    *json_cases("tencent reply", "/callbacks/tencent/sms_tc/reply", tencent_reply, "text", None),
    Case("tencent reply: 5,000-digit time", lambda: china_request(
        "/callbacks/tencent/sms_tc/reply", tencent_reply(time=1).replace('"time": 1', '"time": ' + HUGE)), ("digits",)),
    Case("tencent reply: 5,000-digit time as text", lambda: china_request(
        "/callbacks/tencent/sms_tc/reply", tencent_reply(time=HUGE)), ("time",)),
    Case("tencent reply: superscript digit time", lambda: china_request(
        "/callbacks/tencent/sms_tc/reply", tencent_reply(time="\u00b2")), ("time",)),
    Case("tencent reply: year 0001 time", lambda: china_request(
        "/callbacks/tencent/sms_tc/reply", tencent_reply(time="0")), ("time", "range")),
    # Twilio: form bodies.
    Case("twilio status: NUL", lambda: twilio_request("/callbacks/twilio/sms_us/status", twilio_status(
        MessageSid="SM\x00" + "a" * 30)), ("nul", "messagesid")),
    Case("twilio status: 5,000-digit error code", lambda: twilio_request(
        "/callbacks/twilio/sms_us/status", twilio_status(ErrorCode=HUGE)), ("errorcode",)),
    Case("twilio status: superscript digit error code", lambda: twilio_request(
        "/callbacks/twilio/sms_us/status", twilio_status(ErrorCode="\u00b2")), ("errorcode",)),
    Case("twilio status: 5,000-character sid", lambda: twilio_request(
        "/callbacks/twilio/sms_us/status", twilio_status(MessageSid="SM" + HUGE)), ("messagesid", "long")),
    Case("twilio inbound: NUL", lambda: twilio_request("/callbacks/twilio/sms_us/inbound", twilio_inbound(
        Body="T\x00D")), ("nul", "body")),
    Case("twilio inbound: encoded lone surrogate", lambda: twilio_request(
        "/callbacks/twilio/sms_us/inbound", b"MessageSid=SMb&From=%2B14155550100&Body=%ED%A0%80"), ("utf-8",)),
    Case("twilio inbound: invalid UTF-8", lambda: twilio_request(
        "/callbacks/twilio/sms_us/inbound", b"MessageSid=SMb&From=%2B14155550100&Body=\xff"), ("utf-8",)),
    # WeChat: XML.
    Case("wechat: gb2312", lambda: wechat_request(wechat_text(declaration='<?xml version="1.0" encoding="gb2312"?>')
                                                  .encode("gb2312")), ("encoding", "gb2312")),
    Case("wechat: gbk with Chinese text", lambda: wechat_request(
        wechat_text("退订", declaration='<?xml version="1.0" encoding="GBK"?>').encode("gbk")), ("encoding", "gbk")),
    Case("wechat: utf-16", lambda: wechat_request(
        wechat_text(declaration='<?xml version="1.0" encoding="UTF-16"?>').encode("utf-16")), ("utf-8",)),
    Case("wechat: unknown encoding", lambda: wechat_request(
        wechat_text(declaration='<?xml version="1.0" encoding="x-nonsense"?>')), ("encoding", "x-nonsense")),
    Case("wechat: billion laughs", lambda: wechat_request(
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
        + "]><xml><Content>&j;</Content></xml>"), ("doctype",)),
    Case("wechat: external entity", lambda: wechat_request(
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        "<xml><Content>&e;</Content></xml>"),
        ("doctype",)),
    Case("wechat: NUL", lambda: wechat_request(wechat_text("T\x00D")), ("xml",)),
    Case("wechat: character reference to NUL", lambda: wechat_request(
        wechat_text().replace("<![CDATA[TD]]>", "T&#0;D")), ("xml",)),
    Case("wechat: lone surrogate bytes", lambda: wechat_request(
        wechat_text("T\ud800D").encode("utf-8", "surrogatepass")), ("utf-8",)),
    Case("wechat: deep nesting", lambda: wechat_request(
        "<xml>" + "<a>" * DEEP + "</a>" * DEEP + "</xml>"), ("nested",)),
    Case("wechat: 5,000-digit CreateTime", lambda: wechat_request(wechat_text(created=HUGE)), ("createtime",)),
    Case("wechat: superscript digit CreateTime", lambda: wechat_request(wechat_text(created="\u00b2")),
         ("createtime",)),
    Case("wechat: year 1970 CreateTime", lambda: wechat_request(wechat_text(created="0")), ("createtime", "range")),
    # The signature covers the timestamp, so only WeChat (or whoever holds the token) can
    # send these; still no 500.
    Case("wechat: signed 5,000-digit timestamp", lambda: wechat_request(wechat_text(), timestamp=HUGE),
         ("timestamp",)),
    Case("wechat: signed superscript digit timestamp", lambda: wechat_request(wechat_text(), timestamp="\u00b2"),
         ("timestamp",)),
    Case("wechat verification: signed 5,000-digit timestamp", lambda: wechat_request(
        b"", timestamp=HUGE, method="GET"), ("timestamp",)),
    Case("wechat: 5,000-digit MsgId", lambda: wechat_request(wechat_text(msg_id=HUGE)), ("msgid", "long")),
    # Bounces (RFC 3464 DSN).
    Case("bounce: NUL", lambda: bounce_request(dsn(diagnostic="smtp; 550 no\x00such user")), ("nul",)),
    # (email.utils reads a year "0001" as 2001, as RFC 5322 says of two-digit years.)
    Case("bounce: year 0100", lambda: bounce_request(dsn(last_attempt="Mon, 1 Jan 0100 00:00:00 +0800")),
         ("last-attempt-date", "range")),
    Case("bounce: 1999 arrival", lambda: bounce_request(dsn().replace(
        b"Reporting-MTA: dns; mx.shop.example", b"Reporting-MTA: dns; mx.shop.example\r\n"
        b"Arrival-Date: Fri, 31 Dec 1999 23:59:59 +0000")), ("arrival-date", "range")),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    for name, value in (("NURTURE_TEST_TWILIO_TOKEN", TWILIO_TOKEN), (CALLBACK_TOKEN_ENV, CALLBACK_TOKEN),
                        (WECHAT_PUSH_TOKEN_ENV, WECHAT_TOKEN), ("NURTURE_TEST_HOSTILE_API_KEY", API_KEY),
                        ("NURTURE_SECRET", SECRET)):
        monkeypatch.setenv(name, value)
    with engine.begin() as conn:
        customer = conn.execute(sa.insert(Customer.__table__).values(
            external_id="C1", email=BOB, created_at=NOW, updated_at=NOW, attributes={},
        ).returning(Customer.__table__.c.id)).scalar_one()
        conn.execute(sa.insert(Delivery.__table__).values(
            send_key=SEND_KEY, campaign="win_back", step=0, customer_id=customer, channel="mail",
            template="win_back/miss_you", status="sent", due_at=NOW, dispatch_after=NOW, sent_at=NOW,
            provider_message_id=f"<{message_hash(SEND_KEY, SECRET)}@shop.example>", created_at=NOW, updated_at=NOW))
    config = parse_config(CONFIG)
    routes = [*sms_routes(config=config, engine=engine, clock=lambda: NOW),
              *wechat_routes(config=config, engine=engine, clock=lambda: NOW),
              *web_routes(config=config, engine=engine, clock=lambda: NOW)]
    with TestClient(Starlette(routes=routes), base_url=BASE_URL, raise_server_exceptions=False) as test_client:
        yield test_client


def test_the_genuine_requests_the_table_starts_from_are_accepted(client: TestClient, engine: sa.Engine) -> None:
    # Without this, a table of 4xx answers could pass for the wrong reason (a bad signature).
    genuine = [
        twilio_request("/callbacks/twilio/sms_us/status", twilio_status()),
        twilio_request("/callbacks/twilio/sms_us/inbound", twilio_inbound()),
        china_request("/callbacks/aliyun/sms_cn/report", aliyun_report()),
        china_request("/callbacks/aliyun/sms_cn/up", aliyun_up()),
        china_request("/callbacks/tencent/sms_tc/status", tencent_status()),
        china_request("/callbacks/tencent/sms_tc/reply", tencent_reply()),
        wechat_request(wechat_text()),
        bounce_request(dsn()),
    ]
    for request in genuine:
        answer = client.request(**{"method": "POST", **request})
        assert answer.status_code in (200, 202), (request["url"], answer.status_code, answer.text)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Response.__table__)).scalar_one() == 8


def stored(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(Response.__table__)).scalar_one()


def test_hostile_input_is_a_4xx_naming_the_problem_and_stores_nothing(client: TestClient, engine: sa.Engine) -> None:
    # One test per database walks the whole table (a fresh PostgreSQL database per case
    # would cost more than the cases) and reports every case that went wrong.
    wrong: list[str] = []
    for case in CASES:
        answer = client.request(**{"method": "POST", **case.request()})
        error = answer.json().get("error", "") if answer.headers.get("content-type") == "application/json" else ""
        missing = [word for word in case.names if word not in error.lower()]
        if not 400 <= answer.status_code < 500 or missing:
            wrong.append(f"{case.name}: {answer.status_code} {answer.text[:200]!r} (missing {missing})")
        if stored(engine):
            wrong.append(f"{case.name}: stored a response")
            break
    assert wrong == []


@pytest.mark.parametrize("junk", [b"user \xff\xfe", "user \ud800".encode("utf-8", "surrogatepass")],
                         ids=["invalid UTF-8", "lone surrogate"])
def test_8_bit_junk_an_mta_quotes_in_a_bounce_is_stored_replaced_not_refused(client: TestClient, engine: sa.Engine,
                                                                             junk: bytes) -> None:
    # MTAs quote remote servers' answers byte for byte: a hard bounce must not be lost
    # over them (the email parser reads them as U+FFFD, which both databases store).
    answer = client.post(**bounce_request(dsn().replace(b"user unknown", junk)))
    assert answer.status_code == 202, answer.text
    assert stored(engine) == 1
