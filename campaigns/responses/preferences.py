"""A customer's own say over their messages, through the links in them: the message an
unsubscribe token names, the customer's consent per channel family, and the two ways to
withdraw it (RFC 8058 one-click unsubscribe, the preference page).

The pages themselves are ``workers.http.preferences``; the changes are recorded as
``unsubscribed`` responses (:func:`campaigns.responses.recording.record_responses`), so a
repeated unsubscribe of the same message is stored once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.schema import AppConfig
from campaigns.config.vocabulary import CHANNEL_FAMILY, FAMILY_FIELDS
from campaigns.responses.optout import set_consent
from campaigns.responses.recording import InboundResponse, ResponseResult, record_responses
from campaigns.store.models import Consent, Customer, Delivery

#: Provider name of responses from our own links.
WEB_PROVIDER = "web"
#: The ``source`` of consent withdrawn on the preference page.
PREFERENCE_SOURCE = "preference page"


@dataclass(frozen=True)
class MessageRecipient:
    """The delivery a token names and what the preference page needs of its customer."""

    send_key: str
    delivery_id: int
    customer_id: int
    #: Family of the channel the message went out on.
    family: str
    #: The customer's address on ``family`` (shown masked only).
    address: str | None
    #: Family -> consent status (granted, withdrawn, or None when nothing is recorded),
    #: for every family the customer has an address or a consent record on.
    consents: dict[str, str | None] = field(default_factory=dict)
    #: The message was a test send (nurture test-send): its links change no consent, the
    #: one who clicks being the marketer, not the customer whose data it was rendered with.
    is_test: bool = False


def load_recipient(engine: Engine, config: AppConfig, send_key: str) -> MessageRecipient | None:
    """The recipient of the delivery ``send_key`` names, or None when there is none.

    A channel no longer configured (or without a recipient field) counts as email, the
    family of the unsubscribe links that lead here.
    """
    with engine.connect() as conn:
        delivery = conn.execute(
            sa.select(Delivery.id, Delivery.customer_id, Delivery.channel, Delivery.is_test)
            .where(Delivery.send_key == send_key)
        ).first()
        if delivery is None:
            return None
        columns = [getattr(Customer, name) for name in FAMILY_FIELDS.values()]
        customer = conn.execute(sa.select(*columns).where(Customer.id == delivery.customer_id)).first()
        consents = dict(conn.execute(
            sa.select(Consent.channel, Consent.status).where(Consent.customer_id == delivery.customer_id)
        ).all())
    row = customer._mapping if customer else {}
    addresses = {family: row.get(name) for family, name in FAMILY_FIELDS.items()}
    options = config.channels.get(delivery.channel)
    family = CHANNEL_FAMILY.get(str(getattr(options, "recipient", ""))) or "email"
    shown = {f: consents.get(f) for f in FAMILY_FIELDS if addresses.get(f) or f in consents}
    return MessageRecipient(send_key=send_key, delivery_id=delivery.id, customer_id=delivery.customer_id,
                            family=family, address=addresses.get(family), consents=shown, is_test=delivery.is_test)


def unsubscribe_once(engine: Engine, recipient: MessageRecipient, *, now: datetime) -> ResponseResult:
    """One-click unsubscribe: withdraw consent on the family the message went out on,
    recorded as an ``unsubscribed`` response (one per message, however often)."""
    item = InboundResponse(
        kind="unsubscribed", provider=WEB_PROVIDER, provider_ref=recipient.send_key, occurred_at=now,
        send_key=recipient.send_key, family=recipient.family, payload={"method": "one-click"},
    )
    result = record_responses(engine, [item], now=now)[0]
    if result.duplicate and not recipient.is_test and recipient.consents.get(recipient.family) == "granted":
        # Recorded before, but consent was granted again since: the customer asks
        # again, and an unsubscribe is honoured whatever the ledger already holds.
        set_consent(engine, customer_id=recipient.customer_id, family=recipient.family, status="withdrawn",
                    source=f"{WEB_PROVIDER} unsubscribe", now=now)
    return result


def withdraw_families(engine: Engine, recipient: MessageRecipient, families: list[str], *, now: datetime) -> None:
    """Withdraw consent on ``families`` (unticked on the preference page), with an
    ``unsubscribed`` response for each."""
    items = [
        InboundResponse(
            kind="unsubscribed", provider=WEB_PROVIDER,
            # The message's own family shares the one-click ref: unsubscribing twice
            # from one message, by either route, is one response.
            provider_ref=recipient.send_key if family == recipient.family else f"{recipient.send_key}:{family}",
            occurred_at=now, send_key=recipient.send_key,
            # No family: the consent change is ours below, with the page as its source.
            payload={"method": "preference page", "family": family},
        )
        for family in families
    ]
    # Recorded first: should the consent write fail, a retry finds the family still
    # granted and withdraws it (the response then being a duplicate).
    record_responses(engine, items, now=now)
    for family in families if not recipient.is_test else ():
        set_consent(engine, customer_id=recipient.customer_id, family=family, status="withdrawn",
                    source=PREFERENCE_SOURCE, now=now)
