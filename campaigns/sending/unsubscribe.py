"""Sealed one-click unsubscribe tokens (RFC 8058), pure functions with no I/O.

A token identifies one delivery by its send key and proves we issued it, so the
unsubscribe endpoint needs no cookie or login (RFC 8058 §3.1). The send key is sealed
(:mod:`campaigns.sending.sealing`: AES-SIV under a key derived from the channel's unsubscribe
secret with purpose ``unsubscribe-token-v2``), because it may name the customer (its
occurrence part can be the source's own event id, e.g. one containing an email) and the
token lands in mail headers and access logs. The SMTP channel puts the token in
``List-Unsubscribe``; the receiver calls :func:`verify_unsubscribe_token` to get the send
key back (and from it the delivery, customer and campaign).

Format 1, still accepted because it is in mail already delivered (an unsubscribe link
must keep working for as long as the mail is kept) and never issued again::

    mac   = HMAC-SHA256(key = secret (UTF-8), msg = b"nurture-unsubscribe-v1:" + send_key (UTF-8))
    token = base64url(send_key (UTF-8) + mac), without "=" padding

The fixed prefix keeps a token from doubling as a MAC for anything else signed with the
same secret (open tokens of format 1 use the same construction with their own prefix).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import quote

from campaigns.sending import sealing

#: Domain-separation prefix of the signed bytes of format 1.
TOKEN_CONTEXT = b"nurture-unsubscribe-v1:"
#: Key purpose and associated data of sealed (format 2) unsubscribe tokens.
UNSUBSCRIBE_PURPOSE, UNSUBSCRIBE_AD = "unsubscribe-token-v2", b"nurture-unsubscribe-v2"
_MAX_TOKEN = 4096
_MAC_BYTES = hashlib.sha256().digest_size


def _mac(context: bytes, send_key: bytes, secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), context + send_key, hashlib.sha256).digest()


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
    """The URL-safe, opaque token for ``send_key`` sealed with ``secret``."""
    if not secret:
        raise ValueError("an unsubscribe secret is required")
    if not send_key:
        raise ValueError("the send key must not be empty")
    return sealing.seal(secret, UNSUBSCRIBE_PURPOSE, UNSUBSCRIBE_AD, [send_key.encode("utf-8")])


def verify_unsubscribe_token(token: str, secret: str) -> str | None:
    """The send key in ``token`` if it was sealed (or, format 1, signed) with ``secret``,
    else None.

    Never raises for malformed input: any garbage simply fails verification.
    """
    return verify_sealed_send_key(token, secret, purpose=UNSUBSCRIBE_PURPOSE, associated=UNSUBSCRIBE_AD,
                                  legacy_context=TOKEN_CONTEXT, max_length=_MAX_TOKEN)


def verify_sealed_send_key(token: str, secret: str, *, purpose: str, associated: bytes,
                           legacy_context: bytes, max_length: int) -> str | None:
    """The send key in a token naming one message (unsubscribe, open pixel): sealed under
    ``purpose`` and ``associated`` (format 2), or signed under ``legacy_context`` (format 1,
    still in delivered mail); None for anything else. Never raises for malformed input."""
    data = sealing.decode(token, max_length) if secret else None
    if not data:
        return None
    if not sealing.is_sealed(data):
        return verify_send_key_token(legacy_context, token, secret, max_length=max_length)
    fields = sealing.unseal(data, secret, purpose, associated, 1)
    if not fields or not fields[0]:
        return None
    try:
        return fields[0].decode("utf-8")
    except UnicodeDecodeError:
        return None


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
