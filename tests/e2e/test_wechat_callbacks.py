"""WeChat Official Account pushes (workers/http/callbacks/wechat.py) against a migrated SQLite database.

Requests are built the way WeChat documents them: the server URL verification GET and the
plaintext message pushes, both signed in the query string with the hex SHA-1 of token,
timestamp and nonce sorted and concatenated (computed here independently and checked
against wechatpy's published test vector); the encrypted pushes are sealed here too, and
the opening is checked against Tencent's WXBizMsgCrypt sample. The XML bodies follow the TEMPLATESENDJOBFINISH
examples of WeChat's template-message documentation (CHANNELS.md §2b). WeChat pushes again
when it does not see an answer within 5 s, so every test replays its push and counts rows
in ``response``.
"""

from __future__ import annotations

import hashlib
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
from workers.http.callbacks.wechat import MAX_XML_BYTES, WECHAT_PUSH_TOKEN_ENV, wechat_routes
from workers.http.callbacks.wechat_crypto import wechat_signature, wechat_signature_valid

NOW = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
BASE_URL = "https://nurture.example.com"
TOKEN = "wechat-server-token-for-tests"
OPENID, OTHER_OPENID = "oia2TjuEGTNoeX76QEjQNrcURxG8", "oia2TjuEGTNoeX76QEjQNrcURxG9"
ACCOUNT = "gh_7f083739789a"
MSG_ID, OTHER_MSG_ID = "200163836", "200163840"
PATH = "/callbacks/wechat/wx"

CONFIG = """
[channels.wx]
kind = "wechat_oa"
appid = "wx0000000000000001"
secret_env = "NURTURE_TEST_WECHAT_SECRET"
template_id = "TPL_ORDER_SHIPPED"

[channels.sms_cn]
kind = "aliyun_sms"
access_key_id_env = "NURTURE_TEST_ALIYUN_ID"
access_key_secret_env = "NURTURE_TEST_ALIYUN_SECRET"
sign_name = "Acme"
template_code = "SMS_000001"
"""


# --------------------------------------------------------------------------- WeChat's algorithm, independently


def sign(token: str, timestamp: str, nonce: str) -> str:
    """``signature`` as WeChat documents it (接入指南, 验证消息的确来自微信服务器): sort
    token, timestamp and nonce lexicographically, join them, SHA-1, lower-case hex."""
    joined = "".join(sorted((token, timestamp, nonce)))
    return hashlib.sha1(joined.encode()).hexdigest()


def test_signature_matches_wechatpys_published_vector() -> None:
    # wechatpy tests/test_utils.py: token "test", timestamp "1410685589", nonce "test".
    assert sign("test", "1410685589", "test") == "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"
    assert wechat_signature("test", "1410685589", "test") == "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"
    assert wechat_signature_valid("test", "1410685589", "test", "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff")
    assert wechat_signature_valid("test", "1410685589", "test", "F21891DE399B4E33A1A93C9A7B8A8FFFB5A443FF")
    # wechatpy's "should fail" vector differs in the last digit.
    assert not wechat_signature_valid("test", "1410685589", "test", "f21891de399b4e33a1a93c9a7b8a8fffb5a443fe")
    assert not wechat_signature_valid("tesu", "1410685589", "test", "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff")
    # Sorting, not a fixed order: token, timestamp and nonce may come in any order.
    assert wechat_signature("b", "c", "a") == hashlib.sha1(b"abc").hexdigest()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> AppConfig:
    monkeypatch.setenv(WECHAT_PUSH_TOKEN_ENV, TOKEN)
    return parse_config(CONFIG)


@pytest.fixture
def seeded(sqlite_engine: sa.Engine) -> dict[str, int]:
    """Two customers with wechat consent and one sent template message each; ids by name."""
    ids: dict[str, int] = {}
    with sqlite_engine.begin() as conn:
        for name, openid in (("ann", OPENID), ("bob", OTHER_OPENID)):
            ids[name] = conn.execute(sa.insert(Customer.__table__).values(
                external_id=f"C-{name}", wechat_openid=openid, created_at=NOW, updated_at=NOW, attributes={},
            ).returning(Customer.__table__.c.id)).scalar_one()
        for name, customer, msg_id in (("delivery_ann", "ann", MSG_ID), ("delivery_bob", "bob", OTHER_MSG_ID)):
            ids[name] = conn.execute(sa.insert(Delivery.__table__).values(
                send_key=f"key-{name}", campaign="shipping", step=0, customer_id=ids[customer], channel="wx",
                template="shipping/shipped", status="sent", attempts=1, due_at=NOW - timedelta(hours=1),
                dispatch_after=NOW - timedelta(hours=1), provider_message_id=msg_id,
                created_at=NOW, updated_at=NOW, sent_at=NOW - timedelta(minutes=30),
            ).returning(Delivery.__table__.c.id)).scalar_one()
    grant_consent(sqlite_engine, now=NOW - timedelta(days=1), families=("wechat",))
    return ids


