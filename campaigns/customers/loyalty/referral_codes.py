"""Referral codes: every customer's own, stable, keyed code with a check character, and
where it is written down so a sign-up carrying it finds its holder.

::

    code  = body + check
    body  = the first ``code_length`` 5-bit groups of
            HMAC-SHA256(key, "<customer row id>" 0x1f "<attempt>"), as characters of ALPHABET
    key   = HKDF-SHA256(installation secret, info = b"nurture/referral-code")
    check = the Damm check character of the body (coupon_codes.check_character)

The alphabet and the check character are the generated coupons' (``2-9`` and ``A-Z``
without ``I`` and ``O``; Damm over GF(32) catches every single mistyped character and
every swap of two neighbours), so a code read aloud or copied from paper fails its check
rather than naming somebody else. Keyed, a code says nothing about the customer's row id
and cannot be made for another customer without the secret.

A code is *issued* (a ``referral_code`` row) the first time it is shown: a message
rendering ``referral.code``, ``nurture referrals code``, ``nurture referrals issue``. It
is computed, never drawn, so issuing it later gives the same code; once written it stays,
even if the secret changes. ``origin_id`` is UNIQUE: one code per customer, however many
workers issue it at once. Two customers' bodies colliding (one chance in 10^12 per pair
at the default length) gives the later one the code of ``attempt`` 1, 2 ... A merge moves
the merged customer's code to the survivor; the survivor shows its own (or, if it never
had one, the one it took over), and both resolve to it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.config.keys import derive_key, installation_secret, require_secret
from campaigns.config.loyalty import ReferralConfig
from campaigns.config.schema import AppConfig
from campaigns.customers.loyalty.coupon_codes import ALPHABET, check_character, is_valid
from campaigns.store.bulk import insert_rows
from campaigns.store.chunks import chunks
from campaigns.store.models import Customer, ReferralCode

CODES = ReferralCode.__table__
#: The HKDF purpose of the referral key (campaigns.config.keys.derive_key).
CODE_PURPOSE = "referral-code"
#: Candidate codes per customer before issuing gives up (a collision is one in 10^12).
MAX_ATTEMPTS = 8
#: A code in a sample message (``nurture check``, previews): the right shape, and its
#: check character is right, but no customer holds it.
SAMPLE_BODY = "SAMPLE23"


def referral_key(config: AppConfig) -> bytes:
    """The key codes are derived under.

    Raises:
        MissingSecretError: ``[security] secret_env`` is unset (or too short).
    """
    return derive_key(require_secret(config, "issuing referral codes"), CODE_PURPOSE)


def optional_referral_key(config: AppConfig) -> bytes | None:
    """:func:`referral_key`, or None when the installation secret is unset."""
    secret = installation_secret(config)
    return derive_key(secret, CODE_PURPOSE) if secret else None


def derived_code(key: bytes, customer_id: int, *, length: int, attempt: int = 0) -> str:
    """The code of customer row ``customer_id``: ``length`` keyed characters and the check
    character. ``attempt`` picks the next candidate (after a collision)."""
    if not 1 <= length <= 51:  # 51 five-bit groups fit in SHA-256's 256 bits
        raise ValueError("length must be between 1 and 51")
    message = f"{customer_id}\x1f{attempt}".encode("ascii")
    bits = int.from_bytes(hmac.new(key, message, hashlib.sha256).digest(), "big")
    body = "".join(ALPHABET[(bits >> (251 - 5 * index)) & 31] for index in range(length))
    return body + check_character(body)


def normalize_code(value: Any) -> str | None:
    """A code as a sign-up carries it, as stored: upper case, without spaces and dashes; a
    referral link gives the code it ends with (``https://shop.example/r/AB3D-EF5G`` ->
    ``AB3DEF5G``). None for anything that is not text or is empty."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if "/" in text:  # a link: the code is its last path segment
        text = text.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    text = "".join(char for char in text if not char.isspace() and char != "-").upper()
    return text[:64] or None


def looks_valid(code: str) -> bool:
    """True when ``code`` (normalised) is made of code characters and its check character
    is right: a code that fails this was mistyped, not merely unknown."""
    return is_valid(code)


def held_codes(conn: Connection, customer_ids: Iterable[int]) -> dict[int, str]:
    """The code each of these customers shows: the one derived for them, else (a survivor
    that never had one) the first it took over in a merge."""
    shown: dict[int, str] = {}
    for chunk in chunks(sorted(set(customer_ids))):
        rows = conn.execute(
            sa.select(CODES.c.customer_id, CODES.c.origin_id, CODES.c.code)
            .where(CODES.c.customer_id.in_(chunk))
            # Their own first, then the oldest code they took over.
            .order_by(CODES.c.customer_id, (CODES.c.origin_id != CODES.c.customer_id), CODES.c.id)
        ).all()
        for row in rows:
            shown.setdefault(row.customer_id, row.code)
    return shown


