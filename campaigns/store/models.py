"""The data model: SQLModel tables for customers, their history and the delivery ledger.

Timestamps are timezone-aware and stored in UTC (SQLModel's ``UTCDateTime``), so SQLite
and PostgreSQL compare them the same way; :func:`utcnow` gives the current value. Customer
time zones live on the customer and are applied when computing local times.

The schema itself is owned by Alembic (``campaigns/store/migrations``); a test checks that the
migrations and these models agree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

#: Delivery statuses. ``queued`` rows wait for ``due_at``; ``sending`` rows are leased by a
#: worker; the rest are final except ``deferred`` handling, which moves rows back to queued.
DELIVERY_STATUSES = ("queued", "sending", "sent", "failed", "suppressed", "skipped")


def utcnow() -> datetime:
    """Current time, aware, in UTC."""
    return datetime.now(UTC)


def _json_column() -> Any:
    return sa.Column(sa.JSON, nullable=False, default=dict)


class Customer(SQLModel, table=True):
    """A person the business may message, keyed by the business's own ``external_id``."""

    __tablename__ = "customer"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False, unique=True))
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    wechat_openid: str | None = Field(default=None, max_length=128)
    timezone: str | None = Field(default=None, max_length=64)
    locale: str | None = Field(default=None, max_length=16)
    #: Where the customer came from: ecommerce, store, social, distributor, direct, ...
    acquisition_channel: str | None = Field(default=None, max_length=32, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    #: Free attributes from imports (``vip``, ``city``, ``points_expire_on`` ...).
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())


class Order(SQLModel, table=True):
    """A purchase; ``channel`` is where it was bought (may differ from acquisition)."""

    __tablename__ = "orders"
    __table_args__ = (
        sa.Index("ix_orders_customer_ordered", "customer_id", "ordered_at"),
        # Refunds are rare: the daily job finds them without reading every order.
        sa.Index("ix_orders_not_paid", "status",
                 postgresql_where=sa.text("status <> 'paid'"), sqlite_where=sa.text("status <> 'paid'")),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False, unique=True))
    customer_id: int = Field(foreign_key="customer.id", ondelete="CASCADE")
    ordered_at: datetime
    amount: float = Field(sa_column=sa.Column(sa.Numeric(14, 2, asdecimal=False), nullable=False))
    channel: str | None = Field(default=None, max_length=32)
    #: paid, refunded or cancelled: a refund takes back the points the order earned.
    status: str = Field(default="paid", sa_column=sa.Column(sa.String(16), nullable=False, server_default="paid"))
    #: The part of ``amount`` that paid for shipping, which earns no points by default.
    shipping: float | None = Field(
        default=None, sa_column=sa.Column(sa.Numeric(14, 2, asdecimal=False), nullable=True)
    )


class OrderItem(SQLModel, table=True):
    """One line of an order."""

    __tablename__ = "order_item"

    id: int | None = Field(default=None, primary_key=True)
    order_pk: int = Field(foreign_key="orders.id", index=True, ondelete="CASCADE")
    sku: str = Field(max_length=128)
    category: str | None = Field(default=None, max_length=128)
    quantity: int = 1
    price: float = Field(sa_column=sa.Column(sa.Numeric(14, 2, asdecimal=False), nullable=False))


