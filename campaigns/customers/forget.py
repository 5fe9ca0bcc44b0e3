"""Erasing a customer's personal data (``nurture forget``) while keeping the numbers right.

A customer who asks to be forgotten loses everything that identifies or describes them;
what they did stays, attached to a row that no longer says who they were, so revenue,
repeat rates, stages, campaign reports and conversions count exactly as before.

Erased, in one transaction:

* ``customer``: name, email, phone, WeChat openid, locale, time zone and attributes are
  blanked; ``external_id`` becomes ``forgotten:<random hex>`` (random, not a hash of the
  old id, which could be guessed back). The row and its ``id`` stay.
* ``event``: properties emptied (name and time stay); the dedupe key, which may be the
  source's own event id, is replaced by a keyed hash of itself.
* ``consent``: every channel family set to ``withdrawn`` with source ``forget``.
* ``delivery.last_error``, ``delivery_attempt.error``: addresses and numbers masked
  (providers echo them back); ``campaign_state.paused_reason`` likewise for the
  customer's own addresses.
* ``response``: payloads emptied; refs (a provider's dedupe key, which may embed a hash
  of the phone number or openid) replaced by a keyed hash of themselves.
* ``suppression``: the customer's addresses, and unkeyed digests of them left by earlier
  versions, are replaced by :func:`address_digest` values, so an address that opted out
  stays suppressed (the send-time check matches digests) without being readable.

Every hash kept is keyed with the installation secret (``[security] secret_env``,
:mod:`campaigns.config.keys`), one derived key per purpose: an unkeyed SHA-256 of a phone number
gives the number back by brute force in seconds. Without the secret nothing is erased
(:class:`campaigns.config.keys.MissingSecretError`).
* ``customer_identifier``: every identifier the customer holds (those merged records
  brought along included) is deleted: none may find the person again.
* ``identity_review``: the shared value of each pair the customer is in is blanked.
* ``customer_merge``: in every merge the customer took part in, the merged record's
  external id and personal fields, and the personal values the merge overwrote, are
  blanked (the merge can still be undone, to a record as forgotten as this one).
* Queued deliveries become ``skipped`` ("customer forgotten") and active enrolments end
  (``exited_unsubscribe``): nothing more is ever sent to this customer.

Kept: orders and their items, deliveries (campaign, step, channel, status, times),
attempts' outcomes and codes, enrolments, profiles and stage transitions, the
acquisition channel and sign-up date; none of them names the person.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.identity import IdentityConfig
from campaigns.config.keys import FORGOTTEN_KEY_PURPOSE, derive_key, keyed_hex
from campaigns.config.vocabulary import CHANNEL_FAMILIES
from campaigns.customers.addresses import address_digest, legacy_address_digest, normalize_address
from campaigns.customers.identity.lookup import resolve_unique
from campaigns.customers.masking import mask_email, mask_phone, mask_text
from campaigns.errors import UnknownCustomerError
from campaigns.store.models import (
    CampaignState,
    Consent,
    Customer,
    CustomerIdentifier,
    CustomerMerge,
    Delivery,
    DeliveryAttempt,
    Enrollment,
    Event,
    IdentityReview,
    Response,
    Suppression,
)

__all__ = ["FORGOTTEN_PREFIX", "ForgetReport", "address_digest", "forget_customer"]

#: Prefix of a forgotten customer's placeholder ``external_id``.
FORGOTTEN_PREFIX = "forgotten:"
#: Source recorded on the withdrawn consents, and the error on cancelled deliveries.
FORGET_SOURCE = "forget"
CANCELLED_REASON = "customer forgotten"
#: Names and ids shorter than this are not searched for in free text ("Li" is in "Limit").
MIN_NAME_LENGTH = 3


@dataclass(frozen=True)
class ForgetReport:
    """What :func:`forget_customer` erased, by table."""

    #: The customer's row id, which stays (orders and deliveries point at it).
    customer_id: int
    #: The placeholder that replaced the customer's ``external_id``.
    placeholder: str
    events_scrubbed: int
    consents_withdrawn: int
    deliveries_scrubbed: int
    attempts_scrubbed: int
    deliveries_cancelled: int
    enrollments_ended: int
    suppressions_digested: int
    responses_scrubbed: int
    paused_reasons_scrubbed: int
    identifiers_removed: int
    reviews_scrubbed: int
    merges_scrubbed: int

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return asdict(self)


def forget_customer(
    engine: Engine, reference: str, *, now: datetime, secret: str, rules: IdentityConfig | None = None
) -> ForgetReport:
    """Erase the personal data of the customer ``reference`` names, in one transaction;
    ``secret`` is the installation secret keying the digests kept.

    ``reference`` is any identifier the customer holds (``C042``, ``phone:+86...``, a
    merged record's id), read by ``rules`` (``cfg.identity``; the defaults when not given).

    Raises:
        ValueError: ``secret`` is empty.
        UnknownCustomerError: no customer holds that identifier (a forgotten customer's
            old id included: it is gone).
        AmbiguousCustomerError: ``reference`` names two customers; nothing is erased.
    """
    if not secret:
        raise ValueError("forgetting a customer needs the installation secret")
    hash_key = derive_key(secret, FORGOTTEN_KEY_PURPOSE)
    with engine.begin() as conn:
        customer_id = resolve_unique(conn, reference, rules=rules or IdentityConfig())
        row = None if customer_id is None else conn.execute(
            sa.select(Customer.id, Customer.external_id, Customer.name, Customer.email, Customer.phone,
                      Customer.wechat_openid)
            .where(Customer.id == customer_id)
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise UnknownCustomerError(reference)
        customer_id = row.id
        addresses = [address for address in (row.email, row.phone, row.wechat_openid) if address]
        # Texts may also name them ("unknown customer C042", "Dear Li Wei"): whole words only.
        names = [name for name in (row.name, row.external_id) if name and len(name.strip()) >= MIN_NAME_LENGTH]
        placeholder = FORGOTTEN_PREFIX + secrets.token_hex(16)
        conn.execute(
            sa.update(Customer).where(Customer.id == customer_id).values(
                external_id=placeholder, name=None, email=None, phone=None, wechat_openid=None,
                locale=None, timezone=None, attributes={}, updated_at=now,
            )
        )
        delivery_ids = sa.select(Delivery.id).where(Delivery.customer_id == customer_id)
        return ForgetReport(
            customer_id=customer_id,
            placeholder=placeholder,
            events_scrubbed=_scrub_events(conn, customer_id, hash_key),
            consents_withdrawn=_withdraw_consents(conn, customer_id, now=now),
            deliveries_scrubbed=_scrub_texts(conn, Delivery.__table__.c.last_error,
                                             Delivery.__table__.c.customer_id == customer_id, addresses, names),
            attempts_scrubbed=_scrub_texts(conn, DeliveryAttempt.__table__.c.error,
                                           DeliveryAttempt.__table__.c.delivery_id.in_(delivery_ids), addresses, names),
            deliveries_cancelled=conn.execute(
                sa.update(Delivery)
                .where(Delivery.customer_id == customer_id, Delivery.status == "queued")
                .values(status="skipped", last_error=CANCELLED_REASON, claim_token=None, updated_at=now)
            ).rowcount,
            enrollments_ended=conn.execute(
                sa.update(Enrollment)
                .where(Enrollment.customer_id == customer_id, Enrollment.state == "active")
                .values(state="exited_unsubscribe", exited_at=now)
            ).rowcount,
            suppressions_digested=_digest_suppressions(conn, addresses, secret),
            responses_scrubbed=_scrub_responses(
                conn, sa.or_(Response.customer_id == customer_id, Response.delivery_id.in_(delivery_ids)), hash_key),
            paused_reasons_scrubbed=_scrub_texts(conn, CampaignState.__table__.c.paused_reason,
                                                 CampaignState.__table__.c.paused_reason.is_not(None), addresses,
                                                 names, only_addresses=True),
            identifiers_removed=conn.execute(
                sa.delete(CustomerIdentifier).where(CustomerIdentifier.customer_id == customer_id)).rowcount,
            reviews_scrubbed=conn.execute(
                sa.update(IdentityReview)
                .where(sa.or_(IdentityReview.customer_id == customer_id, IdentityReview.other_customer_id == customer_id))
                .values(value=FORGOTTEN_PREFIX)).rowcount,
            merges_scrubbed=_scrub_merges(conn, customer_id),
        )


def _scrub_events(conn: sa.Connection, customer_id: int, hash_key: bytes) -> int:
    """Empty the properties of the customer's events and hash their dedupe keys."""
    table = Event.__table__
    return _scrub_keyed_rows(conn, table, table.c.customer_id == customer_id,
                             payload="properties", key="dedupe_key", hash_key=hash_key)


def _scrub_responses(conn: sa.Connection, where: sa.ColumnElement[bool], hash_key: bytes) -> int:
    """Empty the payloads of the customer's responses and hash their refs.

    A ref is a provider's dedupe key and may embed a short unkeyed hash of the phone
    number or openid (SMS receipts, WeChat unsubscribes): 64 bits of SHA-256 of a phone
    number is a search of seconds, so it is hashed again under the key.
    """
    return _scrub_keyed_rows(conn, Response.__table__, where, payload="payload", key="provider_ref",
                             hash_key=hash_key)


def _scrub_keyed_rows(conn: sa.Connection, table: sa.Table, where: sa.ColumnElement[bool], *,
                      payload: str, key: str, hash_key: bytes) -> int:
    """Empty the JSON column ``payload`` of the rows ``where`` selects and hash their unique
    ``key`` column under ``hash_key``; the number of rows scrubbed."""
    rows = conn.execute(sa.select(table.c.id, table.c[key]).where(where)).all()
    if rows:
        conn.execute(
            sa.update(table).where(table.c.id == sa.bindparam("b_id"))
            .values({payload: {}, key: sa.bindparam("b_key")}),
            [{"b_id": row_id, "b_key": _hashed_key(value, hash_key)} for row_id, value in rows],
        )
    return len(rows)


def _hashed_key(key: str, hash_key: bytes) -> str:
    # Unique as the key was (the columns are UNIQUE), readable by no one: keyed, so a
    # guessable original (an event id, a phone number's hash) cannot be searched for.
    # Idempotent, so forgetting twice (or a hashed key) changes nothing.
    if key.startswith(FORGOTTEN_PREFIX):
        return key
    return FORGOTTEN_PREFIX + keyed_hex(hash_key, key)


#: Customer columns that describe the person, blanked in merge records (to these values).
_PERSONAL_FIELDS: dict[str, Any] = {"name": None, "email": None, "phone": None, "wechat_openid": None,
                                    "locale": None, "timezone": None, "attributes": {}}


def _scrub_merges(conn: sa.Connection, customer_id: int) -> int:
    """Blank the personal data merge records keep of the customer and of the records merged
    into it: the merged customer's row (external id, fields), review values, and the
    customer values a merge overwrote. The number of merge records rewritten.

    Each merged record gets a placeholder of its own, so an unmerge still re-inserts it
    under a unique external id. Records are few per customer: rewritten one by one.
    """
    table = CustomerMerge.__table__
    rows = conn.execute(sa.select(table.c.id, table.c.removed, table.c.changed).where(
        sa.or_(table.c.survivor_id == customer_id, table.c.merged_id == customer_id))).all()
    for row in rows:
        placeholder = FORGOTTEN_PREFIX + secrets.token_hex(16)
        removed = {name: [dict(item) for item in items] for name, items in (row.removed or {}).items()}
        for item in removed.get("customer", []):
            item.update(_PERSONAL_FIELDS, external_id=placeholder)
        for item in removed.get("identity_review", []):
            item["value"] = FORGOTTEN_PREFIX
        changed = [
            [name, key, column, _PERSONAL_FIELDS[column] if name == "customer" and column in _PERSONAL_FIELDS else old]
            for name, key, column, old in (row.changed or [])
        ]
        conn.execute(sa.update(table).where(table.c.id == row.id).values(
            merged_external_id=placeholder, removed=removed, changed=changed))
    return len(rows)


def _withdraw_consents(conn: sa.Connection, customer_id: int, *, now: datetime) -> int:
    """Every channel family withdrawn, source ``forget``: an update where a consent row
    exists, an insert where none does."""
    table = Consent.__table__
    existing = set(conn.execute(sa.select(table.c.channel).where(table.c.customer_id == customer_id)).scalars())
    conn.execute(
        sa.update(table).where(table.c.customer_id == customer_id)
        .values(status="withdrawn", source=FORGET_SOURCE, recorded_at=now)
    )
    missing = [family for family in CHANNEL_FAMILIES if family not in existing]
    if missing:
        conn.execute(sa.insert(table), [
            {"customer_id": customer_id, "channel": family, "status": "withdrawn", "source": FORGET_SOURCE,
             "recorded_at": now}
            for family in missing
        ])
    return len(existing) + len(missing)


def _scrub_texts(conn: sa.Connection, column: sa.Column[Any], where: sa.ColumnElement[bool],
                 addresses: list[str], names: list[str], *, only_addresses: bool = False) -> int:
    """Rewrite ``column`` where ``where`` holds: the customer's own addresses masked and
    their names replaced, and, unless ``only_addresses``, every other email or number
    masked too (:func:`mask_text`).

    Rows are rewritten in Python, where the masking is; a customer has few of them.
    """
    table = column.table
    key = table.primary_key.columns.values()[0]
    rows = conn.execute(sa.select(key, column).where(where, column.is_not(None))).all()
    changed = []
    for row_key, text in rows:
        scrubbed = _without_personal(text, addresses, names)
        if not only_addresses:
            scrubbed = mask_text(scrubbed)
        if scrubbed != text:
            changed.append({"b_key": row_key, "b_text": scrubbed})
    if changed:
        conn.execute(sa.update(table).where(key == sa.bindparam("b_key")).values({column.name: sa.bindparam("b_text")}),
                     changed)
    return len(changed)


def _without_personal(text: str, addresses: list[str], names: list[str]) -> str:
    """``text`` with each of ``addresses`` masked and each of ``names`` (whole words)
    replaced, in any letter case."""
    for address in addresses:
        needle = address.strip()
        if not needle:
            continue
        if "@" in needle:
            mask = mask_email(needle)
        elif needle.lstrip("+").isdigit():
            mask = mask_phone(needle)
        else:  # a WeChat openid: nothing of it is worth keeping
            mask = "***"
        text = re.sub(re.escape(needle), lambda _, mask=mask: mask, text, flags=re.IGNORECASE)
    for name in names:
        text = re.sub(rf"(?<!\w){re.escape(name.strip())}(?!\w)", "***", text, flags=re.IGNORECASE)
    return text


def _digest_suppressions(conn: sa.Connection, addresses: list[str], secret: str) -> int:
    """Replace suppression rows of ``addresses`` (as written, normalized, or as the unkeyed
    digest of earlier versions) by keyed digests; where the keyed digest is already listed
    for that channel, the old row just goes."""
    forms = {form: address for address in addresses
             for form in (address, address.strip(), address.strip().lower(), normalize_address(address),
                          legacy_address_digest(address))}
    if not forms:
        return 0
    table = Suppression.__table__
    rows = conn.execute(sa.select(table.c.id, table.c.channel, table.c.address)
                        .where(table.c.address.in_(sorted(forms)))).all()
    for row_id, channel, address in rows:
        digest = address_digest(forms[address], secret)
        taken = conn.execute(sa.select(table.c.id).where(table.c.channel == channel, table.c.address == digest)).first()
        if taken is None:
            conn.execute(sa.update(table).where(table.c.id == row_id).values(address=digest))
        else:
            conn.execute(sa.delete(table).where(table.c.id == row_id))
    return len(rows)
