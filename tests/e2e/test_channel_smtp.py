"""The ``smtp`` channel against a real SMTP server (aiosmtpd) on 127.0.0.1.

The server records every message with the connection it came on, and can be told to
answer MAIL, RCPT or DATA with a scripted reply, to drop connections, to require AUTH
and to speak STARTTLS or implicit TLS (with a self-signed certificate made by the
``openssl`` command, when present).
"""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from campaigns.config.options.smtp import SmtpChannelConfig
from campaigns.sending.messages import OutboundMessage, Outcome
from campaigns.sending.tokens import make_unsubscribe_token, verify_unsubscribe_token
from workers.channels.smtp import SmtpChannel
from workers.channels.smtp_replies import classify_exception, classify_reply

SECRET = "unsub-secret-for-tests"
SECRET_ENV = "NURTURE_TEST_UNSUB_SECRET"
PASSWORD_ENV = "NURTURE_TEST_SMTP_PASSWORD"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    peer: Any
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool

    def parsed(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.content, policy=policy.default)  # type: ignore[return-value]


@dataclass
class Handler:
    """Records messages; answers from the scripts keyed by recipient address."""

    messages: list[Received] = field(default_factory=list)
    mail_replies: list[str] = field(default_factory=list)  # consumed one per MAIL
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: dict[str, str] = field(default_factory=dict)
    drop_on_data: set[str] = field(default_factory=set)
    servers: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        rcpt = envelope.rcpt_tos[0]
        with self.lock:
            self.servers.append(server)
        if rcpt in self.drop_on_data:
            server.transport.close()
            return "250 OK"
        if rcpt in self.data_replies:
            return self.data_replies[rcpt]
        with self.lock:
            self.messages.append(
                Received(session.peer, envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
                         server.transport.get_extra_info("ssl_object") is not None)
            )
        return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"

    def connections(self) -> set[Any]:
        return {m.peer for m in self.messages}


@dataclass
class Server:
    handler: Handler
    controller: Controller
    port: int

    def drop_connections(self) -> None:
        """Close every connection a message came on, from the server side, and wait for it."""
        done = threading.Event()

        def close_all() -> None:
            for server in self.handler.servers:
                if server.transport is not None:
                    server.transport.close()
            done.set()

        self.controller.loop.call_soon_threadsafe(close_all)
        assert done.wait(5)


def start(handler: Handler, **kwargs: Any) -> Server:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return Server(handler, controller, port)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = start(Handler())
    yield srv
    srv.controller.stop()


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv(PASSWORD_ENV, "right-password")


def options(port: int, **overrides: Any) -> SmtpChannelConfig:
    data: dict[str, Any] = {
        "kind": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from": "Shop <news@shop.example.com>",
        "timeout": "5s",
        "message_id_domain": "mail.shop.example.com",
        "unsubscribe_url": "https://u.shop.example.com/u/{token}",
        "unsubscribe_mailto": "unsubscribe@shop.example.com",
        "unsubscribe_secret_env": SECRET_ENV,
    }
    data.update(overrides)
    return SmtpChannelConfig.model_validate(data)


def outbound(recipient: str = "alice@example.org", *, n: int = 1, purpose: str = "marketing",
             parts: dict[str, str] | None = None) -> OutboundMessage:
    return OutboundMessage(
        send_key=f"spring_sale:0:{n}:1",
        delivery_id=n,
        campaign="spring_sale",
        step=0,
        channel="email",
        recipient=recipient,
        customer_external_id=f"c{n}",
        parts=parts if parts is not None else {
            "subject": "Spring sale — 春季特卖",
            "txt": "Hello Alice,\n20% off everything. 你好\n",
            "html": "<p>Hello <b>Alice</b>, 20% off everything. 你好</p>\n",
        },
        metadata={"purpose": purpose},
    )


def test_without_the_installation_secret_no_verp_sender_is_used(server: Server) -> None:
    # An unkeyed VERP tag would let anyone forge bounces for our messages: bounces then go
    # to the plain From address, which POST /bounces never sees.
    channel = SmtpChannel(name="email", options=options(server.port, envelope_from="bounce+{send_key_hash}@shop.example.com"))
    result = channel.send(outbound())
    channel.close()
    assert result.outcome is Outcome.OK, result
    [received] = server.handler.messages
    assert received.mail_from == "news@shop.example.com"