class Event(SQLModel, table=True):
    """Something a customer did (``signup``, ``review``, ``page_view`` ...)."""

    __tablename__ = "event"
    __table_args__ = (sa.Index("ix_event_customer_name_time", "customer_id", "name", "occurred_at"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", ondelete="CASCADE")
    name: str = Field(max_length=64)
    occurred_at: datetime
    properties: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    #: The source's event id, or a hash of the event, so re-imports do not duplicate.
    dedupe_key: str = Field(sa_column=sa.Column(sa.String(128), nullable=False, unique=True))


class Consent(SQLModel, table=True):
    """The current consent state of one customer on one channel family."""

    __tablename__ = "consent"
    __table_args__ = (sa.UniqueConstraint("customer_id", "channel", name="uq_consent_customer_channel"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", ondelete="CASCADE")
    #: Channel family: email, sms or wechat.
    channel: str = Field(max_length=16)
    #: granted or withdrawn.
    status: str = Field(max_length=16)
    source: str | None = Field(default=None, max_length=64)
    recorded_at: datetime = Field(default_factory=utcnow)


class CampaignRun(SQLModel, table=True):
    """One occurrence of a campaign's trigger, claimed by exactly one scheduler."""

    __tablename__ = "campaign_run"
    __table_args__ = (sa.UniqueConstraint("campaign", "scheduled_at", name="uq_run_campaign_slot"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign: str = Field(max_length=128)
    scheduled_at: datetime
    #: planning -> planned. A run left in planning past its lease is taken over.
    status: str = Field(default="planning", max_length=16)
    claimed_at: datetime = Field(default_factory=utcnow)
    planned_count: int = 0


class CampaignState(SQLModel, table=True):
    """Operator-visible state of a campaign: paused (and why) after a ``halt`` outcome."""

    __tablename__ = "campaign_state"

    campaign: str = Field(primary_key=True, max_length=128)
    paused: bool = False
    paused_reason: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    """The ledger: one row per message, written before any provider is called.

    ``send_key`` is deterministic (campaign, step, customer, channel, occurrence) and
    UNIQUE, so planning twice, retrying a job or running two schedulers cannot create a
    second send.
    """

    __tablename__ = "delivery"
    __table_args__ = (
        # What the dispatcher reads each tick: only queued rows, in the order they become
        # dispatchable, so a tick costs what it dispatches, not the size of the backlog.
        sa.Index(
            "ix_delivery_dispatch",
            "dispatch_after",
            "id",
            postgresql_where=sa.text("status = 'queued'"),
            sqlite_where=sa.text("status = 'queued'"),
        ),
        # Only rows being sent carry a token; indexing the NULLs of every planned row would
        # cost a write per delivery for nothing.
        sa.Index(
            "ix_delivery_claim_token",
            "claim_token",
            postgresql_where=sa.text("claim_token IS NOT NULL"),
            sqlite_where=sa.text("claim_token IS NOT NULL"),
        ),
        # Receipts find their delivery by the provider's id; planned rows have none yet, so
        # the index costs nothing at planning time.
        sa.Index(
            "ix_delivery_provider_message_id",
            "provider_message_id",
            postgresql_where=sa.text("provider_message_id IS NOT NULL"),
            sqlite_where=sa.text("provider_message_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    send_key: str = Field(sa_column=sa.Column(sa.String(255), nullable=False, unique=True))
    #: The campaign run that planned the row (no foreign key: checking one constant value
    #: for each of a million inserted rows costs seconds and protects nothing).
    run_id: int | None = Field(default=None, index=True)
    campaign: str = Field(max_length=128, index=True)
    step: int = 0
    customer_id: int = Field(foreign_key="customer.id", index=True, ondelete="CASCADE")
    channel: str = Field(max_length=64)
    template: str = Field(max_length=256)
    #: The enrollment this message belongs to (goals and unsubscribes end it).
    enrollment_id: int | None = Field(default=None, index=True)
    #: The A/B variant sent at this step (index into the step's variants), if any.
    variant: int | None = None
    status: str = Field(default="queued", max_length=16)
    attempts: int = 0
    #: Not sent before this moment (step delay, retry backoff, deferral).
    due_at: datetime
    #: When the scheduler may (re-)enqueue a queued row: ``due_at`` for rows nobody has
    #: enqueued yet; enqueue time + lease for rows handed to the broker, so a job the
    #: broker lost is enqueued again once the lease has passed.
    dispatch_after: datetime
    #: While ``sending``: the worker's lease and claim token.
    lease_until: datetime | None = None
    claim_token: str | None = Field(default=None, max_length=36)
    provider_message_id: str | None = Field(default=None, max_length=128)
    last_error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    #: What the provider reported after accepting it (delivered, undelivered, bounced,
    #: blocked), and when: the latest receipt wins.
    receipt_status: str | None = Field(default=None, max_length=16)
    receipt_at: datetime | None = None
    #: A test send (``nurture test-send``): a real message to an address the marketer
    #: gave, never counted in reports or caps and never suppressing the customer.
    is_test: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class Enrollment(SQLModel, table=True):
    """One customer's passage through one occurrence of a campaign.

    Held-out customers are enrolled too (``holdout = True``, state ``held_out``) so the
    campaign's effect can be measured against them; they get no deliveries.
    """

    __tablename__ = "enrollment"
    __table_args__ = (
        sa.UniqueConstraint("campaign", "customer_id", "occurrence", name="uq_enrollment_occurrence"),
        sa.Index("ix_enrollment_campaign_state", "campaign", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign: str = Field(max_length=128)
    customer_id: int = Field(foreign_key="customer.id", index=True, ondelete="CASCADE")
    #: "once", a run slot, an entry or event id: what makes re-entries distinct.
    occurrence: str = Field(max_length=64)
    enrolled_at: datetime
    holdout: bool = False
    #: active, completed, held_out, exited_goal, exited_unsubscribe.
    state: str = Field(default="active", max_length=24)
    exited_at: datetime | None = None


class DeliveryAttempt(SQLModel, table=True):
    """One call to a provider for one delivery, whatever its outcome."""

    __tablename__ = "delivery_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="delivery.id", index=True, ondelete="CASCADE")
    attempt: int
    outcome: str = Field(max_length=16)
    code: str | None = Field(default=None, max_length=64)
    error: str | None = Field(default=None, max_length=1000)
    provider_message_id: str | None = Field(default=None, max_length=128)
    started_at: datetime
    finished_at: datetime


class Response(SQLModel, table=True):
    """A customer's or provider's answer: receipt, click, reply, unsubscribe, purchase."""

    __tablename__ = "response"
    __table_args__ = (
        sa.UniqueConstraint("provider", "provider_ref", "kind", name="uq_response_ref"),
        # Replies are few among the responses (receipts are most): the reply classifier
        # and the survey reader find the new ones without reading every response.
        sa.Index("ix_response_replied", "id",
                 postgresql_where=sa.text("kind = 'replied'"), sqlite_where=sa.text("kind = 'replied'")),
    )

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id", index=True)
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    kind: str = Field(max_length=32)
    provider: str = Field(max_length=64)
    provider_ref: str = Field(max_length=256)
    occurred_at: datetime
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())


class Suppression(SQLModel, table=True):
    """An address that must never be messaged again on a channel family."""

    __tablename__ = "suppression"
    __table_args__ = (sa.UniqueConstraint("channel", "address", name="uq_suppression_address"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    address: str = Field(max_length=320)
    reason: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class CustomerProfile(SQLModel, table=True):
    """Computed facts about one customer as of the last recompute: order facts, RFM scores
    and segment, lifecycle stage. Rebuilt by :func:`campaigns.customers.profiles.recompute_profiles`."""

    __tablename__ = "customer_profile"

    customer_id: int = Field(primary_key=True, foreign_key="customer.id", ondelete="CASCADE")
    #: The as-of moment of the recompute that last changed this profile (unchanged
    #: profiles are not rewritten; see campaigns.customers.profiles.latest_recompute).
    as_of: datetime
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    orders_count: int = 0
    total_spent: float = Field(default=0.0, sa_column=sa.Column(sa.Numeric(16, 2, asdecimal=False), nullable=False))
    avg_order_value: float | None = Field(
        default=None, sa_column=sa.Column(sa.Numeric(16, 2, asdecimal=False), nullable=True)
    )
    #: Quintile scores 1-5 (5 = most recent / most frequent / highest spend); NULL without orders.
    r_score: int | None = None
    f_score: int | None = None
    m_score: int | None = None
    rfm_segment: str | None = Field(default=None, max_length=32, index=True)
    #: prospect, new, active, at_risk or churned.
    stage: str = Field(max_length=16, index=True)
    stage_since: datetime
    #: Values before the latest recompute: a row whose stage differs from its previous
    #: stage has just entered it (that is how transitions are found in one pass).
    previous_stage: str | None = Field(default=None, max_length=16)
    previous_rfm_segment: str | None = Field(default=None, max_length=32)
    computed_at: datetime = Field(default_factory=utcnow)


class ProfileTransition(SQLModel, table=True):
    """A customer entering a lifecycle stage or RFM segment; triggers fire once per row."""

    __tablename__ = "profile_transition"
    __table_args__ = (sa.Index("ix_transition_kind_value_entered", "kind", "value", "entered_at"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True, ondelete="CASCADE")
    #: ``stage`` or ``rfm_segment``.
    kind: str = Field(max_length=16)
    value: str = Field(max_length=32)
    previous: str | None = Field(default=None, max_length=32)
    entered_at: datetime


class Lease(SQLModel, table=True):
    """A named lock held by one process until ``expires_at`` (the scheduler's leader lock);
    taken over by another process once it has expired."""

    __tablename__ = "lease"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=200)
    acquired_at: datetime
    expires_at: datetime


class CustomerIdentifier(SQLModel, table=True):
    """One way to recognise a customer: ``(kind, value)``, unique across customers.

    Kinds: ``id`` (a source system's id, ``pos:88``, or an unsourced ``customer_id``),
    ``phone`` (E.164), ``email`` (normalised), ``openid`` (``<app>:<openid>``), ``unionid``.
    Every customer holds at least its own ``external_id`` as an ``id``; a merge moves the
    merged customer's identifiers to the survivor, so any of them still finds the person.
    """

    __tablename__ = "customer_identifier"
    __table_args__ = (sa.UniqueConstraint("kind", "value", name="uq_identifier_kind_value"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=16)
    value: str = Field(max_length=320)
    #: The import source that reported it (``pos``, ``shop``), or None for an unsourced one.
    source: str | None = Field(default=None, max_length=32)
    #: The source confirmed it (a phone verified by SMS code): a strong identifier.
    verified: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    first_seen_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)


class CustomerMerge(SQLModel, table=True):
    """One merge of a customer into a survivor: who, when, why, and everything it changed,
    so ``nurture customer unmerge`` can put every row back exactly.

    ``moved`` maps a table to the ids of its rows re-pointed to the survivor; ``removed``
    holds whole rows the merge deleted (the merged customer itself, consent and enrolment
    rows the survivor already had, its profile); ``changed`` holds ``[table, id, column,
    old value]`` for every value it overwrote (a consent withdrawn, an enrolment ended).
    """

    __tablename__ = "customer_merge"

    id: int | None = Field(default=None, primary_key=True)
    survivor_id: int = Field(index=True)
    #: The merged customer's row id and external id (the row itself is in ``removed``).
    merged_id: int = Field(index=True)
    merged_external_id: str = Field(max_length=128)
    #: ``import:<source>`` (a strong match), ``review`` (decided by hand), ``cli`` ...
    reason: str = Field(max_length=200)
    #: Who decided: the matching rule, or the operator's name.
    actor: str = Field(default="nurture", max_length=128)
    merged_at: datetime = Field(default_factory=utcnow)
    moved: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    removed: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    changed: list[Any] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False, default=list))
    #: Set when the merge was reversed.
    unmerged_at: datetime | None = None


class IdentityReview(SQLModel, table=True):
    """Two customers sharing a weak identifier (an email): the same person, or a family?

    Opened by an import, closed by ``nurture identity review --merge/--keep-apart``; a pair
    kept apart is never proposed again.
    """

    __tablename__ = "identity_review"
    __table_args__ = (sa.UniqueConstraint("customer_id", "other_customer_id", name="uq_review_pair"),)

    id: int | None = Field(default=None, primary_key=True)
    #: The pair, lower row id first.
    customer_id: int = Field(foreign_key="customer.id", index=True, ondelete="CASCADE")
    other_customer_id: int = Field(foreign_key="customer.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=16)
    #: The shared identifier's value as it was matched (shown masked in the CLI).
    value: str = Field(max_length=320)
    source: str | None = Field(default=None, max_length=32)
    #: open, merged, kept_apart.
    status: str = Field(default="open", max_length=16)
    opened_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None


# Loyalty


class PointsLot(SQLModel, table=True):
    """Points earned from one source (an order, an event, a referral, an adjustment), kept
    apart: each lot has its own expiry and its own redeemable kinds. ``remaining`` is what
    redemptions, expiry and reversal have left of it; a ``debt`` lot (negative) holds points
    taken back after they were spent, which later earnings settle.

    The ledger (:class:`PointsEntry`) is the record; lots are its running state, written in
    the same transaction as the entries that change them."""

    __tablename__ = "points_lot"
    __table_args__ = (
        sa.UniqueConstraint("source", "source_ref", name="uq_points_lot_source"),
        sa.Index("ix_points_lot_customer_expires", "customer_id", "expires_at"),
        # The daily job's expiry and reminders read open lots by expiry only.
        sa.Index("ix_points_lot_open_expires", "expires_at",
                 postgresql_where=sa.text("remaining > 0"), sqlite_where=sa.text("remaining > 0")),
        # Debts (negative lots) are rare: earning settles them without reading every lot.
        sa.Index("ix_points_lot_debts", "customer_id",
                 postgresql_where=sa.text("remaining < 0"), sqlite_where=sa.text("remaining < 0")),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", ondelete="CASCADE")
    #: order, event, referral, adjustment or debt.
    source: str = Field(max_length=16)
    #: The source's own id: the order id, the event's dedupe key, the adjustment id.
    source_ref: str = Field(max_length=160)
    #: The earn rule: purchase, an event name (review, share ...), referral, adjustment.
    rule: str = Field(max_length=64)
    points: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    remaining: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    #: Taken from this lot by redemptions (what a refund claws back when ``carry``).
    spent: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0"))
    #: What the points can be redeemed for, as ``",goods,coupons,"`` (a LIKE finds one).
    kinds: str = Field(max_length=400)
    earned_at: datetime
    #: None: never expires (debt lots).
    expires_at: datetime | None = None
    #: Set once the source was refunded and the lot's points taken back.
    reversed_at: datetime | None = None


class PointsEntry(SQLModel, table=True):
    """The points ledger, append-only: one row per earn, redemption, expiry, reversal or
    adjustment, written exactly once per source (``entry_key`` is UNIQUE), so a replayed
    import or event changes nothing. The balance is the sum of ``points``."""

    __tablename__ = "points_entry"
    __table_args__ = (sa.Index("ix_points_entry_customer_occurred", "customer_id", "occurred_at"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", ondelete="CASCADE")
    #: earn, redeem, expire, reverse or adjust.
    kind: str = Field(max_length=16)
    #: Signed: earns and positive adjustments add, the rest take away.
    points: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    #: order, event, referral, redemption, adjustment or lot (an expiry).
    source: str = Field(max_length=16)
    source_ref: str = Field(max_length=160)
    #: The lot earned, expired or reversed (NULL for redemptions, which may span lots).
    lot_id: int | None = Field(default=None, foreign_key="points_lot.id", ondelete="CASCADE")
    entry_key: str = Field(sa_column=sa.Column(sa.String(200), nullable=False, unique=True))
    #: The redemption kind, the adjustment's reason, the rule.
    detail: str | None = Field(default=None, max_length=500)
    occurred_at: datetime
    recorded_at: datetime = Field(default_factory=utcnow)


class PointsAllocation(SQLModel, table=True):
    """How many points one redemption (or debt settlement) took from one lot, so a
    customer's history shows where their points went."""

    __tablename__ = "points_allocation"

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="points_entry.id", index=True, ondelete="CASCADE")
    lot_id: int = Field(foreign_key="points_lot.id", index=True, ondelete="CASCADE")
    points: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class LoyaltyMember(SQLModel, table=True):
    """A customer's member tier as of the last tier recompute. Customers without a row are
    in the lowest tier; entering a tier is a ``profile_transition`` row of kind ``tier``."""

    __tablename__ = "loyalty_member"

    customer_id: int = Field(primary_key=True, foreign_key="customer.id", ondelete="CASCADE")
    tier: str = Field(max_length=32, index=True)
    tier_since: datetime
    #: When the member first no longer qualified for ``tier`` (the grace period runs from
    #: here); NULL while they qualify.
    below_since: datetime | None = None
    computed_at: datetime = Field(default_factory=utcnow)


class PointsCursor(SQLModel, table=True):
    """How far earning has read each source table (``orders``, ``event``) by row id, so the
    daily job reads only what arrived since."""

    __tablename__ = "points_cursor"

    source: str = Field(primary_key=True, max_length=16)
    last_id: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))


# Coupons


class Coupon(SQLModel, table=True):
    """One coupon code of a pool: imported (``nurture import coupons``) or generated for a
    message (docs/coupons.md).

    ``available -> assigned`` when a message takes it: ``send_key`` is the delivery's and
    UNIQUE, so a message gets one coupon at most, a retry gets the same one back, and two
    messages can never share one. ``-> redeemed`` once, from a redemption import."""

    __tablename__ = "coupon"
    __table_args__ = (
        sa.UniqueConstraint("pool", "code", name="uq_coupon_pool_code"),
        # What assignment reads: a pool's next available code, by id.
        sa.Index("ix_coupon_available", "pool", "id",
                 postgresql_where=sa.text("status = 'available'"), sqlite_where=sa.text("status = 'available'")),
        # Redemption imports name a code, often without its pool.
        sa.Index("ix_coupon_code", "code"),
    )

    id: int | None = Field(default=None, primary_key=True)
    pool: str = Field(max_length=128)
    code: str = Field(max_length=64)
    #: available, assigned or redeemed.
    status: str = Field(default="available", max_length=16)
    #: The delivery the coupon was assigned to (its send key), once assigned.
    send_key: str | None = Field(default=None, sa_column=sa.Column(sa.String(255), nullable=True, unique=True))
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True, ondelete="CASCADE")
    #: The campaign whose message carried it.
    campaign: str | None = Field(default=None, max_length=128)
    assigned_at: datetime | None = None
    redeemed_at: datetime | None = None
    #: The order it was redeemed with, when the redemption import says.
    order_id: str | None = Field(default=None, max_length=128)
    #: When it was imported; NULL for a generated code (made when assigned).
    imported_at: datetime | None = None


# Referrals


class ReferralCode(SQLModel, table=True):
    """A customer's referral code, written the first time it is shown (a message, ``nurture
    referrals code``) so a sign-up carrying it can be traced back to its holder.

    The code is derived from ``origin_id`` under the installation secret
    (:mod:`campaigns.customers.loyalty.referrals`), so it is the same whenever it is
    computed; stored, it stays valid even if the secret changes. A merge moves the merged
    customer's code to the survivor, so both codes then name the survivor."""

    __tablename__ = "referral_code"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(sa_column=sa.Column(sa.String(32), nullable=False, unique=True))
    #: Who holds it now (the survivor, after a merge).
    customer_id: int = Field(foreign_key="customer.id", index=True, ondelete="CASCADE")
    #: The customer it was derived from: one code per customer.
    origin_id: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, unique=True))
    issued_at: datetime


class Referral(SQLModel, table=True):
    """A sign-up that carried a referral code: who referred whom, through which channel, and
    what came of it. One row per sign-up event that carried a code (``event_id`` UNIQUE, so a
    replay records nothing twice), refused ones included with their reason; a customer has
    one referrer at most (the partial UNIQUE index over the rows not refused).

    ``pending -> rewarded`` when the referee's first paid order arrives (or at sign-up, per
    ``[loyalty.referrals] reward_on``), ``rewarded -> reversed`` if that order is refunded;
    ``refused`` from the start (unknown or mistyped code, self-referral, a loop, a referee
    already referred)."""

    __tablename__ = "referral"
    __table_args__ = (
        sa.Index("uq_referral_referee", "referee_id", unique=True,
                 postgresql_where=sa.text("status <> 'refused'"), sqlite_where=sa.text("status <> 'refused'")),
        # What the reward pass reads: the live referrals still waiting for a first paid order.
        sa.Index("ix_referral_unconverted", "referee_id",
                 postgresql_where=sa.text("converted_at IS NULL AND status <> 'refused'"),
                 sqlite_where=sa.text("converted_at IS NULL AND status <> 'refused'")),
        # What refunds read: the referrals a refunded order had rewarded.
        sa.Index("ix_referral_order", "order_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    #: The sign-up event's row id.
    event_id: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, unique=True))
    #: The code's holder; NULL when the code named nobody.
    referrer_id: int | None = Field(default=None, foreign_key="customer.id", index=True, ondelete="CASCADE")
    referee_id: int = Field(foreign_key="customer.id", ondelete="CASCADE")
    #: The code as the sign-up carried it (normalised).
    code: str = Field(max_length=64)
    #: The sign-up event's ``channel`` property, else the referee's acquisition channel.
    channel: str | None = Field(default=None, max_length=32)
    #: When the referee signed up (the event's time).
    referred_at: datetime
    #: pending, rewarded, reversed or refused.
    status: str = Field(max_length=16)
    #: Why it was refused: unknown_code, mistyped_code, self_referral, loop, already_referred.
    reason: str | None = Field(default=None, max_length=32)
    #: The referee's first paid order (the one that rewarded the referrer) and when it was placed.
    order_id: str | None = Field(default=None, max_length=128)
    converted_at: datetime | None = None
    rewarded_at: datetime | None = None
    reversed_at: datetime | None = None
    recorded_at: datetime


# Products and recommendations (docs/recommendations.md)


class Product(SQLModel, table=True):
    """One product of the catalogue (``nurture import products``), upserted by ``sku``.
    Order items name products by ``sku``; an item whose sku is not in the catalogue is kept
    and reported by the import, not dropped."""

    __tablename__ = "product"

    id: int | None = Field(default=None, primary_key=True)
    sku: str = Field(sa_column=sa.Column(sa.String(128), nullable=False, unique=True))
    name: str = Field(max_length=256)
    category: str | None = Field(default=None, max_length=128, index=True)
    price: float | None = Field(default=None, sa_column=sa.Column(sa.Numeric(14, 2, asdecimal=False), nullable=True))
    url: str | None = Field(default=None, max_length=2048)
    image_url: str | None = Field(default=None, max_length=2048)
    in_stock: bool = Field(default=True, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.true()))
    #: Any other column of the import.
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    created_at: datetime
    updated_at: datetime


class ProductAssociation(SQLModel, table=True):
    """Item-to-item co-purchase, as the last refresh measured it: customers who bought
    ``antecedent`` and later bought ``consequent``, with support (how many such customers),
    confidence and lift (confidence over the consequent's base rate: above 1 means more
    likely than for anyone), kept only above the configured minimum support."""

    __tablename__ = "product_association"

    antecedent: str = Field(sa_column=sa.Column(sa.String(128), primary_key=True))
    consequent: str = Field(sa_column=sa.Column(sa.String(128), primary_key=True))
    support: int
    confidence: float
    lift: float
    computed_at: datetime


class Recommendation(SQLModel, table=True):
    """A customer's recommended products, best first (``rank`` from 1), as the last refresh
    wrote them; what templates read with ``recommendations(n=, category=)``.

    No foreign key to ``customer``: the table is derived and rewritten whole by each
    refresh, which keeps only customers that exist; the key's per-row check was most of
    the time the live table's insert took (migration 0014). A merge removes the merged
    customer's rows itself."""

    __tablename__ = "recommendation"

    customer_id: int = Field(sa_column=sa.Column(sa.Integer, primary_key=True, autoincrement=False))
    rank: int = Field(sa_column=sa.Column(sa.Integer, primary_key=True, autoincrement=False))
    sku: str = Field(max_length=128)
    category: str | None = Field(default=None, max_length=128)
    score: float
    #: co_purchase, category or popular: which signal put it there.
    reason: str = Field(max_length=32)
    #: For co_purchase: the bought product it follows from.
    because_sku: str | None = Field(default=None, max_length=128)
    computed_at: datetime


class RecommendationSent(SQLModel, table=True):
    """A product a message showed, one row per (delivery, sku), written when the message is
    rendered for sending: what the "recently sent category" exclusion reads, and what
    attribution joins clicks and orders to.

    No foreign keys: written three to a message in the worker's record transaction, the
    keys' per-row checks were most of that insert's time (migration 0015). Rows are
    written only for the deliveries the same transaction marks sent; deliveries are never
    deleted, and a merge re-points the merged customer's rows before removing it."""

    __tablename__ = "recommendation_sent"
    __table_args__ = (
        sa.UniqueConstraint("delivery_id", "sku", name="uq_recommendation_sent_delivery_sku"),
        sa.Index("ix_recommendation_sent_customer_sent", "customer_id", "sent_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int
    customer_id: int
    campaign: str = Field(max_length=128)
    sku: str = Field(max_length=128)
    category: str | None = Field(default=None, max_length=128)
    #: Its place in the message, from 1.
    position: int
    reason: str = Field(max_length=32)
    sent_at: datetime


# Feedback: surveys, reply classification and staff alerts (docs/feedback.md)


class Feedback(SQLModel, table=True):
    """A customer's answer to a survey step (NPS 0-10 or CSAT 1-5), one row per delivery
    (``delivery_id`` UNIQUE): the first score parsed from a reply or a one-click link is
    kept, later ones are not; free text is kept beside it. ``band`` (detractor, passive,
    promoter) is decided when the score is recorded, by the configured thresholds.
    ``stage`` and ``segment`` are the customer's at that moment, for the report."""

    __tablename__ = "feedback"
    __table_args__ = (sa.Index("ix_feedback_received", "received_at"),)

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(sa_column=sa.Column(
        sa.Integer, sa.ForeignKey("delivery.id", ondelete="CASCADE"), nullable=False, unique=True))
    customer_id: int = Field(foreign_key="customer.id", index=True, ondelete="CASCADE")
    campaign: str = Field(max_length=128)
    channel: str = Field(max_length=64)
    #: nps or csat.
    question: str = Field(max_length=8)
    score: int | None = None
    #: detractor, passive or promoter; NULL until there is a score.
    band: str | None = Field(default=None, max_length=16)
    text: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    #: reply or click: where the score came from.
    source: str | None = Field(default=None, max_length=16)
    stage: str | None = Field(default=None, max_length=32)
    segment: str | None = Field(default=None, max_length=64)
    received_at: datetime
    scored_at: datetime | None = None
    #: When staff answered the customer (a detractor's follow-up), and who or what did.
    answered_at: datetime | None = None
    answered_by: str | None = Field(default=None, max_length=128)
    #: The ``replied`` responses already read into this row (their score or their text),
    #: so each reply is read once, however many passes see it.
    reply_ids: list[int] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False, default=list))
    #: The highest of ``reply_ids``: where the next pass over the replies starts looking
    #: (less a margin), so a tick reads the recent responses by primary key.
    last_reply_id: int | None = Field(default=None, index=True)


class ReplyLabel(SQLModel, table=True):
    """The class of an inbound reply that was not an opt-out (question, complaint,
    positive, other), by the first matching keyword rule; one per reply response (whose
    ``customer_id`` says whose reply it is, so a merge moves it with the response)."""

    __tablename__ = "reply_label"

    response_id: int = Field(sa_column=sa.Column(
        sa.Integer, sa.ForeignKey("response.id", ondelete="CASCADE"), primary_key=True, autoincrement=False))
    label: str = Field(max_length=16)
    #: The rule that matched (its name), NULL for ``other``.
    rule: str | None = Field(default=None, max_length=64)
    classified_at: datetime


class StaffAlert(SQLModel, table=True):
    """An alert to a staff channel (WeCom robot or webhook): a detractor's score or a
    complaint. In this ledger before it is sent, keyed by ``alert_key`` (UNIQUE:
    ``feedback:<id>``, ``reply:<response id>``), so it is sent once and never lost:
    ``queued -> sent``, or ``failed`` after the last attempt, with the error."""

    __tablename__ = "staff_alert"
    __table_args__ = (
        sa.Index("ix_staff_alert_queued", "id",
                 postgresql_where=sa.text("status = 'queued'"), sqlite_where=sa.text("status = 'queued'")),
    )

    id: int | None = Field(default=None, primary_key=True)
    alert_key: str = Field(sa_column=sa.Column(sa.String(128), nullable=False, unique=True))
    #: The staff channel's name in config.
    channel: str = Field(max_length=64)
    #: detractor or complaint.
    kind: str = Field(max_length=16)
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True, ondelete="CASCADE")
    #: What the alert says: customer, score, text, campaign.
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    #: queued, sent or failed.
    status: str = Field(default="queued", max_length=16)
    attempts: int = 0
    error: str | None = Field(default=None, max_length=512)
    created_at: datetime
    sent_at: datetime | None = None
    #: A queued alert is not sent before this: the end of a sender's lease while it is
    #: being sent (a crashed sender's alert is taken again after it), then the retry's
    #: backoff. NULL: due at once.
    due_at: datetime | None = None


# Purchase predictions (docs/predictions.md)


class PredictionFit(SQLModel, table=True):
    """One fit of the purchase models on every buyer's history as of a day: BG/NBD
    (r, alpha, a, b; weeks) and Gamma-Gamma (p, q, v), their log-likelihoods and sample
    sizes. ``status`` ``fitted`` is a fit the scores may use (the latest one is current);
    ``not_converged`` and ``too_few`` are kept to say why the previous fit stayed."""

    __tablename__ = "prediction_fit"

    id: int | None = Field(default=None, primary_key=True)
    #: The last day of the purchase history fitted (UTC, inclusive).
    as_of: date = Field(sa_column=sa.Column(sa.Date, nullable=False, index=True))
    fitted_at: datetime
    #: fitted, not_converged or too_few.
    status: str = Field(max_length=16)
    #: Buyers in the history, and those with at least one repeat purchase day.
    customers: int
    repeaters: int
    #: BG/NBD parameters {"r", "alpha", "a", "b"} (NULL when not fitted).
    bgnbd: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))
    bgnbd_log_likelihood: float | None = None
    #: Gamma-Gamma parameters {"p", "q", "v"} and the customers they were fitted on
    #: (repeaters whose repeat purchases had a value).
    gamma_gamma: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))
    gamma_gamma_log_likelihood: float | None = None
    gamma_gamma_customers: int = 0
    #: Why a fit is not usable, or what was left out (the optimiser's message).
    message: str | None = Field(default=None, max_length=512)
