"""Sealed tokens: length-prefixed fields encrypted and authenticated with AES-SIV, for
URLs that must reveal nothing and be unforgeable (click, open and unsubscribe links).

::

    key       = HKDF-SHA256(secret, info = b"nurture/" + purpose), 64 bytes (AES-256-SIV)
    plaintext = for each field: len (2 bytes, big-endian) + bytes; zero-padded to a
                multiple of 32 bytes (a length says little)
    token     = base64url(0x02 + AES-SIV(key).encrypt(plaintext, [associated data])), no "="

AES-SIV (RFC 5297) is deterministic: the same fields give the same token (a retried send
renders the same message), and the only thing two tokens reveal is whether they are
equal. A different purpose is a different key, so a token of one kind never opens as
another even under the same secret; any change to a token fails authentication.
"""

from __future__ import annotations

import base64
import binascii
import functools

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from campaigns.config.keys import derive_key

#: First byte of a sealed token. The earlier signed formats never start with it: a click
#: token starts with 0x00 (the high byte of a send key's length), an unsubscribe or open
#: token with the send key's first character.
VERSION = b"\x02"
SIV_BYTES = 16
LENGTH_BYTES = 2
PAD = 32


def padded_size(size: int) -> int:
    """``size`` rounded up to the padding block."""
    return -(-size // PAD) * PAD


def token_length(payload: int) -> int:
    """Characters of the token sealing ``payload`` bytes of fields (length prefixes included)."""
    return -(-(1 + SIV_BYTES + padded_size(payload)) // 3) * 4


@functools.lru_cache(maxsize=16)
def _cipher(secret: str, purpose: str) -> AESSIV:
    # AES-256-SIV takes a 512-bit key (one AES-256 key for S2V, one for CTR).
    return AESSIV(derive_key(secret, purpose, length=64))


def seal(secret: str, purpose: str, associated: bytes, fields: list[bytes]) -> str:
    """The URL-safe token sealing ``fields`` (each at most 65,535 bytes)."""
    plaintext = b"".join(len(f).to_bytes(LENGTH_BYTES, "big") + f for f in fields)
    plaintext += b"\x00" * (padded_size(len(plaintext)) - len(plaintext))
    sealed = VERSION + _cipher(secret, purpose).encrypt(plaintext, [associated])
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def decode(token: str, max_length: int) -> bytes | None:
    """The bytes of a base64url token of at most ``max_length`` characters, else None."""
    if not token or len(token) > max_length:
        return None
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None


def is_sealed(data: bytes) -> bool:
    """True when decoded token bytes are in the sealed format (else an earlier one)."""
    return data[:1] == VERSION


def unseal(data: bytes, secret: str, purpose: str, associated: bytes, count: int) -> list[bytes] | None:
    """The ``count`` fields sealed in decoded token bytes, or None when they do not
    authenticate under ``secret`` and ``purpose`` or do not hold ``count`` fields."""
    if not secret or len(data) <= 1 + SIV_BYTES or not is_sealed(data):
        return None
    try:
        plaintext = _cipher(secret, purpose).decrypt(data[1:], [associated])
    except InvalidTag:
        return None
    fields, at = [], 0
    for _ in range(count):
        size = int.from_bytes(plaintext[at : at + LENGTH_BYTES], "big")
        value = plaintext[at + LENGTH_BYTES : at + LENGTH_BYTES + size]
        if len(value) != size:
            return None
        fields.append(value)
        at += LENGTH_BYTES + size
    return fields
