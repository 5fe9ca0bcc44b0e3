"""The ``smtp`` channel: multipart email through an SMTP relay (``smtplib``).

Each message is ``multipart/alternative``
with the plain text first and the HTML last (RFC 2046: plainest first), a ``Message-ID``
on the configured domain (stored as the provider message id) and, on marketing mail,
RFC 8058 one-click unsubscribe headers carrying a signed per-recipient token
(:mod:`campaigns.sending.tokens`)::

    List-Unsubscribe: <https://u.example.com/u/TOKEN>, <mailto:unsubscribe@example.com?subject=unsubscribe%20TOKEN>
    List-Unsubscribe-Post: List-Unsubscribe=One-Click

Each worker thread keeps one SMTP connection (STARTTLS, implicit TLS or plain; AUTH when
a username is set) and reuses it for every message. A connection the server has dropped
while idle is detected on the next ``MAIL FROM`` (disconnect or ``421``) and replaced once,
transparently, since nothing of the message was sent yet.

Replies are classified per CHANNELS.md §6 (:mod:`.smtp_replies`): 4xx retry; 5.1.x and 5.2.1 suppress (hard
bounce); 5.7.x halt (policy/authentication: fix SPF/DKIM/DMARC, do not blame the
recipient); other 5xx permanent; connection errors and timeouts retry. A disconnect after
the message data was sent is ambiguous and retried, accepting a possible duplicate (the
Message-ID is derived from the send key, so a retry carries the same one and receivers
that deduplicate on it drop the copy).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import smtplib
import ssl
import threading
from dataclasses import dataclass
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import formatdate

from campaigns.config.keys import message_tag
from campaigns.config.options.smtp import SmtpChannelConfig
from campaigns.config.secretvalues import read_secret
from campaigns.sending.messages import OutboundMessage, Outcome, SendResult
from campaigns.sending.tokens import unsubscribe_mailto, unsubscribe_url
from workers.channels.smtp_replies import classify_exception, classify_reply, reply_text

# Bodies are encoded to 7-bit (quoted-printable/base64) so any relay accepts them without
# 8BITMIME; CRLF line ends as SMTP wants.
_POLICY = email_policy.SMTP.clone(cte_type="7bit")
_QUEUED_AS = re.compile(r"queued as\s+([A-Za-z0-9._-]+)", re.IGNORECASE)


def _encode_header(value: str) -> str:
    """``value`` as ASCII: unchanged, or RFC 2047 base64 encoded words of <= 75 chars."""
    if value.isascii():
        return value
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in value:
        width = len(char.encode("utf-8"))
        if size + width > 39:  # 39 bytes -> 52 base64 chars -> 64-char word, fits "Subject: "
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += width
    words.append("".join(chunk))
    return "\r\n ".join(
        "=?utf-8?b?" + base64.b64encode(word.encode("utf-8")).decode("ascii") + "?=" for word in words
    )


def _text_part(content: str, subtype: str) -> str:
    """A text/* MIME part: 7bit when it is short-lined ASCII, else base64 of the UTF-8."""
    lines = content.splitlines()
    if content.isascii() and all(len(line) <= 900 for line in lines):
        # Lines starting with "." are dot-stuffed by smtplib.data(); nothing to do here.
        return (
            f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
            + "\r\n".join(lines) + "\r\n"
        )
    canonical = ("\r\n".join(lines) + "\r\n").encode("utf-8")  # RFC 2046 canonical CRLF form
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + base64.encodebytes(canonical).decode("ascii").replace("\n", "\r\n")
    )


def message_hash(send_key: str, secret: str | None = None) -> str:
    """32 hex chars identifying ``send_key``: the Message-ID's local part and VERP tag.

    Keyed with the installation secret (:func:`campaigns.config.keys.message_tag`) when there is
    one: only then can ``POST /bounces`` tell our messages from forged ones (send keys are
    guessable). Without it, the unkeyed SHA-256 of the key, which no bounce is accepted
    for; it still keeps a retried message's Message-ID the same.
    """
    if secret:
        return message_tag(secret, send_key)
    return hashlib.sha256(send_key.encode("utf-8")).hexdigest()[:32]


class _Stale(Exception):
    """The reused connection was dead before any of the message was sent."""


@dataclass
class _Connection:
    smtp: smtplib.SMTP
    used: bool = False


class SmtpChannel:
    """Sends each message as one SMTP transaction on the calling thread's connection."""

    def __init__(
        self,
        *,
        name: str,
        options: SmtpChannelConfig,
        ssl_context: ssl.SSLContext | None = None,
        secret: str | None = None,
    ) -> None:
        self.name = name
        self.options = options
        #: The installation secret (``[security] secret_env``) keying Message-ID and VERP tag.
        self._secret = secret
        self._password = read_secret(options.password_env)
        self._unsubscribe_secret = read_secret(options.unsubscribe_secret_env)
        if ssl_context is None:
            ssl_context = ssl.create_default_context()
            if not options.verify_tls:
                ssl_context.check_hostname = False
                ssl_context.verify_mode = ssl.CERT_NONE
        self._ssl_context = ssl_context
        # The one header the email package still writes: a display name may need RFC 2047.
        from_header = EmailMessage(policy=_POLICY)
        from_header["From"] = options.sender
        self._from_header = bytes(from_header).decode("ascii").rstrip("\r\n")
        self._local = threading.local()
        self._connections: list[_Connection] = []
        self._lock = threading.Lock()

    # -- message ---------------------------------------------------------------------------

    def render(self, message: OutboundMessage) -> bytes:
        """The message as it goes on the wire (headers + MIME body, CRLF line ends).

        Written directly rather than through :class:`email.message.EmailMessage`: the
        email package builds ~600 messages/s on one core, slower than SMTP itself on a
        local relay (P4 in docs/benchmarks.md). The constant From header is still folded
        and encoded by the email package, once. Tests parse the output with the email
        package to check the structure.

        Raises:
            ValueError: the message has neither a ``txt`` nor an ``html`` part.
            LookupError: marketing mail but the unsubscribe headers cannot be made.
        """
        parts = message.parts
        text, html = parts.get("txt"), parts.get("html")
        if text is None and html is None:
            raise ValueError("message has neither a txt nor an html part")
        subject = " ".join((parts.get("subject") or message.campaign).split())
        head = [
            self._from_header,
            f"To: {message.recipient}",
            f"Subject: {_encode_header(subject)}",
            f"Date: {formatdate(usegmt=True)}",
            f"Message-ID: <{message_hash(message.send_key, self._secret)}@{self.options.id_domain}>",
            "MIME-Version: 1.0",
        ]
        if message.metadata.get("purpose", "marketing") == "marketing":
            head.append(self._unsubscribe_headers(message.send_key))
        if text is not None and html is not None:
            boundary = "=_nurture_" + secrets.token_hex(16)
            body = (
                f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
                f"--{boundary}\r\n{_text_part(text, 'plain')}\r\n"
                f"--{boundary}\r\n{_text_part(html, 'html')}\r\n"
                f"--{boundary}--\r\n"
            )
        elif text is not None:
            body = _text_part(text, "plain")
        else:
            body = _text_part(html or "", "html")
        return ("\r\n".join(head) + "\r\n" + body).encode("ascii")

    def _unsubscribe_headers(self, send_key: str) -> str:
        opts = self.options
        if not opts.unsubscribe_url:
            raise LookupError("marketing email needs unsubscribe_url (RFC 8058 one-click unsubscribe)")
        secret = self._unsubscribe_secret
        if not secret:
            raise LookupError(f"unsubscribe secret variable {opts.unsubscribe_secret_env} is not set")
        uris = [f"<{unsubscribe_url(opts.unsubscribe_url, send_key, secret)}>"]
        if opts.unsubscribe_mailto:
            uris.append(f"<{unsubscribe_mailto(opts.unsubscribe_mailto, send_key, secret)}>")
        # Folded between the URIs; each URI itself cannot be folded.
        value = ",\r\n ".join(uris)
        return f"List-Unsubscribe: {value}\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click"

    def envelope_sender(self, message: OutboundMessage) -> str:
        """MAIL FROM for ``message`` (VERP when ``envelope_from`` has ``{send_key_hash}``
        and the installation secret is set: an unkeyed tag would let anyone forge bounces,
        so without the secret bounces go to the plain From address)."""
        template = self.options.envelope_from
        if not template or ("{send_key_hash}" in template and not self._secret):
            return self.options.from_address
        return template.replace("{send_key_hash}", message_hash(message.send_key, self._secret))

    # -- connections -----------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        opts = self.options
        timeout = opts.timeout.total_seconds()
        smtp: smtplib.SMTP
        if opts.security == "ssl":
            smtp = smtplib.SMTP_SSL(opts.host, opts.port, timeout=timeout, context=self._ssl_context)
        else:
            smtp = smtplib.SMTP(opts.host, opts.port, timeout=timeout)
        try:
            smtp.ehlo()
            if opts.security == "starttls":
                smtp.starttls(context=self._ssl_context)
                smtp.ehlo()
            if opts.username:
                smtp.login(opts.username, self._password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _connection(self) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _Connection(self._connect())
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop(self) -> None:
        conn: _Connection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is None:
            return
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        try:
            conn.smtp.close()
        except OSError:
            pass

    # -- sending ---------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        """Send one message; classify the server's answer. Never raises for SMTP errors."""
        recipient = message.recipient.strip()
        if "@" not in recipient or any(c in recipient for c in "\r\n<>,"):
            return SendResult(Outcome.PERMANENT, error="not an email address", code="address")
        if not recipient.isascii():
            return SendResult(Outcome.PERMANENT, error="non-ASCII address needs SMTPUTF8 (unsupported)",
                              code="address")
        if self.options.username and not self._password:
            return SendResult(Outcome.HALT, error=f"SMTP password variable {self.options.password_env} is not set",
                              code="config")
        try:
            data = self.render(message)
        except LookupError as exc:
            return SendResult(Outcome.HALT, error=str(exc), code="config")
        except ValueError as exc:
            return SendResult(Outcome.PERMANENT, error=f"cannot build message: {exc}", code="message")
        sender = self.envelope_sender(message)
        message_id = f"<{message_hash(message.send_key, self._secret)}@{self.options.id_domain}>"
        for _ in range(2):
            try:
                conn = self._connection()
            except (OSError, smtplib.SMTPException) as exc:
                return self._connect_failure(exc)
            try:
                result = self._transaction(conn, sender, recipient, data)
            except _Stale:
                self._drop()
                if conn.used:
                    continue  # idle connection dropped by the server: one fresh attempt
                return SendResult(Outcome.RETRY, error="server disconnected", code="disconnected")
            conn.used = True
            if result.outcome is Outcome.OK:
                return SendResult.ok(message_id, code=result.code)
            return result
        return SendResult(Outcome.RETRY, error="server disconnected twice", code="disconnected")

    def _connect_failure(self, exc: BaseException) -> SendResult:
        if isinstance(exc, smtplib.SMTPResponseException) and not isinstance(
            exc, smtplib.SMTPRecipientsRefused
        ):
            result = classify_reply(exc.smtp_code, exc.smtp_error, stage="connect")
            if result.outcome is Outcome.PERMANENT:
                # A 5xx greeting or login refusal fails every message, not just this one.
                return SendResult(Outcome.HALT, error=result.error, code=result.code)
            return result
        return classify_exception(exc, stage="connect")

    def _transaction(self, conn: _Connection, sender: str, recipient: str, data: bytes) -> SendResult:
        smtp = conn.smtp
        try:
            code, reply = smtp.mail(sender)
        except smtplib.SMTPServerDisconnected:
            raise _Stale from None
        except OSError as exc:
            self._drop()
            return classify_exception(exc, stage="MAIL")
        if code == 421:
            raise _Stale  # the server is closing this connection (e.g. idle timeout)
        if code != 250:
            self._reset()
            return classify_reply(code, reply, stage="MAIL")
        try:
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                self._reset()
                if code == 421:
                    self._drop()
                return classify_reply(code, reply, stage="RCPT")
            code, reply = smtp.data(data)
        except smtplib.SMTPServerDisconnected:
            self._drop()
            # After DATA the server may have queued the message: retrying risks a duplicate.
            return SendResult(Outcome.RETRY, error="server disconnected during the transaction",
                              code="disconnected")
        except smtplib.SMTPResponseException as exc:  # DATA refused before the content
            self._reset()
            return classify_reply(exc.smtp_code, exc.smtp_error, stage="DATA")
        except OSError as exc:
            self._drop()
            return classify_exception(exc, stage="DATA")
        if code == 421:
            self._drop()
        if code != 250:
            return classify_reply(code, reply, stage="DATA")
        queued = _QUEUED_AS.search(reply_text(reply))
        return SendResult.ok(code=f"250 {queued.group(1)}"[:64] if queued else "250")

    def _reset(self) -> None:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            return
        try:
            code, _ = conn.smtp.rset()
        except (OSError, smtplib.SMTPException):
            code = 0
        if code != 250:
            self._drop()

    def close(self) -> None:
        """QUIT and close every thread's connection."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
            finally:
                try:
                    conn.smtp.close()
                except OSError:
                    pass
