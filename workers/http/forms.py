"""HTML form bodies (url-encoded or multipart/form-data) read without python-multipart."""

from __future__ import annotations

import email
import email.policy
from urllib.parse import parse_qsl


def parse_form(content_type: str | None, body: bytes) -> dict[str, list[str]] | None:
    """Fields of an url-encoded or multipart/form-data body, or None when unreadable.

    Parsed here rather than by ``request.form()``, which needs the python-multipart
    package; the forms are tiny and RFC 8058 allows both encodings.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    fields: dict[str, list[str]] = {}
    if media in ("", "application/x-www-form-urlencoded"):
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            return None
        for name, value in pairs:
            fields.setdefault(name, []).append(value)
        return fields
    if media == "multipart/form-data":
        head = b"Content-Type: " + (content_type or "").encode("latin-1", "replace") + b"\r\n\r\n"
        message = email.message_from_bytes(head + body, policy=email.policy.compat32)
        if not message.is_multipart():
            return None
        for part in message.get_payload():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            data = part.get_payload(decode=True) or b""
            fields.setdefault(name, []).append(data.decode("utf-8", "replace").strip())
        return fields
    return None
