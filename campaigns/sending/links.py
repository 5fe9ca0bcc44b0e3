"""Click and open tokens: which message a click came from and where it goes, sealed so
that the URL in a message (and in every access log it passes) reveals nothing; pure
functions.

A tracked link carries one token naming the delivery (its send key) and the target URL.
Both are secret (a send key names a customer; a URL may carry an email or a phone
number in its query), and the token must be unforgeable, so nobody can record a click
for another delivery or turn the redirect into an open redirect. Since format 2 the
token is authenticated encryption of both (:mod:`campaigns.sending.sealing`)::

    key       = HKDF-SHA256(link secret, info = b"nurture/click-token-v2"), 64 bytes
    plaintext = len(send_key) (2 bytes) + send_key + len(url) (2 bytes) + url,
                zero-padded to a multiple of 32 bytes (the length says little)
    token     = base64url(0x02 + AES-SIV(key).encrypt(plaintext, [b"nurture-click-v2"]))

AES-SIV (RFC 5297) is deterministic: the same link in a retried send gets the same token,
and the only thing two tokens reveal is whether they are equal. Open tokens are the same
with the send key alone, under their own key (``open-token-v2``), so no token of one kind
opens as another; tampering with any byte fails authentication.

Format 1 (``base64url(len + send_key + url + HMAC)``, send key and URL in clear) is no
longer issued. Tokens of that format are still accepted, and verified with their HMAC as
before, because they are in mail already delivered: refusing them would break every link
in every message sent before the upgrade, while accepting them discloses nothing the
token does not already show to whoever holds it. They age out with the mail; remove
:func:`_verify_legacy_click` and the open fallback once old campaigns no longer matter.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from campaigns.sending import sealing
from campaigns.sending.unsubscribe import verify_sealed_send_key

#: Purpose labels of the keys (campaigns.config.keys.derive_key) and associated data of format 2.
CLICK_PURPOSE, OPEN_PURPOSE = "click-token-v2", "open-token-v2"
CLICK_AD, OPEN_AD = b"nurture-click-v2", b"nurture-open-v2"
#: Domain-separation prefix of format-1 (legacy) click tokens' MAC.
CLICK_CONTEXT = b"nurture-click-v1:"
#: Domain-separation prefix of format-1 (legacy) open tokens.
OPEN_CONTEXT = b"nurture-open-v1:"
#: Longest target URL a token carries (browsers and mail clients balk beyond ~2,000).
MAX_URL_LENGTH = 2048
#: Longest send key, in bytes (the ledger's column holds 255 characters).
MAX_SEND_KEY_BYTES = 255
_MAC_BYTES = hashlib.sha256().digest_size
_LENGTH_BYTES = 2
#: Longest token :func:`verify_click_token` decodes, in characters (the largest payload:
#: a URL of non-ASCII characters takes up to 4 bytes each).
MAX_TOKEN_LENGTH = max(
    sealing.token_length(2 * _LENGTH_BYTES + MAX_SEND_KEY_BYTES + 4 * MAX_URL_LENGTH),
    -(-(_LENGTH_BYTES + MAX_SEND_KEY_BYTES + 4 * MAX_URL_LENGTH + _MAC_BYTES) // 3) * 4,  # format 1
)
_MAX_OPEN_TOKEN = 512


def _web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _send_key_bytes(send_key: str) -> bytes:
    key = send_key.encode("utf-8")
    if not key or len(key) > MAX_SEND_KEY_BYTES:
        raise ValueError(f"the send key must be 1 to {MAX_SEND_KEY_BYTES} bytes")
    return key


def _text(fields: list[bytes] | None) -> list[str] | None:
    if fields is None or not fields[0]:
        return None
    try:
        return [field.decode("utf-8") for field in fields]
    except UnicodeDecodeError:
        return None


def make_click_token(send_key: str, url: str, secret: str) -> str:
    """The URL-safe, opaque token for a click on ``url`` in the message ``send_key``.

    Raises:
        ValueError: no secret, an empty send key, or ``url`` is not an absolute http(s)
            URL of at most :data:`MAX_URL_LENGTH` characters (a ``javascript:`` link is
            never worth tracking).
    """
    if not secret:
        raise ValueError("a click-token secret is required")
    key = _send_key_bytes(send_key)
    if len(url) > MAX_URL_LENGTH or not _web_url(url):
        raise ValueError(f"not an absolute http(s) URL of at most {MAX_URL_LENGTH} characters: {url[:80]!r}")
    return sealing.seal(secret, CLICK_PURPOSE, CLICK_AD, [key, url.encode("utf-8")])


def verify_click_token(token: str, secret: str) -> tuple[str, str] | None:
    """``(send_key, url)`` sealed in ``token`` with ``secret``, else None.

    Never raises for malformed input: garbage, a tampered token, a token of another
    secret, an open or unsubscribe token all simply fail. Format-1 tokens (in mail sent
    before format 2) are still verified, with their HMAC: see the module docstring.
    """
    data = sealing.decode(token, MAX_TOKEN_LENGTH) if secret else None
    if not data:
        return None
    if not sealing.is_sealed(data):
        return _verify_legacy_click(data, secret)
    fields = _text(sealing.unseal(data, secret, CLICK_PURPOSE, CLICK_AD, 2))
    return (fields[0], fields[1]) if fields else None


def _legacy_mac(payload: bytes, secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), CLICK_CONTEXT + payload, hashlib.sha256).digest()


def _verify_legacy_click(data: bytes, secret: str) -> tuple[str, str] | None:
    """A format-1 click token: ``payload + HMAC-SHA256(secret, CLICK_CONTEXT + payload)``."""
    if len(data) <= _LENGTH_BYTES + _MAC_BYTES:
        return None
    payload, mac = data[:-_MAC_BYTES], data[-_MAC_BYTES:]
    # Verify before parsing: nothing of an unsigned payload is looked at.
    if not hmac.compare_digest(mac, _legacy_mac(payload, secret)):
        return None
    size = int.from_bytes(payload[:_LENGTH_BYTES], "big")
    fields = _text([payload[_LENGTH_BYTES : _LENGTH_BYTES + size], payload[_LENGTH_BYTES + size :]])
    if fields is None or len(fields[0].encode("utf-8")) != size:
        return None
    return fields[0], fields[1]


def make_open_token(send_key: str, secret: str) -> str:
    """The URL-safe, opaque token of the open pixel of message ``send_key``.

    Put it in a message as ``<img src="https://t.example.com/o/{token}.gif" ...>``.
    """
    if not secret:
        raise ValueError("an open-token secret is required")
    return sealing.seal(secret, OPEN_PURPOSE, OPEN_AD, [_send_key_bytes(send_key)])


def verify_open_token(token: str, secret: str) -> str | None:
    """The send key sealed in an open token with ``secret``, else None; never raises for
    malformed input. Format-1 open tokens (``base64url(send_key + HMAC)``) still verify."""
    return verify_sealed_send_key(token, secret, purpose=OPEN_PURPOSE, associated=OPEN_AD,
                                  legacy_context=OPEN_CONTEXT, max_length=_MAX_OPEN_TOKEN)
