"""The ``outbox`` channel: each rendered message becomes a file, like Django's file backend.

Emails (recipient ``email``) are written as ``.eml`` files any mail client opens; other
recipients get a ``.txt`` file. Each file carries its send key (the ``X-Nurture-Send-Key``
header, or a ``Send-Key:`` line), and its name is made from the send key with the
customer's *external* id in place of the internal row id, so a marketer looking for
customer C199's message finds ``win_back_0_C199_once.eml`` (see :func:`message_stem`).
The name depends on the send key alone, so a message written twice overwrites itself
rather than appearing twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import formatdate, make_msgid
from pathlib import Path

from campaigns.config.channels import OutboxChannelConfig
from campaigns.sending.messages import OutboundMessage, Outcome, SendResult

#: The suffixes the channel writes.
SUFFIXES = (".eml", ".txt")
#: A name part kept as it is: letters (any script) and digits, with inner hyphens. No
#: underscore (it separates the parts), no dot, slash or colon.
_PLAIN = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
#: What becomes ``_`` in a part that is not plain.
_UNSAFE = re.compile(r"[^\w-]+")
#: File systems allow 255 bytes a name; room is left for the suffix and the temp prefix.
_MAX_STEM_BYTES = 180


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def message_stem(send_key: str, *, campaign: str, step: int, external_id: str) -> str:
    """The file name (without suffix) of the message with ``send_key``.

    A planned send key is ``campaign:step:<customer row id>:occurrence``; its name is
    ``campaign_step_<external id>_occurrence`` (``win_back:0:197:once`` for customer C199
    is ``win_back_0_C199_once``). Distinct send keys get distinct names: when the external
    id or the occurrence is not plain (an underscore, a dot, a slash, a space ...), or the
    send key has another shape (a test send), unsafe characters become ``_`` and a digest
    of the whole send key is appended, and an overlong name is cut and given the digest.
    """
    prefix = f"{campaign}:{step}:"
    row_id, colon, occurrence = send_key.removeprefix(prefix).partition(":")
    if send_key.startswith(prefix) and colon and row_id.isdigit():
        parts = [campaign, str(step), external_id, occurrence]
        exact = all(_PLAIN.fullmatch(part) for part in (external_id, occurrence))
    else:
        parts, exact = [send_key, external_id], False
    stem = "_".join(_UNSAFE.sub("_", part) for part in parts).lstrip("-_") or "message"
    if exact and len(stem.encode("utf-8")) <= _MAX_STEM_BYTES:
        return stem
    while len(stem.encode("utf-8")) > _MAX_STEM_BYTES - 13:
        stem = stem[:-1]
    return f"{stem}-{_digest(send_key)}"


def _send_key_of(path: Path) -> str | None:
    """The send key a file written by this channel carries, or None (not ours, unreadable)."""
    try:
        with path.open("rb") as handle:
            if path.suffix == ".eml":
                # The default policy unfolds a long key and decodes it (bytes() of the
                # message encodes a header over 78 characters into encoded words).
                key = BytesHeaderParser(policy=policy.default).parse(handle).get("X-Nurture-Send-Key")
                return str(key) if key else None
            for line in handle.read(4096).decode("utf-8", "replace").splitlines()[:2]:
                if line.startswith("Send-Key: "):
                    return line.removeprefix("Send-Key: ").strip()
    except OSError:
        return None
    return None


def remove_messages(directory: Path, messages: Iterable[tuple[str, str]]) -> int:
    """Delete the files written for ``(campaign, send_key)`` pairs under ``directory``
    (``nurture forget``: they hold the address and the text); returns how many went.

    Files are recognised by the send key they carry, not by their name: a name holds the
    customer's external id, which ``nurture forget`` has already replaced. Files without
    one of the send keys (someone else's) stay."""
    wanted: dict[str, set[str]] = {}
    for campaign, send_key in messages:
        wanted.setdefault(campaign, set()).add(send_key)
    removed = 0
    for campaign, keys in wanted.items():
        folder = Path(directory) / campaign
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix in SUFFIXES and path.is_file() and _send_key_of(path) in keys:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
    return removed


class OutboxChannel:
    """Writes messages to ``<dir>/<campaign>/<name>.eml|.txt`` (:func:`message_stem`)."""

    def __init__(self, *, name: str, options: OutboxChannelConfig, sender: str = "nurture@localhost") -> None:
        self.name = name
        self.directory = Path(options.dir)
        self.recipient_field = options.recipient
        self.sender = sender

    def send(self, message: OutboundMessage) -> SendResult:
        """Write the message atomically (temp file + rename)."""
        folder = self.directory / message.campaign
        stem = message_stem(message.send_key, campaign=message.campaign, step=message.step,
                            external_id=message.customer_external_id)
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