def independent_token(send_key: str, secret: str) -> str:
    """The sealed token recomputed from the documented algorithm (campaigns.sending.tokens,
    campaigns.sending.sealing), without the project's code."""
    key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None,
               info=b"nurture/unsubscribe-token-v2").derive(secret.encode())
    plaintext = len(send_key.encode()).to_bytes(2, "big") + send_key.encode()
    plaintext += b"\x00" * (-len(plaintext) % 32)
    sealed = b"\x02" + AESSIV(key).encrypt(plaintext, [b"nurture-unsubscribe-v2"])
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()


def legacy_token(send_key: str, secret: str) -> str:
    """A format-1 token, as mail sent before sealed tokens carries."""
    mac = hmac.new(secret.encode(), b"nurture-unsubscribe-v1:" + send_key.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(send_key.encode() + mac).rstrip(b"=").decode()


# -- message shape -------------------------------------------------------------------------


def test_marketing_message_is_multipart_with_message_id_and_one_click_unsubscribe(server: Server) -> None:
    secret = "installation-secret-for-tests"
    channel = SmtpChannel(name="email", options=options(server.port, envelope_from="bounce+{send_key_hash}@shop.example.com"),
                          secret=secret)
    message = outbound()

    result = channel.send(message)
    channel.close()

    assert result.outcome is Outcome.OK, result
    assert result.code == "250 Q1"
    [received] = server.handler.messages
    assert received.rcpt_tos == ["alice@example.org"]
    # HMAC-SHA256 under the HKDF-derived VERP key, recomputed without campaigns.config.keys.
    verp_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=b"nurture/verp-message-tag").derive(secret.encode())
    key_hash = hmac.new(verp_key, message.send_key.encode(), hashlib.sha256).hexdigest()[:32]
    assert key_hash != hashlib.sha256(message.send_key.encode()).hexdigest()[:32]
    assert received.mail_from == f"bounce+{key_hash}@shop.example.com"
    mail = received.parsed()
    assert mail["From"] == "Shop <news@shop.example.com>"
    assert mail["To"] == "alice@example.org"
    assert mail["Subject"] == "Spring sale — 春季特卖"
    assert mail["Date"]
    assert mail["Message-ID"] == result.provider_message_id == f"<{key_hash}@mail.shop.example.com>"
    # multipart/alternative, plainest first (RFC 2046)
    assert mail.get_content_type() == "multipart/alternative"
    kinds = [part.get_content_type() for part in mail.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    text, html = list(mail.iter_parts())
    # base64 bodies carry canonical CRLF line ends (RFC 2046 §4.1.1)
    assert text.get_content().replace("\r\n", "\n") == "Hello Alice,\n20% off everything. 你好\n"
    assert html.get_content().replace("\r\n", "\n") == "<p>Hello <b>Alice</b>, 20% off everything. 你好</p>\n"
    # 7-bit transfer encodings only: any relay accepts the message without 8BITMIME
    assert all(byte < 128 for byte in received.content)
    # RFC 8058 one-click unsubscribe
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    header = str(mail["List-Unsubscribe"])
    urls = re.findall(r"<([^>]+)>", header)
    assert len(urls) == 2
    https, mailto = urls
    assert https.startswith("https://u.shop.example.com/u/")
    token = https.rsplit("/", 1)[1]
    assert token == independent_token(message.send_key, SECRET)
    assert verify_unsubscribe_token(token, SECRET) == message.send_key
    # Sealed: the send key (which may name the customer) is not readable in the header.
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert message.send_key.encode() not in raw and message.send_key not in header
    assert mailto == f"mailto:unsubscribe@shop.example.com?subject=unsubscribe%20{token}"


def test_unsubscribe_token_rejects_tampering_and_other_secrets() -> None:
    token = make_unsubscribe_token("spring_sale:0:42:1", SECRET)
    assert verify_unsubscribe_token(token, SECRET) == "spring_sale:0:42:1"
    # another customer's send key, sealed or signed with a guessed secret
    assert verify_unsubscribe_token(independent_token("spring_sale:0:43:1", "guessed"), SECRET) is None
    assert verify_unsubscribe_token(legacy_token("spring_sale:0:43:1", "guessed"), SECRET) is None
    # format-1 tokens in mail already delivered still work
    assert verify_unsubscribe_token(legacy_token("spring_sale:0:43:1", SECRET), SECRET) == "spring_sale:0:43:1"
    flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    assert verify_unsubscribe_token(flipped, SECRET) is None
    assert verify_unsubscribe_token(token, "another-secret") is None
    assert verify_unsubscribe_token(token[:-3], SECRET) is None
    for garbage in ("", "!!!", "a", "A" * 5000):
        assert verify_unsubscribe_token(garbage, SECRET) is None


def test_transactional_mail_has_no_unsubscribe_headers(server: Server) -> None:
    channel = SmtpChannel(name="email", options=options(server.port, unsubscribe_url=None, unsubscribe_mailto=None,
                                                       unsubscribe_secret_env=None))
    result = channel.send(outbound(purpose="transactional", parts={"subject": "Receipt", "txt": "Thanks\n"}))
    channel.close()

    assert result.outcome is Outcome.OK
    mail = server.handler.messages[0].parsed()
    assert "List-Unsubscribe" not in mail and "List-Unsubscribe-Post" not in mail
    assert mail.get_content_type() == "text/plain"  # no html part: a single text part


def test_marketing_without_unsubscribe_url_halts_and_sends_nothing(server: Server) -> None:
    channel = SmtpChannel(name="email", options=options(server.port, unsubscribe_url=None, unsubscribe_mailto=None,
                                                       unsubscribe_secret_env=None))
    result = channel.send(outbound())
    assert result.outcome is Outcome.HALT and "unsubscribe_url" in (result.error or "")
    assert server.handler.messages == []


def test_unset_unsubscribe_secret_halts(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV)
    channel = SmtpChannel(name="email", options=options(server.port))
    result = channel.send(outbound())
    assert result.outcome is Outcome.HALT and SECRET_ENV in (result.error or "")


# -- connections ---------------------------------------------------------------------------


def test_one_connection_per_thread_reused_across_messages(server: Server) -> None:
    channel = SmtpChannel(name="email", options=options(server.port))
    per_thread, threads = 15, 3
    results: dict[int, list[Outcome]] = {}

    def work(index: int) -> None:
        results[index] = [
            channel.send(outbound(f"user{index}-{i}@example.org", n=index * 100 + i)).outcome
            for i in range(per_thread)
        ]

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    channel.close()

    assert all(outcome is Outcome.OK for outcomes in results.values() for outcome in outcomes)
    assert len(server.handler.messages) == per_thread * threads
    assert len(server.handler.connections()) == threads
    for index in range(threads):  # each thread's messages all came on one connection
        peers = {m.peer for m in server.handler.messages if m.rcpt_tos[0].startswith(f"user{index}-")}
        assert len(peers) == 1


def test_reconnects_after_the_server_drops_an_idle_connection(server: Server) -> None:
    channel = SmtpChannel(name="email", options=options(server.port))
    assert channel.send(outbound(n=1)).outcome is Outcome.OK

    server.drop_connections()
    second = channel.send(outbound(n=2))
    third = channel.send(outbound(n=3))
    channel.close()

    assert second.outcome is Outcome.OK and third.outcome is Outcome.OK
    peers = [m.peer for m in server.handler.messages]
    assert len(peers) == 3 and peers[0] != peers[1] == peers[2]


def test_reconnects_when_a_reused_connection_answers_421(server: Server) -> None:
    channel = SmtpChannel(name="email", options=options(server.port))
    assert channel.send(outbound(n=1)).outcome is Outcome.OK
    server.handler.mail_replies.append("421 4.4.2 idle too long, closing")

    result = channel.send(outbound(n=2))
    channel.close()

    assert result.outcome is Outcome.OK
    assert len(server.handler.messages) == 2


def test_disconnect_after_data_is_retried_not_resent(server: Server) -> None:
    server.handler.drop_on_data.add("alice@example.org")
    channel = SmtpChannel(name="email", options=options(server.port))
    result = channel.send(outbound())
    assert result.outcome is Outcome.RETRY and result.code == "disconnected"
    assert len(server.handler.servers) == 1  # not silently sent a second time
    # the next message gets a fresh connection
    assert channel.send(outbound("bob@example.org", n=2)).outcome is Outcome.OK
    channel.close()


def test_connection_refused_is_retried() -> None:
    channel = SmtpChannel(name="email", options=options(free_port()))
    result = channel.send(outbound())
    assert result.outcome is Outcome.RETRY and result.code == "network"


def test_a_server_that_never_greets_times_out_and_is_retried() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        channel = SmtpChannel(name="email", options=options(port, timeout="1s"))
        result = channel.send(outbound())
    assert result.outcome is Outcome.RETRY and result.code == "timeout"


# -- reply codes (CHANNELS.md §6) ----------------------------------------------------------

REPLY_CASES = [
    # stage, reply, outcome, code
    ("RCPT", "450 4.2.1 mailbox busy, try later", Outcome.RETRY, "450 4.2.1"),
    ("RCPT", "451 4.7.1 greylisted", Outcome.RETRY, "451 4.7.1"),
    ("RCPT", "550 5.1.1 <alice@example.org>: no such user", Outcome.SUPPRESS, "550 5.1.1"),
    ("RCPT", "550 5.1.2 bad destination system", Outcome.SUPPRESS, "550 5.1.2"),
    ("RCPT", "550 5.2.1 mailbox disabled", Outcome.SUPPRESS, "550 5.2.1"),
    ("RCPT", "550 5.7.1 relaying denied", Outcome.HALT, "550 5.7.1"),
    ("RCPT", "550 mailbox unavailable", Outcome.PERMANENT, "550"),
    ("DATA", "421 4.3.2 system shutting down", Outcome.RETRY, "421 4.3.2"),
    ("DATA", "452 4.3.1 insufficient storage", Outcome.RETRY, "452 4.3.1"),
    ("DATA", "550 5.7.26 unauthenticated mail is prohibited (DMARC)", Outcome.HALT, "550 5.7.26"),
    ("DATA", "550 5.7.515 access denied, sending domain does not meet requirements", Outcome.HALT, "550 5.7.515"),
    ("DATA", "552 5.2.2 mailbox full", Outcome.PERMANENT, "552 5.2.2"),
    ("DATA", "554 5.6.0 message content rejected", Outcome.PERMANENT, "554 5.6.0"),
    ("DATA", "554 transaction failed", Outcome.PERMANENT, "554"),
    ("MAIL", "451 4.3.0 temporary failure", Outcome.RETRY, "451 4.3.0"),
    ("MAIL", "553 5.1.8 sender domain does not exist", Outcome.SUPPRESS, "553 5.1.8"),
    ("MAIL", "530 authentication required", Outcome.HALT, "530"),
]


@pytest.mark.parametrize(("stage", "reply", "outcome", "code"), REPLY_CASES)
def test_reply_classes(server: Server, stage: str, reply: str, outcome: Outcome, code: str) -> None:
    recipient = "alice@example.org"
    if stage == "RCPT":
        server.handler.rcpt_replies[recipient] = reply
    elif stage == "DATA":
        server.handler.data_replies[recipient] = reply
    else:
        server.handler.mail_replies.append(reply)
    channel = SmtpChannel(name="email", options=options(server.port))

    result = channel.send(outbound(recipient))

    assert (result.outcome, result.code) == (outcome, code)
    assert result.error and result.error.startswith(stage)
    assert "alice@example.org" not in result.error  # PII-free
    # the connection stays usable for the next message
    assert channel.send(outbound("bob@example.org", n=2)).outcome is Outcome.OK
    channel.close()


def test_recipients_refused_exception_is_mapped_by_the_recipients_code() -> None:
    import smtplib

    exc = smtplib.SMTPRecipientsRefused({"a@example.org": (550, b"5.1.1 unknown user")})
    assert classify_exception(exc).outcome is Outcome.SUPPRESS
    exc = smtplib.SMTPRecipientsRefused({"a@example.org": (450, b"4.2.0 later")})
    assert classify_exception(exc).outcome is Outcome.RETRY
    assert classify_reply(250, b"2.0.0 ok").outcome is Outcome.OK


def test_bad_recipient_address_is_permanent_without_contacting_the_server(server: Server) -> None:
    channel = SmtpChannel(name="email", options=options(server.port))
    assert channel.send(outbound("not-an-address")).outcome is Outcome.PERMANENT
    assert channel.send(outbound("a@example.org\r\nBcc: x@evil.example")).outcome is Outcome.PERMANENT
    assert server.handler.servers == []


# -- authentication ------------------------------------------------------------------------


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"news" and auth_data.password == b"right-password"
    # handled=False: aiosmtpd then answers the standard 535 5.7.8 itself
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def auth_server() -> Iterator[Server]:
    srv = start(Handler(), authenticator=_authenticator, auth_require_tls=False)
    yield srv
    srv.controller.stop()


def test_login_with_the_password_from_the_environment(auth_server: Server) -> None:
    channel = SmtpChannel(name="email", options=options(auth_server.port, username="news", password_env=PASSWORD_ENV))
    result = channel.send(outbound())
    channel.close()
    assert result.outcome is Outcome.OK


def test_wrong_password_halts(auth_server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    channel = SmtpChannel(name="email", options=options(auth_server.port, username="news", password_env=PASSWORD_ENV))
    result = channel.send(outbound())
    assert result.outcome is Outcome.HALT and result.code == "535 5.7.8"
    assert auth_server.handler.messages == []


def test_unset_password_variable_halts(auth_server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV)
    channel = SmtpChannel(name="email", options=options(auth_server.port, username="news", password_env=PASSWORD_ENV))
    result = channel.send(outbound())
    assert result.outcome is Outcome.HALT and PASSWORD_ENV in (result.error or "")


# -- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("TLS tests need the openssl command to make a self-signed certificate; it is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def test_starttls_then_auth(certificate: tuple[Path, Path]) -> None:
    srv = start(Handler(), tls_context=_server_context(certificate), require_starttls=True,
                authenticator=_authenticator)
    try:
        client_context = ssl.create_default_context(cafile=str(certificate[0]))
        channel = SmtpChannel(name="email", ssl_context=client_context,
                              options=options(srv.port, security="starttls", username="news", password_env=PASSWORD_ENV))
        results = [channel.send(outbound(n=i)) for i in range(3)]
        channel.close()
    finally:
        srv.controller.stop()
    assert [r.outcome for r in results] == [Outcome.OK] * 3
    assert all(m.tls for m in srv.handler.messages)
    assert len(srv.handler.connections()) == 1


def test_implicit_tls(certificate: tuple[Path, Path]) -> None:
    srv = start(Handler(), ssl_context=_server_context(certificate))
    try:
        client_context = ssl.create_default_context(cafile=str(certificate[0]))
        channel = SmtpChannel(name="email", ssl_context=client_context, options=options(srv.port, security="ssl"))
        result = channel.send(outbound())
        channel.close()
    finally:
        srv.controller.stop()
    assert result.outcome is Outcome.OK
    assert srv.handler.messages[0].tls


def test_untrusted_certificate_halts(certificate: tuple[Path, Path]) -> None:
    srv = start(Handler(), tls_context=_server_context(certificate), require_starttls=True)
    try:
        channel = SmtpChannel(name="email", options=options(srv.port, security="starttls"))
        result = channel.send(outbound())
    finally:
        srv.controller.stop()
    assert result.outcome is Outcome.HALT and result.code == "tls"


def test_server_without_starttls_halts(server: Server) -> None:
    channel = SmtpChannel(name="email", options=options(server.port, security="starttls"))
    result = channel.send(outbound())
    assert result.outcome is Outcome.HALT and result.code == "config"


# -- options -------------------------------------------------------------------------------


def test_options_defaults_and_validation() -> None:
    base = {"kind": "smtp", "host": "smtp.example.com", "from": "news@example.com"}
    cfg = SmtpChannelConfig.model_validate(base)
    assert (cfg.security, cfg.port, cfg.recipient, cfg.id_domain) == ("starttls", 587, "email", "example.com")
    assert SmtpChannelConfig.model_validate({**base, "security": "ssl"}).port == 465
    assert SmtpChannelConfig.model_validate({**base, "security": "none"}).port == 25
    assert SmtpChannelConfig.model_validate({**base, "security": "ssl", "port": 2465}).port == 2465
    bad = [
        {"unsubscribe_url": "http://u.example.com/u/{token}", "unsubscribe_secret_env": "S"},
        {"unsubscribe_url": "https://u.example.com/u/", "unsubscribe_secret_env": "S"},
        {"unsubscribe_url": "https://u.example.com/u/{token}"},  # no secret
        {"unsubscribe_mailto": "mailto:u@example.com", "unsubscribe_secret_env": "S"},
        {"password_env": "P"},  # no username
        {"security": "tls"},
        {"surprise": 1},
    ]
    for extra in bad:
        with pytest.raises(ValueError):
            SmtpChannelConfig.model_validate({**base, **extra})
    with pytest.raises(ValueError):
        SmtpChannelConfig.model_validate({**base, "from": "nobody"})


def test_non_ascii_sender_long_subject_and_dot_lines_survive(server: Server) -> None:
    channel = SmtpChannel(name="email", options=options(server.port, **{"from": "春季商店 <news@shop.example.com>"}))
    subject = "春季特卖 " * 30 + "end"
    text = "line one\n.starts with a dot\n..two dots\n"
    result = channel.send(outbound(purpose="transactional", parts={"subject": subject, "txt": text}))
    channel.close()

    assert result.outcome is Outcome.OK
    received = server.handler.messages[0]
    assert all(len(line) <= 78 for line in received.content.split(b"\r\n\r\n")[0].split(b"\r\n"))
    mail = received.parsed()
    assert mail["From"].addresses[0].display_name == "春季商店"
    assert mail["Subject"] == subject
    assert mail.get_content().replace("\r\n", "\n") == text
