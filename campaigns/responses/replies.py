"""A reply an operator feeds in by hand (``nurture reply``), recorded like a provider's.

Replies reach us from provider pushes (Twilio, Aliyun SmsUp, Tencent, WeChat), and also
by hand: exported from a provider console, or read out by a shop assistant. Both are
stored the same way, as a ``replied`` response through
:func:`campaigns.responses.recording.record_responses_in`, so an opt-out word suppresses the
address and withdraws consent at once, and every other reply is kept for the marketer.

A reply by hand names an address, not a message. It is credited to the last message sent
to that customer, at or before the reply, on a channel of the address's family (a text
message answers the last SMS, not last week's email): that is what makes the campaign
report's ``replied`` count it. With no such message the reply is kept against the
customer (or the bare address), and no campaign counts it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.schema import AppConfig
from campaigns.config.vocabulary import CHANNEL_FAMILY, FAMILY_FIELDS
from campaigns.responses.recording import InboundResponse, record_responses_in
from campaigns.store.models import Customer, Delivery

#: The ``provider`` of replies entered by hand.
OPERATOR = "operator"


@dataclass(frozen=True)
class RecordedReply:
    """What recording one reply by hand did."""

    #: False when the same reply (address, time and text) was recorded before.
    recorded: bool
    #: The external id of the customer who has the address, if any.
    customer: str | None
    #: The message the reply was credited to: its campaign, step and send key.
    campaign: str | None
    step: int | None
    send_key: str | None
    #: The text was an opt-out word: the address is suppressed, consent withdrawn.
    opt_out: bool
    #: The address was newly added to the suppression list.
    suppressed: bool
    #: Customers whose consent the opt-out withdrew (every customer with the address).
    customers: int


def family_channels(config: AppConfig, family: str) -> list[str]:
    """The names of the channels that reach an address of ``family`` (email, sms, wechat)."""
    return sorted(name for name, options in config.channels.items()
                  if CHANNEL_FAMILY.get(getattr(options, "recipient", "")) == family)


def record_reply(engine: Engine, config: AppConfig, *, family: str, address: str, text: str, at: datetime,
                 now: datetime) -> RecordedReply:
    """Record ``text`` from ``address`` (of ``family``), written at ``at``, as a ``replied``
    response credited to the last message sent to that customer on the family's channels.

    The same address, time and text again is the same reply (``recorded`` False): feeding
    in a provider's export twice counts nothing twice.
    """
    if family not in FAMILY_FIELDS:
        raise ValueError(f"unknown channel family {family!r} (use email, sms or wechat)")
    field = getattr(Customer, FAMILY_FIELDS[family])
    digest = hashlib.sha256("\x1f".join((family, address, at.isoformat(), text)).encode("utf-8")).hexdigest()
    with engine.begin() as conn:
        # The oldest customer with the address, as provider replies are matched.
        customer = conn.execute(sa.select(Customer.id, Customer.external_id).where(field == address)
                                .order_by(Customer.id).limit(1)).first()
        message = None
        channels = family_channels(config, family)
        if customer is not None and channels:
            message = conn.execute(
                sa.select(Delivery.campaign, Delivery.step, Delivery.send_key)
                .where(Delivery.customer_id == customer.id, Delivery.channel.in_(channels),
                       Delivery.status == "sent", Delivery.sent_at <= at)
                .order_by(Delivery.sent_at.desc(), Delivery.id.desc()).limit(1)
            ).first()
        item = InboundResponse(
            kind="replied", provider=OPERATOR, provider_ref=f"reply-{digest[:40]}", occurred_at=at,
            send_key=message.send_key if message is not None else None, address=address, family=family,
            text=text, payload={"entered_by": "nurture reply"},
        )
        result = record_responses_in(conn, [item], now=now)[0]
        withdrawn = 0
        if result.opted_out:
            withdrawn = conn.execute(sa.select(sa.func.count()).select_from(Customer)
                                     .where(field == address)).scalar_one()
    return RecordedReply(
        recorded=not result.duplicate,
        customer=customer.external_id if customer is not None else None,
        campaign=message.campaign if message is not None else None,
        step=message.step if message is not None else None,
        send_key=message.send_key if message is not None else None,
        opt_out=result.opted_out,
        suppressed=result.suppressed,
        customers=withdrawn,
    )
