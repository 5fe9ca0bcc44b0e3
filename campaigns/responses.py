"""Responses: what providers and customers answer after a message went out.

Receipts (delivered, undelivered, bounced, blocked), opens, clicks, replies, unsubscribes
and complaints arrive from provider pushes and from our own links. Providers retry their
pushes and do not make them idempotent, so every response is written once, keyed by
``(provider, provider_ref, kind)`` (UNIQUE in ``response``), and its effects run only the
first time:

* a receipt updates the delivery's ``receipt_status`` (the latest receipt wins);
* a permanent failure (hard bounce, unknown or blacklisted number), a complaint or a
  WeChat "user block" suppresses the address;
* an unsubscribe withdraws the customer's consent on the channel family;
* a reply that is an opt-out word (``TD``, ``退订``, ``STOP`` ...) suppresses the address
  and withdraws consent at once, in the same transaction, so no queued message to that
  customer fires afterwards (the worker checks both at send time).

Pure domain code: the receivers in ``workers/receivers`` parse and authenticate each
provider's request and hand :class:`InboundResponse` values to :func:`record_responses`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.db import dialect_insert
from campaigns.masking import mask_text
from campaigns.models import Customer, Delivery, Response
from campaigns.optout import FAMILY_FIELDS, is_opt_out, opt_out_in, set_consent_in

#: What a response can be.
RESPONSE_KINDS = frozenset({
    "delivered", "undelivered", "bounced", "opened", "clicked", "replied", "unsubscribed", "complained", "blocked",
})
#: Kinds that are receipts: they set ``delivery.receipt_status``.
RECEIPT_KINDS = frozenset({"delivered", "undelivered", "bounced", "blocked"})
#: Kinds that always suppress the address (a complaint, a user blocking the account).
SUPPRESSING_KINDS = frozenset({"complained", "blocked"})


@dataclass(frozen=True)
class InboundResponse:
    """One response as a receiver parsed it, before it is matched and recorded."""

    #: One of :data:`RESPONSE_KINDS`.
    kind: str
    #: Who reported it: twilio, aliyun, tencent, wechat, email (DSN) or web (our links).
    provider: str
    #: The provider's id for this event; with ``provider`` and ``kind`` the dedupe key.
    provider_ref: str
    occurred_at: datetime
    #: Matches ``delivery.provider_message_id`` (Twilio sid, Aliyun BizId, ...).
    provider_message_id: str | None = None
    #: Our send key, when the response carries it back (a signed token, OutId, ...).
    send_key: str | None = None
    #: Who wrote (replies), or the address concerned when no delivery is known.
    address: str | None = None
    #: Channel family of ``address`` (email, sms, wechat).
    family: str | None = None
    #: A reply's text.
    text: str | None = None
    #: A failure's code and description (masked before it is stored).
    error: str | None = None
    #: A failure that must suppress the address (hard bounce, unknown or blocked number).
    permanent: bool = False
    #: Provider fields worth keeping, without addresses or message text.
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResponseResult:
    """What recording one response did."""

    response_id: int | None
    #: Already recorded (a provider's retry): nothing else was done.
    duplicate: bool
    delivery_id: int | None
    customer_id: int | None
    #: An address was added to the suppression list.
    suppressed: bool
    #: The response was an opt-out (reply keyword, unsubscribe): consent was withdrawn.
    opted_out: bool


def record_responses(engine: Engine, items: Sequence[InboundResponse], *, now: datetime) -> list[ResponseResult]:
    """Match, record and apply ``items`` in one transaction; a duplicate changes nothing."""
    for item in items:
        if item.kind not in RESPONSE_KINDS:
            raise ValueError(f"unknown response kind {item.kind!r}")
    with engine.begin() as conn:
        return [_record(conn, item, now=now) for item in items]


def _record(conn: sa.Connection, item: InboundResponse, *, now: datetime) -> ResponseResult:
    delivery = _delivery(conn, item)
    family = item.family
    customer_id = delivery.customer_id if delivery is not None else None
    if customer_id is None and item.address and family in FAMILY_FIELDS:
        customer_id = _customer_by_address(conn, family, item.address)
    payload = dict(item.payload)
    if item.error:
        payload["error"] = mask_text(item.error)[:500]
    if item.text is not None:
        # A reply is kept (the marketer reads replies), masked like everything stored.
        payload["text"] = mask_text(item.text)[:1000]
    inserted = conn.execute(
        dialect_insert(conn, Response.__table__)
        .values(delivery_id=delivery.id if delivery is not None else None, customer_id=customer_id, kind=item.kind,
                provider=item.provider, provider_ref=item.provider_ref[:256], occurred_at=item.occurred_at,
                payload=payload)
        .on_conflict_do_nothing(index_elements=["provider", "provider_ref", "kind"])
        .returning(Response.__table__.c.id)
    ).scalar()
    if inserted is None:
        return ResponseResult(None, True, delivery.id if delivery is not None else None, customer_id, False, False)

    if delivery is not None and item.kind in RECEIPT_KINDS:
        # Pushes arrive out of order (a retried "sent" after "delivered"): the latest wins.
        conn.execute(
            sa.update(Delivery)
            .where(Delivery.id == delivery.id,
                   sa.or_(Delivery.receipt_at.is_(None), Delivery.receipt_at <= item.occurred_at))
            .values(receipt_status=item.kind, receipt_at=item.occurred_at)
        )
    address = item.address or _customer_address(conn, customer_id, family)
    suppressed = opted_out = False
    reason = f"{item.provider} {item.kind}" + (f": {mask_text(item.error)}" if item.error else "")
    if item.kind == "replied" and item.text is not None and is_opt_out(item.text) and address and family:
        result = opt_out_in(conn, family=family, address=address, reason=f"opt-out reply via {item.provider}",
                            source=f"{item.provider} reply", now=now)
        suppressed, opted_out = result.suppressed, True
    elif (item.permanent or item.kind in SUPPRESSING_KINDS) and address and family in FAMILY_FIELDS:
        result = opt_out_in(conn, family=family, address=address, reason=reason, source=f"{item.provider} {item.kind}",
                            now=now)
        suppressed, opted_out = result.suppressed, item.kind == "complained"
    elif item.kind == "unsubscribed" and customer_id is not None and family in FAMILY_FIELDS:
        set_consent_in(conn, customer_id, family, "withdrawn", source=f"{item.provider} unsubscribe", now=now)
        opted_out = True
    return ResponseResult(inserted, False, delivery.id if delivery is not None else None, customer_id,
                          suppressed, opted_out)


def _delivery(conn: sa.Connection, item: InboundResponse) -> Any:
    columns = (Delivery.id, Delivery.customer_id, Delivery.channel)
    if item.send_key:
        row = conn.execute(sa.select(*columns).where(Delivery.send_key == item.send_key)).first()
        if row is not None:
            return row
    if item.provider_message_id:
        return conn.execute(
            sa.select(*columns).where(Delivery.provider_message_id == item.provider_message_id)
            .order_by(Delivery.id.desc()).limit(1)
        ).first()
    return None


def _customer_by_address(conn: sa.Connection, family: str, address: str) -> int | None:
    column = getattr(Customer, FAMILY_FIELDS[family])
    return conn.execute(sa.select(Customer.id).where(column == address).order_by(Customer.id).limit(1)).scalar()


def _customer_address(conn: sa.Connection, customer_id: int | None, family: str | None) -> str | None:
    if customer_id is None or family not in FAMILY_FIELDS:
        return None
    column = getattr(Customer, FAMILY_FIELDS[family])
    return conn.execute(sa.select(column).where(Customer.id == customer_id)).scalar()
