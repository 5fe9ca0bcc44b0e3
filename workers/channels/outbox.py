"""The ``outbox`` channel: each rendered message becomes a file, like Django's file backend.

Emails (recipient ``email``) are written as ``.eml`` files any mail client opens; other
recipients get a ``.txt`` file. File names are the send key, so a message written twice
would overwrite itself rather than appear twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from campaigns.config.channels import OutboxChannelConfig
from campaigns.sending.messages import OutboundMessage, Outcome, SendResult


def _stem(send_key: str) -> str:
    return send_key.replace(":", "_").replace("/", "_")


def remove_messages(directory: Path, messages: Iterable[tuple[str, str]]) -> int:
    """Delete the files written for ``(campaign, send_key)`` pairs under ``directory``
    (``nurture forget``: they hold the address and the text); returns how many went."""
    removed = 0
    for campaign, send_key in messages:
        for suffix in (".eml", ".txt"):
            path = Path(directory) / campaign / f"{_stem(send_key)}{suffix}"
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


class OutboxChannel:
    """Writes messages to ``<dir>/<campaign>/<send key>.eml|.txt``."""

    def __init__(self, *, name: str, options: OutboxChannelConfig, sender: str = "nurture@localhost") -> None:
        self.name = name
        self.directory = Path(options.dir)
        self.recipient_field = options.recipient
        self.sender = sender

    def send(self, message: OutboundMessage) -> SendResult:
        """Write the message atomically (temp file + rename)."""
        folder = self.directory / message.campaign
        stem = _stem(message.send_key)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if self.recipient_field == "email":
                path, data = folder / f"{stem}.eml", self._email_bytes(message)
            else:
                path, data = folder / f"{stem}.txt", self._text_bytes(message)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            return SendResult(Outcome.RETRY, error=f"outbox write failed: {exc.strerror or exc}")
        return SendResult.ok(provider_message_id=hashlib.sha256(data).hexdigest()[:32], code="written")

    def _email_bytes(self, message: OutboundMessage) -> bytes:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.recipient
        email["Subject"] = message.parts.get("subject", message.campaign)
        email["Date"] = formatdate(localtime=False)
        email["Message-ID"] = make_msgid(idstring=message.send_key.replace(":", "."), domain="nurture.local")
        email["X-Nurture-Send-Key"] = message.send_key
        text = message.parts.get("txt") or message.parts.get("sms") or ""
        email.set_content(text)
        if "html" in message.parts:
            email.add_alternative(message.parts["html"], subtype="html")
        return bytes(email)

    def _text_bytes(self, message: OutboundMessage) -> bytes:
        body = message.parts.get("sms") or message.parts.get("txt") or message.parts.get("json") or ""
        header = f"To: {message.recipient}\nSend-Key: {message.send_key}\n\n"
        return (header + body).encode("utf-8")

    def close(self) -> None:
        """Nothing to release."""