@pytest.fixture
def client(config: AppConfig, sqlite_engine: sa.Engine, seeded: dict[str, int]) -> Iterator[TestClient]:
    app = Starlette(routes=wechat_routes(config=config, engine=sqlite_engine, clock=lambda: NOW))
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=True) as test_client:
        yield test_client


def responses(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(Response.__table__).order_by(Response.id))]


def suppressed(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(Suppression.address).where(Suppression.channel == "wechat")).scalars())


def consent(engine: sa.Engine, customer_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.select(Consent.status).where(Consent.customer_id == customer_id,
                                                            Consent.channel == "wechat")).scalar_one()


def receipt(engine: sa.Engine, delivery_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(Delivery.receipt_status).where(Delivery.id == delivery_id)).scalar_one()


# --------------------------------------------------------------------------- requests


NOW_S = str(int(NOW.timestamp()))


def signed_query(*, token: str = TOKEN, timestamp: str = NOW_S, nonce: str = "1743502518",
                 signature: str | None = None, **extra: str) -> str:
    params = {"signature": signature if signature is not None else sign(token, timestamp, nonce),
              "timestamp": timestamp, "nonce": nonce, **extra}
    return "?" + urlencode(params)


def post(client: TestClient, body: bytes | str, *, path: str = PATH, **query: Any) -> Any:
    content = body.encode() if isinstance(body, str) else body
    return client.post(path + signed_query(**query), content=content, headers={"Content-Type": "text/xml"})


def template_finish(status: str, *, msg_id: str = MSG_ID, openid: str = OPENID, created: int = 1772424003) -> str:
    # WeChat's documented TEMPLATESENDJOBFINISH push (CDATA as WeChat writes it).
    return (f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>{msg_id}</MsgID>"
            f"<Status><![CDATA[{status}]]></Status></xml>")


def event(name: str, *, openid: str = OPENID, created: int = 1772424010) -> str:
    return (f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{name}]]></Event></xml>")


