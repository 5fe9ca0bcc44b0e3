"""Opt-outs: the suppression list and consent withdrawals, and the words that ask for them.

A reply such as ``R``, ``TD``, ``退订`` or ``STOP`` to a marketing SMS is a refusal
(MIIT 2015; CTIA): the number is suppressed and the customer's consent on that channel
withdrawn at once, so no queued message fires afterwards (the worker checks both at send
time). Hard bounces and provider blacklist answers reach the suppression list through
the ``suppress`` outcome (:mod:`campaigns.sending.ledger`); operators add and lift entries with
``nurture suppress``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.vocabulary import FAMILY_FIELDS
from campaigns.customers.addresses import address_digests, normalize_address
from campaigns.store.db import COUNT_ROWS, dialect_insert
from campaigns.store.models import Consent, Customer, Suppression

#: Replies that mean "stop", compared trimmed and case-insensitively (CHANNELS.md §8).
OPT_OUT_KEYWORDS = frozenset({
    "R", "T", "TD", "N", "退订", "取消", "STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "STOPALL",
})

#: Punctuation people add around a keyword ("TD。", "stop!").
_TRIM = " \t\r\n.。!！,，;；:：'\"“”‘’()（）[]【】"


def is_opt_out(text: str) -> bool:
    """True when a reply is one of :data:`OPT_OUT_KEYWORDS` (full-width letters count)."""
    normalized = unicodedata.normalize("NFKC", text).strip(_TRIM).upper()
    return normalized in OPT_OUT_KEYWORDS


def family_of_address(address: str) -> str:
    """The channel family an address belongs to: email for ``a@b``, sms for a phone number,
    else wechat (an OpenID)."""
    if "@" in address:
        return "email"
    digits = normalize_address(address).lstrip("+")
    return "sms" if digits.isdigit() else "wechat"


@dataclass(frozen=True)
class OptOut:
    """What an opt-out changed."""

    family: str
    address: str
    suppressed: bool
    customers: int


def opt_out(engine: Engine, *, family: str, address: str, reason: str, source: str, now: datetime) -> OptOut:
    """Suppress ``address`` on ``family`` and withdraw the consent of every customer who
    has that address, in one transaction; idempotent (a provider's retried push changes
    nothing the second time)."""
    with engine.begin() as conn:
        return opt_out_in(conn, family=family, address=address, reason=reason, source=source, now=now)


def opt_out_in(conn: sa.Connection, *, family: str, address: str, reason: str, source: str,
               now: datetime) -> OptOut:
    """:func:`opt_out` inside the caller's transaction (a receipt recorded with it)."""
    if family not in FAMILY_FIELDS:
        raise ValueError(f"unknown channel family {family!r} (use email, sms or wechat)")
    field = getattr(Customer, FAMILY_FIELDS[family])
    inserted = conn.execution_options(**COUNT_ROWS).execute(
        dialect_insert(conn, Suppression.__table__)
        .values(channel=family, address=address, reason=reason[:200], created_at=now)
        .on_conflict_do_nothing(index_elements=["channel", "address"])
    )
    customer_ids = list(conn.execute(sa.select(Customer.id).where(field == address)).scalars())
    for customer_id in customer_ids:
        set_consent_in(conn, customer_id, family, "withdrawn", source=source, now=now)
    return OptOut(family=family, address=address, suppressed=inserted.rowcount == 1, customers=len(customer_ids))


def lift_suppression(engine: Engine, *, family: str, address: str, secret: str | None = None) -> bool:
    """Remove ``address`` (plain or digest form; the keyed digest needs the installation
    ``secret``) from the list; True if it was there. Consent is not re-granted: the
    customer must give it again."""
    with engine.begin() as conn:
        deleted = conn.execution_options(**COUNT_ROWS).execute(
            sa.delete(Suppression).where(Suppression.channel == family,
                                         Suppression.address.in_([address, *address_digests(address, secret)]))
        )
        return deleted.rowcount > 0


def set_consent(engine: Engine, *, customer_id: int, family: str, status: str, source: str,
                now: datetime) -> None:
    """Record ``status`` (granted or withdrawn) for one customer on one family, with its
    source and time (the proof a regulator asks for)."""
    if status not in ("granted", "withdrawn"):
        raise ValueError(f"consent status must be granted or withdrawn, not {status!r}")
    if family not in FAMILY_FIELDS:
        raise ValueError(f"unknown channel family {family!r} (use email, sms or wechat)")
    with engine.begin() as conn:
        set_consent_in(conn, customer_id, family, status, source=source, now=now)


def set_consent_in(conn: sa.Connection, customer_id: int, family: str, status: str, *, source: str,
                   now: datetime) -> None:
    """Record one consent change inside the caller's transaction."""
    table = Consent.__table__
    statement = dialect_insert(conn, table).values(
        customer_id=customer_id, channel=family, status=status, source=source[:64], recorded_at=now
    )
    conn.execute(statement.on_conflict_do_update(
        index_elements=["customer_id", "channel"],
        set_={"status": status, "source": source[:64], "recorded_at": now},
    ))
