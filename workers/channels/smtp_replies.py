"""What an SMTP server's answers mean (CHANNELS.md §6): replies and ``smtplib``'s
exceptions classified into outcomes, for :mod:`workers.channels.smtp`.

4xx retry; 5.1.x and 5.2.1 suppress (hard bounce); 5.7.x halt (policy/authentication: fix
SPF/DKIM/DMARC, do not blame the recipient); other 5xx permanent; connection errors and
timeouts retry. Error texts never carry an address.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl

from campaigns.sending.messages import Outcome, SendResult

_ENHANCED = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_ADDRESS = re.compile(r"[^\s<>@;:,\"']+@[^\s<>@;:,\"']+")
#: Basic codes without an enhanced status that mean "our login is wrong".
_AUTH_CODES = frozenset({530, 534, 535, 538})


def reply_text(reply: bytes | str) -> str:
    """An SMTP reply's text, whatever smtplib handed over (bytes are read as UTF-8)."""
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _redact(text: str) -> str:
    # Servers echo addresses back ("<bob@x>: Recipient address rejected"): keep errors PII-free.
    return _ADDRESS.sub("<address>", " ".join(text.split()))[:160]


def classify_reply(code: int, reply: bytes | str, *, stage: str = "") -> SendResult:
    """Map an SMTP reply (basic code + text with an optional RFC 3463 enhanced status).

    >>> classify_reply(550, b"5.1.1 no such user").outcome
    <Outcome.SUPPRESS: 'suppress'>
    """
    text = reply_text(reply)
    enhanced = _ENHANCED.match(text)
    status = ".".join(enhanced.groups()) if enhanced else None
    label = f"{code} {status}" if status else str(code)
    error = f"{stage + ' ' if stage else ''}{label}: {_redact(text)}"[:300]
    if 200 <= code < 300:
        return SendResult.ok(code=label)
    if 400 <= code < 500 or code < 200 or code >= 600:
        # 4xx is transient by definition; anything outside the grammar is treated alike.
        return SendResult(Outcome.RETRY, error=error, code=label)
    if status and status.startswith("5."):
        subject, detail = enhanced.group(2), enhanced.group(3)  # type: ignore[union-attr]
        if subject == "1" or (subject == "2" and detail == "1"):
            return SendResult(Outcome.SUPPRESS, error=error, code=label)
        if subject == "7":
            return SendResult(Outcome.HALT, error=error, code=label)
        return SendResult(Outcome.PERMANENT, error=error, code=label)
    if code in _AUTH_CODES:
        return SendResult(Outcome.HALT, error=error, code=label)
    return SendResult(Outcome.PERMANENT, error=error, code=label)


def classify_exception(exc: BaseException, *, stage: str = "") -> SendResult:
    """Map an exception raised by ``smtplib`` or the socket layer to an outcome."""
    prefix = f"{stage} " if stage else ""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        # One recipient per message, so the (only) refusal decides.
        for code, reply in exc.recipients.values():
            return classify_reply(code, reply, stage=stage or "RCPT")
        return SendResult(Outcome.PERMANENT, error=f"{prefix}recipient refused", code="rcpt")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return SendResult(Outcome.HALT, error=f"{prefix}server lacks a required extension: {exc}", code="config")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib turns a read timeout into "Connection unexpectedly closed: timed out".
        if isinstance(exc.__context__, TimeoutError):
            return SendResult(Outcome.RETRY, error=f"{prefix}timeout", code="timeout")
        return SendResult(Outcome.RETRY, error=f"{prefix}server disconnected", code="disconnected")
    if isinstance(exc, smtplib.SMTPResponseException):
        return classify_reply(exc.smtp_code, exc.smtp_error, stage=stage)
    if isinstance(exc, (ssl.SSLCertVerificationError, ssl.CertificateError)):
        return SendResult(Outcome.HALT, error=f"{prefix}TLS certificate rejected: {type(exc).__name__}", code="tls")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return SendResult(Outcome.RETRY, error=f"{prefix}timeout", code="timeout")
    if isinstance(exc, (OSError, smtplib.SMTPException)):
        return SendResult(Outcome.RETRY, error=f"{prefix}network error: {type(exc).__name__}", code="network")
    raise exc
