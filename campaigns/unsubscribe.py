"""Signed one-click unsubscribe tokens (RFC 8058), pure functions with no I/O.

A token identifies one delivery by its send key and proves we issued it, so the
unsubscribe endpoint needs no cookie or login (RFC 8058 §3.1):

    mac   = HMAC-SHA256(key = secret (UTF-8), msg = b"nurture-unsubscribe-v1:" + send_key (UTF-8))
    token = base64url(send_key (UTF-8) + mac), without "=" padding

The MAC is the last 32 bytes of the decoded token, so the send key needs no separator.
The fixed prefix keeps a token from doubling as a MAC for anything else signed with the
same secret. The SMTP channel puts the token in ``List-Unsubscribe``; the receiver calls
:func:`verify_unsubscribe_token` to get the send key back (and from it the delivery,
customer and campaign).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import quote

#: Domain-separation prefix of the signed bytes.
TOKEN_CONTEXT = b"nurture-unsubscribe-v1:"
_MAC_BYTES = hashlib.sha256().digest_size


def _mac(context: bytes, send_key: bytes, secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), context + send_key, hashlib.sha256).digest()


def make_send_key_token(context: bytes, send_key: str, secret: str) -> str:
    """``base64url(send_key + HMAC-SHA256(secret, context + send_key))``: a token naming
    one message, signed under ``context`` so a token of one kind (unsubscribe, open pixel)
    never verifies as another under the same secret."""
    raw = send_key.encode("utf-8")
    return base64.urlsafe_b64encode(raw + _mac(context, raw, secret)).rstrip(b"=").decode("ascii")


def verify_send_key_token(context: bytes, token: str, secret: str, *, max_length: int = 4096) -> str | None:
    """The send key carried by ``token`` if ``secret`` signed it under ``context``, else
    None. Never raises for malformed input: any garbage simply fails verification."""
    if not secret or not token or len(token) > max_length:
        return None
    try:
        data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(data) <= _MAC_BYTES:
        return None
    raw, mac = data[:-_MAC_BYTES], data[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(context, raw, secret)):
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def make_unsubscribe_token(send_key: str, secret: str) -> str:
    """The URL-safe token for ``send_key`` signed with ``secret``."""
    if not secret:
        raise ValueError("an unsubscribe secret is required")
    return make_send_key_token(TOKEN_CONTEXT, send_key, secret)


def verify_unsubscribe_token(token: str, secret: str) -> str | None:
    """The send key carried by ``token`` if ``secret`` signed it, else None.

    Never raises for malformed input: any garbage simply fails verification.
    """
    return verify_send_key_token(TOKEN_CONTEXT, token, secret)


def unsubscribe_url(template: str, send_key: str, secret: str) -> str:
    """``template`` (e.g. ``https://u.example.com/u/{token}``) with the signed token filled in.

    Also suitable for the visible unsubscribe link in a message body.
    """
    return template.replace("{token}", make_unsubscribe_token(send_key, secret))


def unsubscribe_mailto(address: str, send_key: str, secret: str) -> str:
    """A ``mailto:`` URI for ``address`` carrying the token in the subject.

    The token rides in the subject rather than the local part because it is longer
    than the 64 octets RFC 5321 allows a local part.
    """
    token = make_unsubscribe_token(send_key, secret)
    return f"mailto:{address}?subject={quote('unsubscribe ' + token)}"