def issue_codes(conn: Connection, key: bytes, customer_ids: Sequence[int], *, length: int,
                now: datetime) -> dict[int, str]:
    """The code of each customer in ``customer_ids``, writing those not issued yet (in the
    caller's transaction). A customer that does not exist gets none."""
    shown = held_codes(conn, customer_ids)
    missing = []
    for chunk in chunks(sorted(set(customer_ids) - set(shown))):
        missing += conn.execute(sa.select(Customer.id).where(Customer.id.in_(chunk))).scalars().all()
    attempt = 0
    while missing and attempt < MAX_ATTEMPTS:
        for chunk in chunks(missing):
            rows = [{"code": derived_code(key, customer_id, length=length, attempt=attempt),
                     "customer_id": customer_id, "origin_id": customer_id, "issued_at": now}
                    for customer_id in chunk]
            # No conflict target: a code another customer holds (a collision, tried again
            # with the next attempt) and a customer another worker just issued both skip.
            insert_rows(conn, CODES, rows, finish=lambda insert: insert.on_conflict_do_nothing())
        shown.update(held_codes(conn, missing))
        missing = [customer_id for customer_id in missing if customer_id not in shown]
        attempt += 1
    return shown


def issue_all(engine: Engine, key: bytes, *, length: int, now: datetime, batch_rows: int = 5000) -> int:
    """Issue a code to every customer without one, by keyset over customer ids, one
    transaction per batch; the number issued."""
    issued = 0
    after = 0
    c = Customer.__table__
    while True:
        with engine.begin() as conn:
            held = sa.exists().where(CODES.c.customer_id == c.c.id)
            ids = list(conn.execute(
                sa.select(c.c.id).where(c.c.id > after, ~held).order_by(c.c.id).limit(batch_rows)).scalars())
            if not ids:
                return issued
            issued += len(issue_codes(conn, key, ids, length=length, now=now))
            after = ids[-1]
        if len(ids) < batch_rows:
            return issued


def holders(conn: Connection, codes: Iterable[str]) -> dict[str, int]:
    """The customer holding each of ``codes`` (normalised), for the codes someone holds."""
    found: dict[str, int] = {}
    for chunk in chunks(sorted(set(codes))):
        found.update(conn.execute(
            sa.select(CODES.c.code, CODES.c.customer_id).where(CODES.c.code.in_(chunk))).all())
    return found


@dataclass(frozen=True, slots=True)
class ReferralContext:
    """The ``referral`` template variable: ``referral.code``, and ``referral.link`` when
    ``[loyalty.referrals] link`` is set (without it, a template showing the link fails
    ``nurture check``)."""

    code: str
    link: str | None = None

    def as_context(self) -> dict[str, str]:
        """The template's view of it."""
        return {"code": self.code} | ({"link": self.link} if self.link is not None else {})


def referral_link(referrals: ReferralConfig, code: str) -> str | None:
    """The referral link of ``code``; None without ``[loyalty.referrals] link``."""
    return referrals.link.replace("{code}", code) if referrals.link else None


def referrals_on(config: AppConfig) -> bool:
    """Referrals are on: the points programme is, and ``[loyalty.referrals]`` is not off."""
    return config.loyalty.enabled and config.loyalty.referrals.enabled


def sample_referral(config: AppConfig) -> ReferralContext | None:
    """The referral of a sample message (``nurture check``, previews), issuing nothing;
    None when referrals are off, so a template showing ``referral.code`` fails the check."""
    if not referrals_on(config):
        return None
    referrals = config.loyalty.referrals
    body = (SAMPLE_BODY * 2)[:referrals.code_length]
    code = body + check_character(body)
    return ReferralContext(code=code, link=referral_link(referrals, code))


def referral_contexts(engine: Engine, config: AppConfig, customer_ids: Sequence[int], *,
                      now: datetime) -> dict[int, ReferralContext]:
    """The ``referral`` of each recipient of a batch of messages, issuing their codes (one
    transaction). Empty when referrals are off; without the installation secret, only
    codes already issued are shown (a template showing another's code fails to render)."""
    if not referrals_on(config) or not customer_ids:
        return {}
    referrals = config.loyalty.referrals
    key = optional_referral_key(config)
    with engine.begin() as conn:
        if key is None:
            codes = held_codes(conn, customer_ids)
        else:
            codes = issue_codes(conn, key, customer_ids, length=referrals.code_length, now=now)
    return {customer_id: ReferralContext(code=code, link=referral_link(referrals, code))
            for customer_id, code in codes.items()}


__all__ = [
    "CODES",
    "CODE_PURPOSE",
    "MAX_ATTEMPTS",
    "ReferralContext",
    "derived_code",
    "held_codes",
    "holders",
    "issue_all",
    "issue_codes",
    "looks_valid",
    "normalize_code",
    "optional_referral_key",
    "referral_contexts",
    "referral_key",
    "referral_link",
    "referrals_on",
    "sample_referral",
]