def text_message(content: str, *, msg_id: str = "1234567890123456", openid: str = OPENID) -> str:
    return (f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>1772424020</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>")


# --------------------------------------------------------------------------- URL verification


def test_url_verification_echoes_echostr(client: TestClient) -> None:
    answer = client.get(PATH + signed_query(echostr="8305999631672647420"))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == "8305999631672647420"


def test_url_verification_refuses_bad_signatures_and_unknown_channels(client: TestClient,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    echo = {"echostr": "8305999631672647420"}
    assert client.get(PATH + signed_query(token="another-token", **echo)).status_code == 403
    assert client.get(PATH + signed_query(signature="", **echo)).status_code == 403
    assert client.get(PATH + "?" + urlencode(echo)).status_code == 403
    # The signature covers the nonce: a replayed signature with another nonce fails.
    good = sign(TOKEN, NOW_S, "1743502518")
    assert client.get(PATH + signed_query(nonce="1", signature=good, **echo)).status_code == 403
    # A correctly signed but stale (or future) timestamp is refused.
    stale = str(int((NOW - timedelta(minutes=6)).timestamp()))
    assert client.get(PATH + signed_query(timestamp=stale, **echo)).status_code == 403
    future = str(int((NOW + timedelta(minutes=6)).timestamp()))
    assert client.get(PATH + signed_query(timestamp=future, **echo)).status_code == 403
    within = str(int((NOW - timedelta(minutes=4)).timestamp()))
    assert client.get(PATH + signed_query(timestamp=within, **echo)).status_code == 200
    assert client.get("/callbacks/wechat/nope" + signed_query(**echo)).status_code == 404
    assert client.get("/callbacks/wechat/sms_cn" + signed_query(**echo)).status_code == 404  # not wechat_oa
    assert client.get(PATH + signed_query()).status_code == 400  # no echostr
    monkeypatch.delenv(WECHAT_PUSH_TOKEN_ENV)
    answer = client.get(PATH + signed_query(**echo))
    assert answer.status_code == 503
    assert WECHAT_PUSH_TOKEN_ENV in answer.json()["error"]


# --------------------------------------------------------------------------- TEMPLATESENDJOBFINISH


@pytest.mark.parametrize(("status", "kind"), [
    ("success", "delivered"),
    ("failed:user block", "blocked"),
    ("failed:system failed", "undelivered"),
])
def test_template_receipts_are_recorded_once(client: TestClient, sqlite_engine: sa.Engine,
                                             seeded: dict[str, int], status: str, kind: str) -> None:
    for _ in range(3):  # WeChat tries three times when it sees no answer
        answer = post(client, template_finish(status))
        assert (answer.status_code, answer.text) == (200, "success")
    [row] = responses(sqlite_engine)
    assert (row["kind"], row["provider"], row["provider_ref"], row["delivery_id"], row["customer_id"]) == (
        kind, "wechat", f"{MSG_ID}:{status}", seeded["delivery_ann"], seeded["ann"])
    assert row["occurred_at"].replace(tzinfo=UTC) == datetime.fromtimestamp(1772424003, UTC)
    assert OPENID not in str(row["payload"])
    assert receipt(sqlite_engine, seeded["delivery_ann"]) == kind
    assert receipt(sqlite_engine, seeded["delivery_bob"]) is None
    if kind == "blocked":
        # The user refuses the account's messages: the openid is suppressed, consent withdrawn.
        assert suppressed(sqlite_engine) == {OPENID}
        assert consent(sqlite_engine, seeded["ann"]) == "withdrawn"
    else:
        assert suppressed(sqlite_engine) == set()
        assert consent(sqlite_engine, seeded["ann"]) == "granted"
    assert consent(sqlite_engine, seeded["bob"]) == "granted"


def test_a_status_written_with_a_space_is_still_a_system_failure(client: TestClient, sqlite_engine: sa.Engine,
                                                                 seeded: dict[str, int]) -> None:
    # Copies of WeChat's example write "failed: system failed"; it is not a user block.
    assert post(client, template_finish("failed: system failed", msg_id=OTHER_MSG_ID,
                                        openid=OTHER_OPENID)).status_code == 200
    assert post(client, template_finish("failed: user block", msg_id=OTHER_MSG_ID,
                                        openid=OTHER_OPENID)).status_code == 200
    rows = responses(sqlite_engine)
    assert [(r["kind"], r["delivery_id"]) for r in rows] == [
        ("undelivered", seeded["delivery_bob"]), ("blocked", seeded["delivery_bob"])]
    assert suppressed(sqlite_engine) == {OTHER_OPENID}


def test_a_receipt_for_an_unknown_msgid_still_reaches_the_customer(client: TestClient, sqlite_engine: sa.Engine,
                                                                  seeded: dict[str, int]) -> None:
    assert post(client, template_finish("failed:user block", msg_id="999")).status_code == 200
    [row] = responses(sqlite_engine)
    assert (row["delivery_id"], row["customer_id"]) == (None, seeded["ann"])
    assert suppressed(sqlite_engine) == {OPENID}
    assert consent(sqlite_engine, seeded["ann"]) == "withdrawn"


# --------------------------------------------------------------------------- unsubscribe and messages


def test_unsubscribe_event_withdraws_wechat_consent_once(client: TestClient, sqlite_engine: sa.Engine,
                                                         seeded: dict[str, int]) -> None:
    for _ in range(2):
        answer = post(client, event("unsubscribe"))
        assert (answer.status_code, answer.text) == (200, "success")
    [row] = responses(sqlite_engine)
    assert (row["kind"], row["provider_ref"], row["customer_id"]) == (
        "unsubscribed", f"unsubscribe:{hashlib.sha256(OPENID.encode()).hexdigest()[:16]}:1772424010", seeded["ann"])
    assert consent(sqlite_engine, seeded["ann"]) == "withdrawn"
    assert consent(sqlite_engine, seeded["bob"]) == "granted"
    # Unfollowing is not a block: the openid is not on the suppression list.
    assert suppressed(sqlite_engine) == set()


@pytest.mark.parametrize("word", ["退订", " 退订。", "TD", "stop"])
def test_an_opt_out_text_suppresses_the_openid(client: TestClient, sqlite_engine: sa.Engine,
                                               seeded: dict[str, int], word: str) -> None:
    for _ in range(2):
        answer = post(client, text_message(word))
        assert (answer.status_code, answer.text) == (200, "success")
    [row] = responses(sqlite_engine)
    assert (row["kind"], row["provider_ref"], row["customer_id"]) == ("replied", "1234567890123456", seeded["ann"])
    assert suppressed(sqlite_engine) == {OPENID}
    assert consent(sqlite_engine, seeded["ann"]) == "withdrawn"
    assert consent(sqlite_engine, seeded["bob"]) == "granted"


def test_an_ordinary_text_is_a_reply_without_suppression(client: TestClient, sqlite_engine: sa.Engine,
                                                         seeded: dict[str, int]) -> None:
    assert post(client, text_message("请问什么时候发货？")).status_code == 200
    [row] = responses(sqlite_engine)
    assert (row["kind"], row["customer_id"]) == ("replied", seeded["ann"])
    assert row["payload"]["text"] == "请问什么时候发货？"
    assert suppressed(sqlite_engine) == set()
    assert consent(sqlite_engine, seeded["ann"]) == "granted"


@pytest.mark.parametrize("body", [
    event("subscribe"),
    event("VIEW"),
    event("MASSSENDJOBFINISH"),
    (f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
     "<CreateTime>1772424020</CreateTime><MsgType><![CDATA[image]]></MsgType>"
     "<PicUrl><![CDATA[https://example.com/p.jpg]]></PicUrl><MediaId><![CDATA[m]]></MediaId>"
     "<MsgId>1234567890123457</MsgId></xml>"),
])
def test_other_pushes_are_answered_success_and_not_recorded(client: TestClient, sqlite_engine: sa.Engine,
                                                            body: str) -> None:
    answer = post(client, body)
    assert (answer.status_code, answer.text) == (200, "success")
    assert answer.headers["content-type"].startswith("text/plain")
    assert responses(sqlite_engine) == []


# --------------------------------------------------------------------------- refusals


def test_pushes_with_bad_signatures_are_refused(client: TestClient, sqlite_engine: sa.Engine,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    body = template_finish("failed:user block")
    assert post(client, body, token="another-token").status_code == 403
    assert post(client, body, signature="").status_code == 403
    assert post(client, body, signature="0" * 40).status_code == 403
    missing = client.post(PATH, content=body.encode(), headers={"Content-Type": "text/xml"})
    assert missing.status_code == 403
    assert "error" in missing.json()
    stale = str(int((NOW - timedelta(hours=1)).timestamp()))
    assert post(client, body, timestamp=stale).status_code == 403
    assert post(client, body, path="/callbacks/wechat/nope").status_code == 404
    assert post(client, body, path="/callbacks/wechat/sms_cn").status_code == 404
    monkeypatch.delenv(WECHAT_PUSH_TOKEN_ENV)
    answer = post(client, body)
    assert answer.status_code == 503
    assert WECHAT_PUSH_TOKEN_ENV in answer.json()["error"]
    assert responses(sqlite_engine) == []
    assert suppressed(sqlite_engine) == set()


# --------------------------------------------------------------------------- encrypted mode

AES_KEY_ENV = "NURTURE_WECHAT_AES_KEY"
ENCODING_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, as the settings page shows
APPID = "wx0000000000000001"  # the channel's


def seal(xml: str, *, key_text: str = ENCODING_AES_KEY, appid: str = APPID, prefix: bytes = b"0123456789abcdef") -> str:
    """``Encrypt`` as WeChat builds it (WXBizMsgCrypt): 16 random bytes, the length (4
    bytes, big-endian), the XML and the appid, PKCS#7-padded to 32 bytes, AES-256-CBC
    with the decoded EncodingAESKey and its first 16 bytes as IV, base64."""
    import base64
    import struct

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = base64.b64decode(key_text + "=")
    message = xml.encode()
    plain = prefix + struct.pack(">I", len(message)) + message + appid.encode()
    pad = 32 - len(plain) % 32
    plain += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def encrypted_post(client: TestClient, xml: str, *, encrypt: str | None = None, signature: str | None = None,
                   outer_extra: str = "", **query: Any) -> Any:
    """An encrypted-mode push: the sealed message in ``<Encrypt>``, ``encrypt_type=aes`` and
    ``msg_signature`` (SHA-1 of token, timestamp, nonce and the ciphertext, sorted) besides
    the plaintext ``signature``."""
    sealed = encrypt if encrypt is not None else seal(xml)
    nonce, timestamp = "1320562132", NOW_S
    msg_sig = signature if signature is not None else hashlib.sha1(
        "".join(sorted((TOKEN, timestamp, nonce, sealed))).encode()).hexdigest()
    body = f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>{outer_extra}<Encrypt><![CDATA[{sealed}]]></Encrypt></xml>"
    return post(client, body, nonce=nonce, timestamp=timestamp, encrypt_type="aes", msg_signature=msg_sig,
                openid=OPENID, **query)


def test_decryption_matches_tencents_published_sample() -> None:
    """WXBizMsgCrypt's Python sample (Tencent): token "spamtest", this EncodingAESKey, appid
    wx2c2769f8efd9abc2; the sample's msg_signature and ciphertext, opened here."""
    from workers.http.callbacks.wechat import parse_push
    from workers.http.callbacks.wechat_crypto import (
        aes_key,
        decrypt_push,
        msg_signature,
        msg_signature_valid,
    )

    encrypted = (
        "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9"
        "FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3y"
        "t+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v"
        "6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
    )
    assert msg_signature("spamtest", "1409735669", "1320562132", encrypted) == "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
    assert not msg_signature_valid("spamtest", "1409735669", "1320562133", encrypted,
                                   "5d197aaffba7e9b25a30732f161a50dee96bd5fa")
    fields = parse_push(decrypt_push(encrypted, key=aes_key(ENCODING_AES_KEY), appid="wx2c2769f8efd9abc2"))
    assert fields == {"ToUserName": "gh_10f6c3c3ac5a", "FromUserName": "oyORnuP8q7ou2gfYjqLzSIWZf0rs",
                      "CreateTime": "1409735668", "MsgType": "text", "Content": "abcdteT",
                      "MsgId": "6054768590064713728"}


@pytest.fixture
def aes_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AES_KEY_ENV, ENCODING_AES_KEY)


def test_an_encrypted_receipt_is_opened_and_recorded_once(client: TestClient, sqlite_engine: sa.Engine,
                                                          seeded: dict[str, int], aes_env: None) -> None:
    push = template_finish("success")
    for _ in range(2):  # WeChat pushes again when it sees no answer in time
        answer = encrypted_post(client, push)
        assert answer.status_code == 200 and answer.text == "success"
    [row] = responses(sqlite_engine)
    assert (row["kind"], row["provider_ref"], row["delivery_id"]) == ("delivered", f"{MSG_ID}:success",
                                                                      seeded["delivery_ann"])
    assert receipt(sqlite_engine, seeded["delivery_ann"]) == "delivered"


def test_compatibility_mode_believes_only_the_encrypted_fields(client: TestClient, sqlite_engine: sa.Engine,
                                                               seeded: dict[str, int], aes_env: None) -> None:
    """兼容模式 sends the plaintext fields beside <Encrypt>; they are not covered by
    msg_signature, so a forged plaintext "user block" must change nothing."""
    forged = (f"<FromUserName><![CDATA[{OTHER_OPENID}]]></FromUserName><CreateTime>1772424003</CreateTime>"
              f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>"
              f"<MsgID>{OTHER_MSG_ID}</MsgID><Status><![CDATA[failed:user block]]></Status>")
    assert encrypted_post(client, template_finish("success"), outer_extra=forged).status_code == 200
    assert [(r["kind"], r["delivery_id"]) for r in responses(sqlite_engine)] == [("delivered", seeded["delivery_ann"])]
    assert suppressed(sqlite_engine) == set()


def test_an_encrypted_opt_out_text_suppresses(client: TestClient, sqlite_engine: sa.Engine,
                                              seeded: dict[str, int], aes_env: None) -> None:
    assert encrypted_post(client, text_message("退订")).status_code == 200
    assert suppressed(sqlite_engine) == {OPENID}


def test_encrypted_pushes_that_do_not_check_out_are_refused(client: TestClient, sqlite_engine: sa.Engine,
                                                            seeded: dict[str, int], aes_env: None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    push = template_finish("failed:user block")
    sealed = seal(push)
    # msg_signature over another ciphertext, or none: the body is not the one signed.
    assert encrypted_post(client, push, encrypt=sealed, signature=hashlib.sha1(b"x").hexdigest()).status_code == 403
    assert encrypted_post(client, push, encrypt=sealed, signature="").status_code == 403
    # Sealed for another account sharing the key.
    assert encrypted_post(client, push, encrypt=seal(push, appid="wx9999999999999999")).status_code == 403
    # Sealed with another key: the padding or the length gives it away.
    other_key = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
    assert encrypted_post(client, push, encrypt=seal(push, key_text=other_key)).status_code in (400, 403)
    assert encrypted_post(client, push, encrypt="not base64!").status_code == 400
    assert encrypted_post(client, push, encrypt="AAAA").status_code == 400  # base64, but not a whole block
    assert responses(sqlite_engine) == [] and suppressed(sqlite_engine) == set()
    # The key unset, or not a key: a 503 naming the variable, nothing recorded.
    monkeypatch.setenv(AES_KEY_ENV, "too-short")
    answer = encrypted_post(client, push)
    assert answer.status_code == 503 and AES_KEY_ENV in answer.json()["error"]
    monkeypatch.delenv(AES_KEY_ENV)
    answer = encrypted_post(client, push)
    assert answer.status_code == 503 and AES_KEY_ENV in answer.json()["error"]
    assert post(client, push, encrypt_type="sm4").status_code == 501
    assert responses(sqlite_engine) == []


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
                  '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
                  "<xml><MsgType>text</MsgType><Content>&c;</Content><FromUserName>x</FromUserName>"
                  "<CreateTime>1</CreateTime><MsgId>1</MsgId></xml>")
EXTERNAL_ENTITY = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                   "<xml><MsgType>text</MsgType><Content>&e;</Content></xml>")


@pytest.mark.parametrize("body", [
    BILLION_LAUGHS.encode(),
    EXTERNAL_ENTITY.encode(),
    b'<!doctype xml SYSTEM "http://attacker.example/x.dtd"><xml/>',
    # The same declaration in UTF-16 hides it from a byte search; the parser still refuses it.
    BILLION_LAUGHS.replace('version="1.0"', 'version="1.0" encoding="UTF-16"').encode("utf-16"),
])
def test_doctype_and_entity_declarations_are_refused(client: TestClient, sqlite_engine: sa.Engine,
                                                     body: bytes) -> None:
    answer = post(client, body)
    assert answer.status_code == 400
    assert "DOCTYPE" in answer.json()["error"]
    assert responses(sqlite_engine) == []


@pytest.mark.parametrize("body", [
    b"not xml",
    b"<xml><MsgType>text</MsgType>",
    b"<root><MsgType>text</MsgType></root>",
    b"<xml><MsgType>text</MsgType><Content>&undefined;</Content></xml>",
    template_finish("success").replace("<MsgID>200163836</MsgID>", "").encode(),
    template_finish("success").replace("<CreateTime>1772424003</CreateTime>", "<CreateTime>soon</CreateTime>").encode(),
    text_message("hi").replace("<MsgId>1234567890123456</MsgId>", "").encode(),
])
def test_malformed_pushes_are_400(client: TestClient, sqlite_engine: sa.Engine, body: bytes) -> None:
    answer = post(client, body)
    assert answer.status_code == 400
    assert isinstance(answer.json()["error"], str)
    assert "Traceback" not in answer.text
    assert responses(sqlite_engine) == []


def test_bodies_over_one_mebibyte_are_413(client: TestClient, sqlite_engine: sa.Engine) -> None:
    big = text_message("x" * MAX_XML_BYTES)
    assert post(client, big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: cut off as it passes the limit
        yield b"<xml><Content>"
        for _ in range(MAX_XML_BYTES // 65536 + 1):
            yield b"x" * 65536
        yield b"</Content></xml>"

    chunked = client.post(PATH + signed_query(), content=chunks(), headers={"Content-Type": "text/xml"})
    assert chunked.status_code == 413
    assert responses(sqlite_engine) == []


def test_a_database_failure_is_a_503_and_the_retry_is_recorded(client: TestClient, sqlite_engine: sa.Engine,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    working = response_writer.record_responses
    monkeypatch.setattr(response_writer, "record_responses", broken)
    answer = post(client, template_finish("success"))
    assert answer.status_code == 503
    assert responses(sqlite_engine) == []
    monkeypatch.setattr(response_writer, "record_responses", working)
    assert post(client, template_finish("success")).text == "success"
    assert len(responses(sqlite_engine)) == 1
