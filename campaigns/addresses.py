"""Addresses as the suppression list keeps them: plain, or as a digest once erased.

A forgotten customer's suppressions must outlive their personal data (else a re-import
would message someone who opted out), so :func:`campaigns.forget.forget_customer` keeps
them as :func:`address_digest` values and the send-time check matches both forms.
"""

from __future__ import annotations

import hashlib

#: Prefix that marks a suppression address as a digest rather than an address.
DIGEST_PREFIX = "sha256:"


def normalize_address(address: str) -> str:
    """The comparable form of an email address or phone number: trimmed, lower-case,
    without the spaces, dashes and parentheses people type into phone numbers."""
    text = address.strip().lower()
    if "@" in text:
        return text
    return "".join(ch for ch in text if ch not in " -().")


def address_digest(address: str) -> str:
    """``sha256:<hex>`` of the normalized address: matches it without revealing it."""
    return DIGEST_PREFIX + hashlib.sha256(normalize_address(address).encode("utf-8")).hexdigest()
