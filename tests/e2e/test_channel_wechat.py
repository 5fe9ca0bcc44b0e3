"""WeChat channels against a loopback server emulating the WeCom robot and Official Account APIs.

The fake checks what WeChat checks (the robot key, the access token, the documented body
shapes) and answers with scripted errcodes, so every row of CHANNELS.md §1 and §2d is
exercised through real HTTP. Redis-backed limiter and token-cache tests use db 12.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from campaigns.config.options.wechat import (
    WeChatOAChannelConfig,
    WeComRobotChannelConfig,
    refuses_marketing,
)
from campaigns.sending.messages import OutboundMessage, Outcome
from tests.conftest import missing_service
from workers.channels.base import Channel
from workers.channels.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from workers.channels.tokencache import CachedToken, MemoryTokenCache, RedisTokenCache, TokenCache
from workers.channels.wechat.official_account import WeChatOAChannel, next_beijing_midnight
from workers.channels.wechat.wecom_robot import WeComRobotChannel

REDIS_URL = os.environ.get("NURTURE_TEST_REDIS_WECHAT", "redis://127.0.0.1:6379/12")
ROBOT_KEY = "robot-key-5f1c"
APPID = "wx1234567890abcdef"
SECRET = "app-secret-9d2e"
NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)  # 23:30 in Beijing


@dataclass
class FakeWeChat:
    """State of the fake API: issued tokens, recorded calls and scripted answers."""

    url: str = ""
    calls: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    #: Scripted answers per API path, used once each, in order.
    answers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    valid_tokens: set[str] = field(default_factory=set)
    issued: int = 0
    #: Channels the test built, closed at teardown.
    opened: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, path: str, *answers: dict[str, Any]) -> None:
        self.answers.setdefault(path, []).extend(answers)

    def calls_to(self, path: str) -> list[tuple[dict[str, str], Any]]:
        with self.lock:
            return [(query, body) for p, query, body in self.calls if p == path]

    def revoke_tokens(self) -> None:
        """Make every issued token invalid, as when another system force-refreshes."""
        with self.lock:
            self.valid_tokens.clear()

    # -- the emulated endpoints -------------------------------------------------------

    def handle(self, path: str, query: dict[str, str], body: Any) -> dict[str, Any]:
        with self.lock:
            self.calls.append((path, query, body))
            scripted = self.answers.get(path)
            answer = scripted.pop(0) if scripted else None
        if path == "/cgi-bin/webhook/send":
            return answer or self._robot(query, body)
        if path == "/cgi-bin/stable_token":
            return answer or self._stable_token(body)
        if query.get("access_token") not in self.valid_tokens:
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
        shape_error = self._message_shape(path, body)
        if shape_error:
            return {"errcode": 47001, "errmsg": f"data format error: {shape_error}"}
        return answer or {"errcode": 0, "errmsg": "ok", "msgid": 200228332 + len(self.calls)}

    def _robot(self, query: dict[str, str], body: Any) -> dict[str, Any]:
        if query.get("key") != ROBOT_KEY:
            return {"errcode": 93000, "errmsg": "invalid webhook url"}
        msgtype = body.get("msgtype")
        if msgtype in ("text", "markdown") and isinstance(body.get(msgtype, {}).get("content"), str):
            return {"errcode": 0, "errmsg": "ok"}
        if msgtype == "news":
            articles = body.get("news", {}).get("articles")
            if isinstance(articles, list) and 1 <= len(articles) <= 8 and all("title" in a and "url" in a
                                                                               for a in articles):
                return {"errcode": 0, "errmsg": "ok"}
        return {"errcode": 40008, "errmsg": "invalid message type"}

    def _stable_token(self, body: Any) -> dict[str, Any]:
        if set(body) != {"grant_type", "appid", "secret", "force_refresh"} or body["grant_type"] != "client_credential":
            return {"errcode": 40002, "errmsg": "invalid grant_type"}
        if body["appid"] != APPID:
            return {"errcode": 40013, "errmsg": "invalid appid"}
        if body["secret"] != SECRET:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        if not isinstance(body["force_refresh"], bool):
            return {"errcode": 40097, "errmsg": "invalid args"}
        with self.lock:
            if body["force_refresh"] or not self.valid_tokens:
                self.issued += 1
                token = f"ACCESS_TOKEN_{self.issued:03d}_" + "x" * 100
                self.valid_tokens = {token}  # a forced refresh invalidates the old token
            token = next(iter(self.valid_tokens))
        return {"access_token": token, "expires_in": 7200}

    @staticmethod
    def _message_shape(path: str, body: Any) -> str | None:
        if not isinstance(body.get("touser"), str) or not body["touser"]:
            return "touser"
        if path in ("/cgi-bin/message/template/send", "/cgi-bin/message/subscribe/bizsend"):
            if not body.get("template_id"):
                return "template_id"
            data = body.get("data")
            if not isinstance(data, dict) or not all(isinstance(v, dict) and "value" in v for v in data.values()):
                return "data"
            if path.endswith("template/send") and not body.get("client_msg_id"):
                return "client_msg_id"
            return None
        if path == "/cgi-bin/message/custom/send":
            msgtype = body.get("msgtype")
            return None if msgtype and isinstance(body.get(msgtype), dict) else "msgtype"
        return "unknown api"


@pytest.fixture
def wechat() -> Iterator[FakeWeChat]:
    """A loopback server speaking the WeCom robot and Official Account APIs."""
    fake = FakeWeChat()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            split = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(split.query).items()}
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if not self.headers.get("Content-Type", "").startswith("application/json"):
                payload = {"errcode": 44002, "errmsg": "empty post data"}
            else:
                payload = fake.handle(split.path, query, json.loads(raw))
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    for channel in fake.opened:
        channel.close()
    server.shutdown()
    server.server_close()


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_WECOM_KEY", ROBOT_KEY)
    monkeypatch.setenv("TEST_WECHAT_SECRET", SECRET)


@pytest.fixture
def redis_client() -> Iterator[Any]:
    """Redis db 12, flushed before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        missing_service(f"Redis is not reachable at {REDIS_URL}: {exc}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def message(parts: dict[str, str], *, recipient: str = "oOPENID123", **metadata: Any) -> OutboundMessage:
    return OutboundMessage(send_key="sk-" + "a" * 40, delivery_id=7, campaign="order_notice", step=0,
                           channel="wx", recipient=recipient, customer_external_id="C00001", parts=parts,
                           metadata=dict(metadata))


def robot(wechat: FakeWeChat, *, limiter: RateLimiter | None = None, **options: Any) -> WeComRobotChannel:
    config = WeComRobotChannelConfig.model_validate(
        {"kind": "wecom_robot", "key_env": "TEST_WECOM_KEY", "endpoint": wechat.url, **options})
    channel = WeComRobotChannel(name="group", options=config, rate_limiter=limiter, clock=lambda: NOW)
    wechat.opened.append(channel)
    return channel


def oa(wechat: FakeWeChat, *, cache: TokenCache | None = None, **options: Any) -> WeChatOAChannel:
    config = WeChatOAChannelConfig.model_validate(
        {"kind": "wechat_oa", "appid": APPID, "secret_env": "TEST_WECHAT_SECRET", "endpoint": wechat.url,
         "template_id": "TPL_ORDER_SHIPPED", **options})
    channel = WeChatOAChannel(name="wx", options=config, token_cache=cache, clock=lambda: NOW)
    wechat.opened.append(channel)
    return channel


TEMPLATE_DATA = json.dumps({"thing1": "Order 1001", "time2": {"value": "2026-11-24 10:00"}})


# -- WeCom group robot ------------------------------------------------------------------


@pytest.mark.usefixtures("secrets_env")
class TestWeComRobot:
    def test_text_is_posted_with_the_key_and_mentions(self, wechat: FakeWeChat) -> None:
        channel = robot(wechat, mentioned_list=["@all"], mentioned_mobile_list=["13800000000"])
        assert isinstance(channel, Channel)

        result = channel.send(message({"txt": "新品上架 / new arrivals", "sms": "short"}))

        assert result.outcome is Outcome.OK and result.code == "0"
        [(query, body)] = wechat.calls_to("/cgi-bin/webhook/send")
        assert query == {"key": ROBOT_KEY}
        assert body == {"msgtype": "text", "text": {"content": "新品上架 / new arrivals", "mentioned_list": ["@all"],
                                                    "mentioned_mobile_list": ["13800000000"]}}
        channel.close()

    def test_text_falls_back_to_the_sms_part(self, wechat: FakeWeChat) -> None:
        assert robot(wechat).send(message({"sms": "short text"})).outcome is Outcome.OK
        [(_, body)] = wechat.calls_to("/cgi-bin/webhook/send")
        assert body == {"msgtype": "text", "text": {"content": "short text"}}

    def test_markdown_comes_from_the_txt_part(self, wechat: FakeWeChat) -> None:
        content = '## 本周 <font color="warning">5</font> 单'
        assert robot(wechat, msgtype="markdown").send(message({"txt": content})).outcome is Outcome.OK
        [(_, body)] = wechat.calls_to("/cgi-bin/webhook/send")
        assert body == {"msgtype": "markdown", "markdown": {"content": content}}

    @pytest.mark.parametrize("wrap", [lambda a: {"articles": a}, lambda a: a], ids=["object", "list"])
    def test_news_articles_come_from_the_json_part(self, wechat: FakeWeChat, wrap: Any) -> None:
        articles = [{"title": "秋季新品", "description": "点击查看", "url": "https://shop.example.com/a",
                     "picurl": "https://shop.example.com/a.png"}]
        result = robot(wechat, msgtype="news").send(message({"json": json.dumps(wrap(articles))}))
        assert result.outcome is Outcome.OK
        [(_, body)] = wechat.calls_to("/cgi-bin/webhook/send")
        assert body == {"msgtype": "news", "news": {"articles": articles}}

    @pytest.mark.parametrize(
        ("msgtype", "size", "outcome"),
        [("text", 2048, Outcome.OK), ("text", 2049, Outcome.PERMANENT),
         ("markdown", 4096, Outcome.OK), ("markdown", 4097, Outcome.PERMANENT)],
    )
    def test_byte_limits_count_utf8_bytes(self, wechat: FakeWeChat, msgtype: str, size: int,
                                          outcome: Outcome) -> None:
        content = "订" * (size // 3) + "x" * (size % 3)  # 3 bytes per CJK character
        assert len(content.encode()) == size

        result = robot(wechat, msgtype=msgtype).send(message({"txt": content}))

        assert result.outcome is outcome
        if outcome is Outcome.PERMANENT:
            assert result.error is not None and f"{size} bytes, over WeCom's limit" in result.error
            assert wechat.calls_to("/cgi-bin/webhook/send") == []

    @pytest.mark.parametrize(
        ("articles", "error"),
        [([], "1 to 8 articles"), ([{"title": "t", "url": "https://x"}] * 9, "1 to 8 articles"),
         ([{"title": "t" * 129, "url": "https://x"}], "title is over 128 bytes"),
         ([{"title": "t", "url": "https://x", "description": "d" * 513}], "description is over 512 bytes")],
    )
    def test_bad_news_is_permanent_without_a_request(self, wechat: FakeWeChat, articles: Any, error: str) -> None:
        result = robot(wechat, msgtype="news").send(message({"json": json.dumps({"articles": articles})}))
        assert result.outcome is Outcome.PERMANENT and error in (result.error or "")
        assert wechat.calls_to("/cgi-bin/webhook/send") == []

    @pytest.mark.parametrize(
        ("errcode", "outcome", "retry_after"),
        [(45009, Outcome.RETRY, 65.0), (-1, Outcome.RETRY, None), (93000, Outcome.HALT, None),
         (40008, Outcome.PERMANENT, None), (40058, Outcome.PERMANENT, None)],
    )
    def test_errcodes_map_to_outcomes(self, wechat: FakeWeChat, errcode: int, outcome: Outcome,
                                      retry_after: float | None) -> None:
        wechat.script("/cgi-bin/webhook/send", {"errcode": errcode, "errmsg": "scripted"})
        result = robot(wechat).send(message({"txt": "hi"}))
        assert (result.outcome, result.code, result.retry_after_s) == (outcome, str(errcode), retry_after)
        assert ROBOT_KEY not in (result.error or "")

    def test_freq_limit_wait_and_errcode_table_are_configurable(self, wechat: FakeWeChat) -> None:
        wechat.script("/cgi-bin/webhook/send", {"errcode": 45009, "errmsg": "api freq out of limit"},
                      {"errcode": 93000, "errmsg": "invalid webhook url"})
        channel = robot(wechat, freq_limit_retry_after="90s", errcode_outcomes={"93000": "permanent"})
        assert channel.send(message({"txt": "hi"})).retry_after_s == 90.0
        assert channel.send(message({"txt": "hi"})).outcome is Outcome.PERMANENT

    def test_wrong_key_halts(self, wechat: FakeWeChat, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TEST_WECOM_KEY", "removed-robot")
        assert robot(wechat).send(message({"txt": "hi"})).outcome is Outcome.HALT

    def test_unset_key_halts_without_a_request(self, wechat: FakeWeChat, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("TEST_WECOM_KEY")
        result = robot(wechat).send(message({"txt": "hi"}))
        assert result.outcome is Outcome.HALT and "TEST_WECOM_KEY" in (result.error or "")
        assert wechat.calls == []

    def test_unreachable_server_retries(self) -> None:
        unreachable = FakeWeChat(url="http://127.0.0.1:9")
        result = robot(unreachable).send(message({"txt": "hi"}))
        assert result.outcome is Outcome.RETRY and result.code in ("network", "timeout")

    def test_rate_limit_defers_instead_of_sleeping(self, wechat: FakeWeChat) -> None:
        clock = [1000.0]
        limiter = MemoryRateLimiter(limit=2, window_s=60, clock=lambda: clock[0])
        channel = robot(wechat, limiter=limiter)

        outcomes = [channel.send(message({"txt": "hi"})) for _ in range(3)]

        assert [r.outcome for r in outcomes] == [Outcome.OK, Outcome.OK, Outcome.DEFER]
        assert outcomes[2].defer_until == NOW + timedelta(seconds=60)
        assert len(wechat.calls_to("/cgi-bin/webhook/send")) == 2
        clock[0] += 60
        assert channel.send(message({"txt": "hi"})).outcome is Outcome.OK

    def test_the_key_never_reaches_the_logs(self, wechat: FakeWeChat, caplog: pytest.LogCaptureFixture) -> None:
        wechat.script("/cgi-bin/webhook/send", {"errcode": 93000, "errmsg": "invalid webhook url"})
        with caplog.at_level(logging.DEBUG):
            robot(wechat).send(message({"txt": "hi"}))
        assert any("key=***" in r.getMessage() for r in caplog.records)
        assert ROBOT_KEY not in caplog.text


# -- Official Account -------------------------------------------------------------------


@pytest.mark.usefixtures("secrets_env")
class TestOfficialAccount:
    def test_template_message_shape_and_msgid(self, wechat: FakeWeChat) -> None:
        channel = oa(wechat, url="https://shop.example.com/o/1", miniprogram={"appid": "wxmini", "pagepath": "p?a=1"})
        assert isinstance(channel, Channel)

        result = channel.send(message({"json": TEMPLATE_DATA}, purpose="transactional"))

        assert result.outcome is Outcome.OK and result.provider_message_id is not None
        [(query, body)] = wechat.calls_to("/cgi-bin/message/template/send")
        assert query["access_token"] in wechat.valid_tokens
        assert body == {"touser": "oOPENID123", "template_id": "TPL_ORDER_SHIPPED",
                        "url": "https://shop.example.com/o/1", "miniprogram": {"appid": "wxmini", "pagepath": "p?a=1"},
                        "client_msg_id": "sk-" + "a" * 40,
                        "data": {"thing1": {"value": "Order 1001"}, "time2": {"value": "2026-11-24 10:00"}}}
        [(_, token_body)] = wechat.calls_to("/cgi-bin/stable_token")
        assert token_body == {"grant_type": "client_credential", "appid": APPID, "secret": SECRET,
                              "force_refresh": False}
        channel.close()

    def test_json_part_may_carry_data_and_a_per_message_url(self, wechat: FakeWeChat) -> None:
        part = json.dumps({"data": {"thing1": "x"}, "url": "https://shop.example.com/o/2"})
        assert oa(wechat).send(message({"json": part}, purpose="transactional")).outcome is Outcome.OK
        [(_, body)] = wechat.calls_to("/cgi-bin/message/template/send")
        assert body["url"] == "https://shop.example.com/o/2" and body["data"] == {"thing1": {"value": "x"}}

    def test_the_token_is_fetched_once_and_reused(self, wechat: FakeWeChat) -> None:
        channel = oa(wechat)
        for _ in range(3):
            assert channel.send(message({"json": TEMPLATE_DATA}, purpose="transactional")).outcome is Outcome.OK
        assert len(wechat.calls_to("/cgi-bin/stable_token")) == 1

    def test_subscribe_message(self, wechat: FakeWeChat) -> None:
        channel = oa(wechat, message_type="subscribe", page="pages/order?id=1", miniprogram_state="formal",
                     lang="zh_CN")
        result = channel.send(message({"json": json.dumps({"thing1": "已发货"})}, purpose="transactional"))
        assert result.outcome is Outcome.OK
        [(_, body)] = wechat.calls_to("/cgi-bin/message/subscribe/bizsend")
        assert body == {"touser": "oOPENID123", "template_id": "TPL_ORDER_SHIPPED", "page": "pages/order?id=1",
                        "miniprogram_state": "formal", "lang": "zh_CN", "data": {"thing1": {"value": "已发货"}}}

    @pytest.mark.parametrize("message_type", ["template", "subscribe"])
    def test_marketing_is_refused(self, wechat: FakeWeChat, message_type: str) -> None:
        channel = oa(wechat, message_type=message_type)
        assert refuses_marketing(channel.options)
        result = channel.send(message({"json": TEMPLATE_DATA}, purpose="marketing"))
        assert result.outcome is Outcome.PERMANENT
        assert result.error == f"{message_type} messages are for service notices only"
        assert wechat.calls == []

    def test_customer_service_inside_the_window(self, wechat: FakeWeChat) -> None:
        channel = oa(wechat, message_type="customer_service", template_id=None)
        assert not refuses_marketing(channel.options)
        last = (NOW - timedelta(hours=47)).isoformat()
        result = channel.send(message({"txt": "您的订单已发货"}, purpose="marketing", last_interaction_at=last))
        assert result.outcome is Outcome.OK
        [(_, body)] = wechat.calls_to("/cgi-bin/message/custom/send")
        assert body == {"touser": "oOPENID123", "msgtype": "text", "text": {"content": "您的订单已发货"}}

    def test_customer_service_outside_the_window_is_permanent(self, wechat: FakeWeChat) -> None:
        channel = oa(wechat, message_type="customer_service")
        last = (NOW - timedelta(hours=49)).isoformat()
        result = channel.send(message({"txt": "hi"}, last_interaction_at=last))
        assert result.outcome is Outcome.PERMANENT and "within 48 h" in (result.error or "")
        assert wechat.calls == []

    def test_customer_service_json_part_is_a_whole_message(self, wechat: FakeWeChat) -> None:
        part = {"msgtype": "news", "news": {"articles": [{"title": "t", "url": "https://x"}]}}
        channel = oa(wechat, message_type="customer_service")
        assert channel.send(message({"json": json.dumps(part)})).outcome is Outcome.OK
        [(_, body)] = wechat.calls_to("/cgi-bin/message/custom/send")
        assert body == {"touser": "oOPENID123", **part}

    @pytest.mark.parametrize(
        ("errcode", "outcome"),
        [(-1, Outcome.RETRY), (40003, Outcome.PERMANENT), (43004, Outcome.SUPPRESS), (47003, Outcome.PERMANENT),
         (40037, Outcome.HALT), (43101, Outcome.PERMANENT), (45015, Outcome.PERMANENT), (48001, Outcome.HALT),
         (99999, Outcome.PERMANENT)],
    )
    def test_errcodes_map_to_outcomes(self, wechat: FakeWeChat, errcode: int, outcome: Outcome) -> None:
        wechat.script("/cgi-bin/message/template/send", {"errcode": errcode, "errmsg": "scripted"})
        result = oa(wechat).send(message({"json": TEMPLATE_DATA}, purpose="transactional"))
        assert (result.outcome, result.code) == (outcome, str(errcode))

    def test_daily_quota_defers_to_beijing_midnight(self, wechat: FakeWeChat) -> None:
        wechat.script("/cgi-bin/message/template/send",
                      {"errcode": 45009, "errmsg": "reach max api daily quota limit"})
        result = oa(wechat).send(message({"json": TEMPLATE_DATA}, purpose="transactional"))
        assert result.outcome is Outcome.DEFER
        # NOW is 23:30 in Beijing (UTC+8): the quota resets 30 minutes later.
        assert result.defer_until == datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
        assert next_beijing_midnight(datetime(2026, 11, 24, 16, 0, tzinfo=UTC)) == datetime(2026, 11, 25, 16, 0,
                                                                                            tzinfo=UTC)

    def test_errcode_table_is_configurable(self, wechat: FakeWeChat) -> None:
        wechat.script("/cgi-bin/message/template/send", {"errcode": 45047, "errmsg": "out of limit"})
        result = oa(wechat, errcode_outcomes={"45047": "halt"}).send(
            message({"json": TEMPLATE_DATA}, purpose="transactional"))
        assert result.outcome is Outcome.HALT

    @pytest.mark.parametrize("errcode", [40001, 40014, 42001])
    def test_rejected_token_is_refreshed_once_and_the_send_retried_once(self, wechat: FakeWeChat,
                                                                         errcode: int) -> None:
        channel = oa(wechat)
        assert channel.send(message({"json": TEMPLATE_DATA}, purpose="transactional")).outcome is Outcome.OK
        wechat.script("/cgi-bin/message/template/send", {"errcode": errcode, "errmsg": "token rejected"})

        result = channel.send(message({"json": TEMPLATE_DATA}, purpose="transactional"))

        assert result.outcome is Outcome.OK
        tokens = wechat.calls_to("/cgi-bin/stable_token")
        assert [body["force_refresh"] for _, body in tokens] == [False, True]
        sends = wechat.calls_to("/cgi-bin/message/template/send")
        assert len(sends) == 3 and sends[1][0]["access_token"] != sends[2][0]["access_token"]

    def test_a_token_rejected_twice_is_retried_later_not_looped(self, wechat: FakeWeChat) -> None:
        wechat.script("/cgi-bin/message/template/send", {"errcode": 40001, "errmsg": "a"},
                      {"errcode": 42001, "errmsg": "b"})
        result = oa(wechat).send(message({"json": TEMPLATE_DATA}, purpose="transactional"))
        assert (result.outcome, result.code) == (Outcome.RETRY, "42001")
        assert len(wechat.calls_to("/cgi-bin/stable_token")) == 2
        assert len(wechat.calls_to("/cgi-bin/message/template/send")) == 2

    def test_a_revoked_token_is_replaced(self, wechat: FakeWeChat) -> None:
        # Given a cached token that another system's forced refresh has invalidated
        channel = oa(wechat)
        channel.send(message({"json": TEMPLATE_DATA}, purpose="transactional"))
        wechat.revoke_tokens()
        # When sending, the fake answers 40001 for the old token; the channel refreshes and retries
        assert channel.send(message({"json": TEMPLATE_DATA}, purpose="transactional")).outcome is Outcome.OK
        assert len(wechat.calls_to("/cgi-bin/stable_token")) == 2

    def test_token_is_refreshed_with_five_minutes_left(self, wechat: FakeWeChat) -> None:
        cache = MemoryTokenCache()
        import time

        cache.put(f"wechat_oa:{APPID}", CachedToken("OLD_TOKEN", time.time() + 240))
        channel = oa(wechat, cache=cache)
        assert channel.send(message({"json": TEMPLATE_DATA}, purpose="transactional")).outcome is Outcome.OK
        [(_, body)] = wechat.calls_to("/cgi-bin/stable_token")
        assert body["force_refresh"] is False
        cached = cache.get(f"wechat_oa:{APPID}")
        assert cached is not None and cached.value != "OLD_TOKEN"

    def test_while_another_process_refreshes_a_still_valid_token_is_used(self, wechat: FakeWeChat) -> None:
        import time

        cache = MemoryTokenCache()
        channel = oa(wechat, cache=cache)
        channel.send(message({"json": TEMPLATE_DATA}, purpose="transactional"))
        cached = cache.get(channel.token_key)
        assert cached is not None
        cache.put(channel.token_key, CachedToken(cached.value, time.time() + 120))  # inside the margin
        assert cache.try_lock(channel.token_key, 30) is not None  # "another process" is refreshing

        assert channel.send(message({"json": TEMPLATE_DATA}, purpose="transactional")).outcome is Outcome.OK
        assert len(wechat.calls_to("/cgi-bin/stable_token")) == 1

    @pytest.mark.parametrize(("answer", "outcome"),
                             [({"errcode": 40125, "errmsg": "invalid appsecret"}, Outcome.HALT),
                              ({"errcode": 40164, "errmsg": "invalid ip"}, Outcome.HALT),
                              ({"errcode": -1, "errmsg": "system error"}, Outcome.RETRY)])
    def test_token_errors(self, wechat: FakeWeChat, answer: dict[str, Any], outcome: Outcome) -> None:
        wechat.script("/cgi-bin/stable_token", answer)
        result = oa(wechat).send(message({"json": TEMPLATE_DATA}, purpose="transactional"))
        assert (result.outcome, result.code) == (outcome, str(answer["errcode"]))
        assert SECRET not in (result.error or "")
        assert wechat.calls_to("/cgi-bin/message/template/send") == []

    def test_wrong_secret_halts(self, wechat: FakeWeChat, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TEST_WECHAT_SECRET", "wrong")
        result = oa(wechat).send(message({"json": TEMPLATE_DATA}, purpose="transactional"))
        assert (result.outcome, result.code) == (Outcome.HALT, "40125")

    def test_template_id_is_required(self) -> None:
        with pytest.raises(ValueError, match="template_id is required"):
            WeChatOAChannelConfig(kind="wechat_oa", appid=APPID, secret_env="S")

    def test_access_token_never_reaches_the_logs(self, wechat: FakeWeChat, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.DEBUG):
            oa(wechat).send(message({"json": TEMPLATE_DATA}, purpose="transactional"))
        assert any("access_token=***" in r.getMessage() for r in caplog.records)
        assert "ACCESS_TOKEN_" not in caplog.text and SECRET not in caplog.text

    def test_two_channels_sharing_a_redis_cache_fetch_one_token(self, wechat: FakeWeChat,
                                                                redis_client: Any) -> None:
        import redis

        # Two "processes": separate channel instances, separate Redis connections, one cache.
        first = oa(wechat, cache=RedisTokenCache(client=redis.Redis.from_url(REDIS_URL), prefix="t"))
        second = oa(wechat, cache=RedisTokenCache(client=redis.Redis.from_url(REDIS_URL), prefix="t"))

        assert first.send(message({"json": TEMPLATE_DATA}, purpose="transactional")).outcome is Outcome.OK
        assert second.send(message({"json": TEMPLATE_DATA}, purpose="transactional")).outcome is Outcome.OK

        assert len(wechat.calls_to("/cgi-bin/stable_token")) == 1
        tokens = {query["access_token"] for query, _ in wechat.calls_to("/cgi-bin/message/template/send")}
        assert len(tokens) == 1
        assert 0 < redis_client.pttl(f"t:token:wechat_oa:{APPID}") <= 7200 * 1000

    def test_concurrent_senders_in_two_processes_refresh_once(self, wechat: FakeWeChat, redis_client: Any) -> None:
        import redis

        # Given two channel instances (as in two worker processes), four threads each, a cold cache
        channels = [oa(wechat, cache=RedisTokenCache(client=redis.Redis.from_url(REDIS_URL), prefix="t"))
                    for _ in range(2)]
        barrier = threading.Barrier(8)
        outcomes: list[Outcome] = []

        def send(channel: WeChatOAChannel) -> None:
            barrier.wait()
            outcomes.append(channel.send(message({"json": TEMPLATE_DATA}, purpose="transactional")).outcome)

        threads = [threading.Thread(target=send, args=(channels[i % 2],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        # Then all are sent and only one of them fetched a token
        assert outcomes == [Outcome.OK] * 8
        assert len(wechat.calls_to("/cgi-bin/stable_token")) == 1


# -- limiters and the token cache -----------------------------------------------------------


def test_memory_limiter_is_a_sliding_window() -> None:
    clock = [0.0]
    limiter = MemoryRateLimiter(limit=3, window_s=60, clock=lambda: clock[0])
    assert isinstance(limiter, RateLimiter)
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, None]
    clock[0] = 20.0
    assert limiter.acquire("a") == 40.0
    assert limiter.acquire("b") is None  # keys are independent
    clock[0] = 60.0
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, None]  # the first three left the window
    assert limiter.acquire("a") == 60.0


def test_redis_limiter_is_shared_between_clients(redis_client: Any) -> None:
    import redis

    first = RedisRateLimiter(limit=3, window_s=60, client=redis.Redis.from_url(REDIS_URL), prefix="t")
    second = RedisRateLimiter(limit=3, window_s=60, client=redis.Redis.from_url(REDIS_URL), prefix="t")

    assert [first.acquire("robot"), second.acquire("robot"), first.acquire("robot")] == [None, None, None]
    wait = second.acquire("robot")
    assert wait is not None and 0 < wait <= 60
    assert first.acquire("other") is None
    assert 0 < redis_client.pttl("t:ratelimit:robot") <= 60_000


def test_redis_limiter_holds_across_processes(redis_client: Any) -> None:
    # Given two processes each trying 15 sends against a 20/min limit
    script = (
        "import sys; from workers.channels.ratelimit import RedisRateLimiter; "
        f"l = RedisRateLimiter(limit=20, window_s=60, url={REDIS_URL!r}, prefix='t'); "
        "print(sum(l.acquire('robot') is None for _ in range(15)))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
             for _ in range(2)]
    granted = [int(p.communicate(timeout=60)[0]) for p in procs]
    # Then exactly 20 are granted in total
    assert all(p.returncode == 0 for p in procs)
    assert sum(granted) == 20


def test_redis_token_cache_lock_is_single_flight(redis_client: Any) -> None:
    import time

    cache = RedisTokenCache(url=REDIS_URL, prefix="t")
    assert isinstance(cache, TokenCache)
    lease = cache.try_lock("k", 30)
    assert lease is not None
    assert cache.try_lock("k", 30) is None
    cache.unlock("k", "not-the-lease")  # someone else's lease does not release it
    assert cache.try_lock("k", 30) is None
    cache.unlock("k", lease)
    assert cache.try_lock("k", 30) is not None

    assert cache.get("k") is None
    cache.put("k", CachedToken("T", time.time() + 100))
    assert cache.get("k") == CachedToken("T", pytest.approx(time.time() + 100, abs=5))


def test_customer_service_messages_go_only_to_customers_who_interacted_within_48_hours(
    wechat: FakeWeChat, secrets_env: None, tmp_path: Any, sqlite_url: str
) -> None:
    """Through the worker path: the last interaction comes from the customer's events."""
    import sqlalchemy as sa

    from campaigns.project.loading import load_config
    from campaigns.store.models import Customer, Delivery, Event
    from tests.conftest import TICK_NOW, seed_customers
    from workers.jobs.inprocess import InProcessWorkers
    from workers.jobs.runtime import Runtime

    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "cs.txt.j2").write_text("Hello {{ customer.first_name }}")
    (tmp_path / "config.toml").write_text(f"""
[database]
url = "{sqlite_url}"
[profiles]
cron = ""
[channels.oa]
kind = "wechat_oa"
appid = "{APPID}"
secret_env = "TEST_WECHAT_SECRET"
endpoint = "{wechat.url}"
message_type = "customer_service"
[[campaigns]]
name = "care"
purpose = "transactional"
timezone = "Asia/Shanghai"
trigger = {{ cron = "0 10 * * *" }}
channels = ["oa"]
  [[campaigns.steps]]
  template = "cs"
""")
    runtime = Runtime.from_config(load_config(tmp_path / "config.toml"), clock=lambda: TICK_NOW)
    seed_customers(runtime.engine, count=3, now=TICK_NOW, lapsed_share=0.0)
    with runtime.engine.begin() as conn:
        ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
        for external_id in ids:
            conn.execute(sa.update(Customer).where(Customer.id == ids[external_id])
                         .values(wechat_openid=f"o-{external_id}"))
        # C00000 wrote to the account an hour ago, C00001 three days ago, C00002 never.
        for external_id, hours in (("C00000", 1), ("C00001", 72)):
            conn.execute(sa.insert(Event.__table__).values(
                customer_id=ids[external_id], name="wechat_message", occurred_at=TICK_NOW - timedelta(hours=hours),
                properties={}, dedupe_key=f"m-{external_id}"))

    with InProcessWorkers(runtime=runtime).running() as workers:
        workers.tick(TICK_NOW)

    with runtime.engine.connect() as conn:
        outcome = dict(conn.execute(sa.select(Customer.external_id, Delivery.status)
                                    .join(Delivery, Delivery.customer_id == Customer.id)).all())
        errors = dict(conn.execute(sa.select(Customer.external_id, Delivery.last_error)
                                   .join(Delivery, Delivery.customer_id == Customer.id)).all())
    runtime.close()
    assert outcome == {"C00000": "sent", "C00001": "failed", "C00002": "failed"}, errors
    assert [body["touser"] for _, body in wechat.calls_to("/cgi-bin/message/custom/send")] == ["o-C00000"]
