"""Test sends: one campaign message, rendered for a customer, written to the ledger as a test.

``nurture test-send`` lets a marketer see the real message in a real inbox (or phone,
or webhook sink) before the campaign runs. The message goes the way every message goes,
ledger first: :func:`create_test_delivery` writes a ``delivery`` row with ``is_test`` set
and a send key of its own (``test:<campaign>:<step>:<uuid>``, so two test sends never
collide and never take a real send's key), then the command sends it to the address it
was given and the outcome is recorded like any other.

What ``is_test`` changes elsewhere, each at its own place and nowhere else:

* reports and the dashboard leave test rows out (``campaigns/reports/``);
* frequency caps do not count them (``policy._recent_marketing``);
* a bounce, complaint or STOP on a test send suppresses nothing and withdraws no consent
  (``ledger.record``, ``responses/``): the address was the marketer's, not the customer's;
* workers never claim them (``ledger.claim``): a test message cannot reach the customer
  whose data rendered it. No enrolment is written.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.schema import AppConfig
from campaigns.customers.identity.lookup import resolve_unique
from campaigns.errors import NurtureError, UnknownCustomerError
from campaigns.sending.assignment import variant_of
from campaigns.store.models import Customer, Delivery, Order


@dataclass(frozen=True)
class TestDelivery:
    """The ledger row of one test send, and what it was rendered from."""

    __test__ = False  # not a pytest test class, whatever its name

    id: int
    send_key: str
    campaign: str
    step: int
    channel: str
    template: str
    variant: int | None
    #: The customer whose data renders the message (their external id).
    customer: str
    #: True when no customer was named and a sample one was picked.
    sample: bool


def sample_customer(engine: Engine) -> str:
    """The customer a test send renders with when none is named: the first who has
    ordered (so order facts show), else the first imported one."""
    with engine.connect() as conn:
        with_order = conn.execute(
            sa.select(Customer.external_id)
            .where(sa.exists().where(Order.customer_id == Customer.id))
            .order_by(Customer.id)
            .limit(1)
        ).scalar()
        external_id = with_order or conn.execute(
            sa.select(Customer.external_id).order_by(Customer.id).limit(1)
        ).scalar()
    if external_id is None:
        raise NurtureError("no customers to render the message with: import customers first "
                           "(nurture import customers FILE)")
    return external_id


def create_test_delivery(
    engine: Engine,
    config: AppConfig,
    *,
    campaign: str,
    channel: str,
    now: datetime,
    step: int = 0,
    variant: int | None = None,
    customer: str | None = None,
) -> TestDelivery:
    """Write the queued, due ``is_test`` delivery of one campaign step for ``customer`` (any
    identifier it holds, read by ``config.identity``; a sample customer when None). The
    variant defaults to the customer's own.

    Raises :class:`~campaigns.errors.NurtureError` for a campaign, step, variant or channel
    config.toml does not define, :class:`~campaigns.errors.UnknownCustomerError` for an
    unknown customer and :class:`~campaigns.errors.AmbiguousCustomerError` for a reference
    naming two.
    """
    chosen = config.campaign(campaign)
    if channel not in config.channels:
        known = ", ".join(sorted(config.channels)) or "none"
        raise NurtureError(f"no channel named {channel!r} in config.toml (channels: {known})")
    if not 0 <= step < len(chosen.steps):
        raise NurtureError(f"campaign {campaign!r} has steps 0 to {len(chosen.steps) - 1}, not {step}")
    variants = chosen.steps[step].variants
    sample = customer is None
    # The sample is named by its external id alone: its digits may be someone's phone.
    reference = f"id:{sample_customer(engine)}" if customer is None else customer
    with engine.connect() as conn:
        customer_id = resolve_unique(conn, reference, rules=config.identity)
        if customer_id is None:
            raise UnknownCustomerError(reference)
        # Shown as the customer's own id, whichever identifier named them.
        external_id = conn.execute(sa.select(Customer.external_id).where(Customer.id == customer_id)).scalar_one()
    if variants:
        if variant is None:
            variant = variant_of(customer_id, chosen.name, step, [v.weight for v in variants])
        elif not 0 <= variant < len(variants):
            raise NurtureError(f"step {step} of {campaign!r} has variants 0 to {len(variants) - 1}, not {variant}")
        template = variants[variant].template
    elif variant is not None:
        raise NurtureError(f"step {step} of {campaign!r} has no variants")
    else:
        template = chosen.steps[step].template or ""
    send_key = f"test:{chosen.name}:{step}:{uuid.uuid4().hex}"
    with engine.begin() as conn:
        delivery_id = conn.execute(
            sa.insert(Delivery.__table__)
            .values(send_key=send_key, campaign=chosen.name, step=step, customer_id=customer_id, channel=channel,
                    template=template, variant=variant, status="queued", attempts=0, due_at=now,
                    dispatch_after=now, created_at=now, updated_at=now, is_test=True)
            .returning(Delivery.__table__.c.id)
        ).scalar_one()
    return TestDelivery(id=delivery_id, send_key=send_key, campaign=chosen.name, step=step, channel=channel,
                        template=template, variant=variant, customer=external_id, sample=sample)


@dataclass(frozen=True)
class TestOutcome:
    """What the ledger recorded for a test send."""

    __test__ = False

    status: str
    last_error: str | None
    provider_message_id: str | None


def recorded_outcome(engine: Engine, delivery_id: int) -> TestOutcome:
    """The recorded status of a test send (``sent`` or ``failed`` with its error)."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(Delivery.status, Delivery.last_error, Delivery.provider_message_id)
            .where(Delivery.id == delivery_id, Delivery.is_test)
        ).one()
    return TestOutcome(status=row.status, last_error=row.last_error, provider_message_id=row.provider_message_id)
