"""Signed click tokens: which message a click came from, and where it goes; pure functions.

A tracked link carries one token naming the delivery (its send key) and the target URL,
signed so that nobody can forge a click for another delivery or turn the redirect
endpoint into an open redirect to a URL we never sent::

    payload = len(send_key) (2 bytes, big-endian) + send_key (UTF-8) + url (UTF-8)
    mac     = HMAC-SHA256(key = secret (UTF-8), msg = b"nurture-click-v1:" + payload)
    token   = base64url(payload + mac), without "=" padding

The prefix differs from the unsubscribe tokens' (``b"nurture-unsubscribe-v1:"``, see
:mod:`campaigns.unsubscribe`), so a token of one kind never verifies as the other even
when both are signed with the same secret: a recipient cannot turn the unsubscribe link
into a click, or a click link into an unsubscribe. MACs are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import urlsplit

from campaigns.unsubscribe import make_send_key_token, verify_send_key_token

#: Domain-separation prefix of the signed bytes.
CLICK_CONTEXT = b"nurture-click-v1:"
#: Longest target URL a token carries (browsers and mail clients balk beyond ~2,000).
MAX_URL_LENGTH = 2048
#: Longest send key, in bytes (the ledger's column holds 255 characters).
MAX_SEND_KEY_BYTES = 255
_MAC_BYTES = hashlib.sha256().digest_size
_LENGTH_BYTES = 2
#: Longest token :func:`verify_click_token` decodes, in characters (base64 of the largest
#: payload: a URL of non-ASCII characters takes up to 4 bytes each).
MAX_TOKEN_LENGTH = -(-(_LENGTH_BYTES + MAX_SEND_KEY_BYTES + 4 * MAX_URL_LENGTH + _MAC_BYTES) // 3) * 4


def _mac(payload: bytes, secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), CLICK_CONTEXT + payload, hashlib.sha256).digest()


def _web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def make_click_token(send_key: str, url: str, secret: str) -> str:
    """The URL-safe token for a click on ``url`` in the message ``send_key``.

    Raises:
        ValueError: no secret, an empty send key, or ``url`` is not an absolute http(s)
            URL of at most :data:`MAX_URL_LENGTH` characters (a ``javascript:`` link is
            never worth tracking).
    """
    if not secret:
        raise ValueError("a click-token secret is required")
    key = send_key.encode("utf-8")
    if not key or len(key) > MAX_SEND_KEY_BYTES:
        raise ValueError(f"the send key must be 1 to {MAX_SEND_KEY_BYTES} bytes")
    if len(url) > MAX_URL_LENGTH or not _web_url(url):
        raise ValueError(f"not an absolute http(s) URL of at most {MAX_URL_LENGTH} characters: {url[:80]!r}")
    payload = len(key).to_bytes(_LENGTH_BYTES, "big") + key + url.encode("utf-8")
    return base64.urlsafe_b64encode(payload + _mac(payload, secret)).rstrip(b"=").decode("ascii")


def verify_click_token(token: str, secret: str) -> tuple[str, str] | None:
    """``(send_key, url)`` carried by ``token`` if ``secret`` signed it as a click token,
    else None.

    Never raises for malformed input: garbage, a tampered token, a token signed with
    another secret or an unsubscribe token all simply fail verification.
    """
    if not secret or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(data) <= _LENGTH_BYTES + _MAC_BYTES:
        return None
    payload, mac = data[:-_MAC_BYTES], data[-_MAC_BYTES:]
    # Verify before parsing: nothing of an unsigned payload is looked at.
    if not hmac.compare_digest(mac, _mac(payload, secret)):
        return None
    size = int.from_bytes(payload[:_LENGTH_BYTES], "big")
    key, url = payload[_LENGTH_BYTES : _LENGTH_BYTES + size], payload[_LENGTH_BYTES + size :]
    if len(key) != size or not key:
        return None
    try:
        return key.decode("utf-8"), url.decode("utf-8")
    except UnicodeDecodeError:
        return None


# Open tokens: the pixel's URL names only the message. Their prefix differs from click
# and unsubscribe tokens', so no token of one kind verifies as another.
OPEN_CONTEXT = b"nurture-open-v1:"
_MAX_OPEN_TOKEN = 512


def make_open_token(send_key: str, secret: str) -> str:
    """The URL-safe token of the open pixel of message ``send_key``:
    ``base64url(send_key + HMAC-SHA256(secret, b"nurture-open-v1:" + send_key))``.

    Put it in a message as ``<img src="https://t.example.com/o/{token}.gif" ...>``.
    """
    if not secret:
        raise ValueError("an open-token secret is required")
    if not send_key:
        raise ValueError("the send key must not be empty")
    return make_send_key_token(OPEN_CONTEXT, send_key, secret)


def verify_open_token(token: str, secret: str) -> str | None:
    """The send key carried by an open token signed with ``secret``, else None; never
    raises for malformed input."""
    return verify_send_key_token(OPEN_CONTEXT, token, secret, max_length=_MAX_OPEN_TOKEN)
