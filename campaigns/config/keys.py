"""The per-installation secret and the keys derived from it; pure functions, no I/O
beyond reading one environment variable.

One secret (``[security] secret_env``, default ``NURTURE_SECRET``) keys everything that
must not be computable by an outsider:

* the VERP tag and Message-ID of each email (:func:`message_tag`), so a forged bounce
  cannot name one of our deliveries;
* the digests that stand in for an erased customer's addresses and event ids
  (``nurture forget``), so they cannot be brute-forced back (a phone number has ~10^10
  values: an unkeyed SHA-256 of one falls in seconds).

It comes from the environment, never from a file generated per machine: workers on one
machine and ``nurture serve`` on another must derive the same keys. Each purpose gets
its own key, derived with HKDF-SHA256 (RFC 5869) under a purpose label, so a value
computed for one purpose is never valid for another.

Where the secret is unset, everything security-relevant fails closed: ``nurture forget``
refuses, ``POST /bounces`` refuses, and ``nurture check`` says so.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from campaigns.config.schema import AppConfig
from campaigns.config.secretvalues import read_secret
from campaigns.errors import NurtureError

#: Purpose labels (HKDF ``info``): one key each.
VERP_PURPOSE = "verp-message-tag"
ADDRESS_PURPOSE = "address-digest"
FORGOTTEN_KEY_PURPOSE = "forgotten-dedupe-key"
#: Hex digits of a message tag (128 bits: the Message-ID's local part and the VERP tag).
TAG_HEX = 32
#: Shortest secret accepted, in characters (a short one can be guessed offline).
MIN_SECRET_LENGTH = 16


class MissingSecretError(NurtureError):
    """The installation secret is unset (or too short) where it is required."""

    def __init__(self, env_name: str, purpose: str, *, too_short: bool = False) -> None:
        problem = (f"is shorter than {MIN_SECRET_LENGTH} characters" if too_short else "is not set")
        super().__init__(f"{env_name} {problem}: {purpose} needs the installation secret "
                         f"([security] secret_env), the same on every machine")
        self.env_name = env_name


def installation_secret(config: AppConfig) -> str | None:
    """The value of ``[security] secret_env``, or None when unset or too short to be safe."""
    secret = read_secret(config.security.secret_env)
    return secret if secret and len(secret) >= MIN_SECRET_LENGTH else None


def require_secret(config: AppConfig, purpose: str) -> str:
    """The installation secret; :class:`MissingSecretError` naming the variable if unset.

    ``purpose`` completes the message: "forgetting a customer", "verifying bounces"...
    """
    secret = installation_secret(config)
    if secret is None:
        raw = read_secret(config.security.secret_env)
        raise MissingSecretError(config.security.secret_env, purpose, too_short=raw is not None)
    return secret


@functools.lru_cache(maxsize=64)  # computed per address and per token otherwise
def derive_key(secret: str | bytes, purpose: str, *, length: int = 32) -> bytes:
    """A ``length``-byte key for ``purpose`` from ``secret`` (HKDF-SHA256, info
    ``nurture/<purpose>``). Deterministic: every machine with the secret derives it."""
    material = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not material:
        raise ValueError("an empty secret derives no key")
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=b"nurture/" + purpose.encode("ascii")).derive(material)


def keyed_hex(key: bytes, value: str) -> str:
    """HMAC-SHA256 of ``value`` (UTF-8) under ``key``, as 64 hex digits."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def message_tag(secret: str, send_key: str) -> str:
    """The 32-hex-digit tag of one message: ``HMAC(verp key, send_key)`` truncated.

    It is the local part of the Message-ID and the ``{send_key_hash}`` of a VERP
    envelope sender; only a holder of the secret can compute it for a send key, so a
    bounce carrying it is about a message we sent (send keys themselves are guessable).
    """
    return keyed_hex(derive_key(secret, VERP_PURPOSE), send_key)[:TAG_HEX]


def tags_match(secret: str, send_key: str, tag: str) -> bool:
    """True when ``tag`` is :func:`message_tag` of ``send_key``; constant time."""
    return hmac.compare_digest(message_tag(secret, send_key), tag.lower())
