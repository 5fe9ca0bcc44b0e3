"""Addresses as the suppression list keeps them: plain, or as a digest once erased.

A forgotten customer's suppressions must outlive their personal data (else a re-import
would message someone who opted out), so :func:`campaigns.customers.forget.forget_customer` keeps
them as :func:`address_digest` values and the send-time check matches every form.

The digest is keyed: ``hmac-sha256:<HMAC-SHA256(address key, normalized address)>``, the
key derived from the installation secret (:mod:`campaigns.config.keys`). An unkeyed hash of a
phone number is no erasure: the ~10^10 numbers of a country are hashed in seconds.
Suppressions written before the secret existed carry :func:`legacy_address_digest`
(``sha256:<hex>``); they are still matched (:func:`address_digests`) so nobody who opted
out is messaged again, and ``nurture forget`` replaces those of the customer it erases.
"""

from __future__ import annotations

import hashlib

from campaigns.config.keys import ADDRESS_PURPOSE, derive_key, keyed_hex

#: Prefix that marks a suppression address as a keyed digest rather than an address.
DIGEST_PREFIX = "hmac-sha256:"
#: Prefix of the unkeyed digests written before the installation secret (still matched).
LEGACY_DIGEST_PREFIX = "sha256:"


def normalize_address(address: str) -> str:
    """The comparable form of an email address or phone number: trimmed, lower-case,
    without the spaces, dashes and parentheses people type into phone numbers."""
    text = address.strip().lower()
    if "@" in text:
        return text
    return "".join(ch for ch in text if ch not in " -().")


def address_digest(address: str, secret: str) -> str:
    """``hmac-sha256:<hex>`` of the normalized address under the installation secret:
    matches the address without revealing it, even to someone who can list candidates."""
    return DIGEST_PREFIX + keyed_hex(derive_key(secret, ADDRESS_PURPOSE), normalize_address(address))


def legacy_address_digest(address: str) -> str:
    """``sha256:<hex>`` of the normalized address: the unkeyed form of earlier versions,
    only ever computed to match (and replace) rows written back then."""
    return LEGACY_DIGEST_PREFIX + hashlib.sha256(normalize_address(address).encode("utf-8")).hexdigest()


def address_digests(address: str, secret: str | None) -> list[str]:
    """Every digest a suppression of ``address`` may be stored as: the keyed one (when the
    secret is known) and the legacy unkeyed one."""
    forms = [legacy_address_digest(address)]
    if secret:
        forms.insert(0, address_digest(address, secret))
    return forms
