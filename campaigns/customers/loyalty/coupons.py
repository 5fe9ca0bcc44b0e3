"""Coupons: one unique code per message, assigned once per send key, never twice.

A campaign with a ``coupon`` (:mod:`campaigns.config.coupons`) gives each of its messages
a code when the worker is about to render it (``workers/jobs/delivery.py``):

* from an **imported pool** (``nurture import coupons FILE --pool NAME``,
  :mod:`campaigns.customers.loyalty.coupon_imports`): one UPDATE per message claims the
  pool's next ``available`` row by stamping it with the delivery's send key, guarded by
  ``status = 'available'`` (and, on PostgreSQL, ``FOR UPDATE SKIP LOCKED``, so concurrent
  workers take different rows without waiting for each other) and by "this send key
  holds no coupon yet";
* **generated** (:mod:`campaigns.customers.loyalty.coupon_codes`): the code is a keyed
  function of the pool and the send key, inserted as an ``assigned`` row with
  ``ON CONFLICT DO NOTHING``.

``coupon.send_key`` is UNIQUE, so whatever races (a lease taken over, two workers) a send
key holds one coupon at most: a retry, or the second worker, reads back the coupon it
already has, and two messages never share one. When an imported pool has no code left the
message is not sent: the worker answers ``halt`` for it, so it stays ``queued`` and its
campaign is paused with the reason (:func:`dry_pool_reason`), shown by ``nurture status``
and ``nurture campaigns``; importing more codes and ``nurture resume`` sends it.

Redemptions (imported, :mod:`~campaigns.customers.loyalty.coupon_imports`) mark a coupon
``redeemed`` once; a campaign whose goal is ``coupon_redeemed`` counts the redemption of
the coupon its message carried as a conversion (:func:`coupon_redeemed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.config.campaigns import CampaignConfig
from campaigns.config.keys import derive_key, installation_secret
from campaigns.config.schema import AppConfig
from campaigns.customers.loyalty.coupon_codes import CODE_PURPOSE, MAX_ATTEMPTS, generated_code
from campaigns.store.chunks import chunks
from campaigns.store.db import dialect_insert
from campaigns.store.models import Coupon, Delivery

#: Coupon states, in order.
STATUSES = ("available", "assigned", "redeemed")
#: The code templates see at ``nurture check``, in a preview and in a test send, for a
#: campaign drawing from an imported pool (none of the pool's codes is used up by them).
SAMPLE_POOL_CODE = "SAMPLE-COUPON"
#: Rounds of assignment before a batch gives up (a round is lost only to a concurrent
#: worker taking the same codes, or to a generated code another message already has).
ROUNDS = MAX_ATTEMPTS
#: Transactions tried when UNIQUE send_key refuses a coupon another worker just gave the
#: same send key.
CONFLICT_ROUNDS = 3

_COUPON = Coupon.__table__
#: ``status = 'available'`` as a literal, so PostgreSQL's planner matches the partial index.
_AVAILABLE = sa.literal_column("'available'")


@dataclass(frozen=True)
class AssignedCoupon:
    """The coupon one message carries: ``{{ coupon.code }}`` and ``{{ coupon.pool }}``."""

    code: str
    pool: str

    def as_context(self) -> dict[str, str]:
        """What templates see as ``coupon``."""
        return {"code": self.code, "pool": self.pool}


@dataclass(frozen=True)
class CodeGenerator:
    """How a campaign generates codes: the key, the prefix and the body's length."""

    key: bytes = field(repr=False)
    prefix: str
    length: int

    def code(self, *, pool: str, send_key: str, attempt: int) -> str:
        """The ``attempt``-th candidate code for ``send_key``."""
        return generated_code(self.key, pool=pool, send_key=send_key, prefix=self.prefix, length=self.length,
                              attempt=attempt)


@dataclass(frozen=True)
class CouponRequest:
    """One message asking for its coupon."""

    send_key: str
    customer_id: int
    campaign: str
    pool: str
    #: Generated codes; None draws from the imported pool.
    generator: CodeGenerator | None = None


class Message(Protocol):
    """What coupon assignment reads of a claimed delivery (campaigns.sending.ledger.ClaimedDelivery)."""

    @property
    def id(self) -> int: ...
    @property
    def send_key(self) -> str: ...
    @property
    def campaign(self) -> str: ...
    @property
    def step(self) -> int: ...
    @property
    def customer(self) -> dict[str, Any]: ...


@dataclass
class CouponBatch:
    """A batch's coupons by delivery id, and the deliveries that cannot get one (and why:
    the pool is dry, or generated codes lack the installation secret)."""

    assigned: dict[int, AssignedCoupon] = field(default_factory=dict)
    halted: dict[int, str] = field(default_factory=dict)


def dry_pool_reason(pool: str, campaign: str) -> str:
    """Why a campaign was paused when its pool ran dry, and what to do about it."""
    return (f"coupon pool {pool!r} has no codes left: import more (nurture import coupons FILE --pool {pool}), "
            f"then nurture resume {campaign}")


def code_generator(config: AppConfig, campaign: CampaignConfig) -> CodeGenerator | None:
    """The generator of ``campaign``'s codes; None when the installation secret is unset
    (generated codes are keyed with it: without it nothing can be generated)."""
    coupon = campaign.coupon
    if coupon is None or coupon.generate is None:
        raise ValueError(f"campaign {campaign.name!r} does not generate coupon codes")
    secret = installation_secret(config)
    if secret is None:
        return None
    return CodeGenerator(key=derive_key(secret, CODE_PURPOSE), prefix=coupon.generate, length=coupon.length)


def coupons_for_batch(engine: Engine, config: AppConfig, deliveries: Sequence[Message], *,
                      now: datetime) -> CouponBatch:
    """Assign the coupons of the claimed ``deliveries`` whose campaign has a ``coupon``,
    in one transaction; a delivery that already holds one (a retry) gets it back."""
    batch = CouponBatch()
    campaigns = {c.name: c for c in config.campaigns if c.coupon is not None}
    generators: dict[str, CodeGenerator | None] = {}
    requests: dict[int, CouponRequest] = {}
    for delivery in deliveries:
        campaign = campaigns.get(delivery.campaign)
        if campaign is None or campaign.coupon is None or not campaign.coupon.carries(delivery.step):
            continue
        generator = None
        if campaign.coupon.generated:
            if campaign.name not in generators:
                generators[campaign.name] = code_generator(config, campaign)
            generator = generators[campaign.name]
            if generator is None:
                batch.halted[delivery.id] = (f"{config.security.secret_env} is not set (or too short): "
                                             "generated coupon codes are keyed with the installation secret")
                continue
        requests[delivery.id] = CouponRequest(
            send_key=delivery.send_key, customer_id=delivery.customer["id"], campaign=campaign.name,
            pool=campaign.coupon.pool_name(campaign.name), generator=generator)
    found = assign_coupons(engine, list(requests.values()), now=now)
    for delivery_id, request in requests.items():
        coupon = found.get(request.send_key)
        if coupon is None:
            batch.halted[delivery_id] = dry_pool_reason(request.pool, request.campaign)
        else:
            batch.assigned[delivery_id] = coupon
    return batch


def assign_coupons(engine: Engine, requests: Sequence[CouponRequest], *,
                   now: datetime) -> dict[str, AssignedCoupon | None]:
    """The coupon of each request's send key, assigning one where it has none yet; None
    for a send key whose imported pool has no code left. One transaction.

    Raises:
        RuntimeError: no round settled every request (workers racing for the last codes
            for longer than :data:`ROUNDS` rounds); nothing was sent, the job is retried.
    """
    if not requests:
        return {}
    for round_ in range(CONFLICT_ROUNDS):
        try:
            with engine.begin() as conn:
                return _assign(conn, {request.send_key: request for request in requests}, now=now)
        except sa.exc.IntegrityError:
            # Another worker assigned one of these send keys meanwhile (a lease taken over,
            # PostgreSQL): UNIQUE send_key refused the second coupon; the next round reads
            # the one that worker assigned.
            if round_ == CONFLICT_ROUNDS - 1:
                raise
    raise AssertionError("unreachable")


def _assign(conn: Connection, requests: dict[str, CouponRequest], *, now: datetime) -> dict[str, AssignedCoupon | None]:
    result: dict[str, AssignedCoupon | None] = {}
    pending = dict(requests)
    for attempt in range(ROUNDS):
        # Writes first: on SQLite a transaction that read first could not write once a
        # worker had written.
        generated = [r for r in pending.values() if r.generator is not None]
        if generated:
            conn.execute(
                dialect_insert(conn, _COUPON)
                .values([{
                    "pool": r.pool, "code": r.generator.code(pool=r.pool, send_key=r.send_key, attempt=attempt),
                    "status": "assigned", "send_key": r.send_key, "customer_id": r.customer_id,
                    "campaign": r.campaign, "assigned_at": now,
                } for r in generated if r.generator is not None])
                # A send key that holds a coupon keeps it; a code another message holds
                # is skipped, and the next attempt tries the next candidate.
                .on_conflict_do_nothing()
            )
        for request in pending.values():
            if request.generator is None:
                conn.execute(_claim_statement(request, now=now))
        found = _held(conn, list(pending))
        result.update(found)
        pending = {key: request for key, request in pending.items() if key not in found}
        drawn = {request.pool for request in pending.values() if request.generator is None}
        left = _pools_with_codes(conn, drawn)
        for key, request in list(pending.items()):
            if request.generator is None and request.pool not in left:
                result[key] = None
                del pending[key]
        if not pending:
            return result
    raise RuntimeError(f"{len(pending)} coupon(s) could not be assigned in {ROUNDS} rounds; the job is retried")


def _claim_statement(request: CouponRequest, *, now: datetime) -> Any:
    """Stamp the pool's next available code with the request's send key, unless that send
    key already holds a coupon."""
    held = _COUPON.alias("held")
    pick = (
        sa.select(_COUPON.c.id)
        .where(_COUPON.c.pool == request.pool, _COUPON.c.status == _AVAILABLE)
        .order_by(_COUPON.c.id)
        .limit(1)
        # Concurrent workers (PostgreSQL) take different rows instead of queueing on one;
        # SQLite has one writer at a time and ignores it.
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return (
        sa.update(_COUPON)
        .where(_COUPON.c.id == pick, _COUPON.c.status == _AVAILABLE,
               ~sa.exists().where(held.c.send_key == request.send_key))
        .values(status="assigned", send_key=request.send_key, customer_id=request.customer_id,
                campaign=request.campaign, assigned_at=now)
    )


def _held(conn: Connection, send_keys: list[str]) -> dict[str, AssignedCoupon | None]:
    found: dict[str, AssignedCoupon | None] = {}
    for chunk in chunks(send_keys):
        for send_key, code, pool in conn.execute(
            sa.select(_COUPON.c.send_key, _COUPON.c.code, _COUPON.c.pool).where(_COUPON.c.send_key.in_(chunk))
        ):
            found[send_key] = AssignedCoupon(code=code, pool=pool)
    return found


def _pools_with_codes(conn: Connection, pools: set[str]) -> set[str]:
    if not pools:
        return set()
    return set(conn.execute(
        sa.select(_COUPON.c.pool).where(_COUPON.c.pool.in_(sorted(pools)), _COUPON.c.status == _AVAILABLE)
        .group_by(_COUPON.c.pool)).scalars())


def sample_coupon(campaign: CampaignConfig, *, step: int) -> AssignedCoupon | None:
    """The coupon ``nurture check``, previews and test sends render ``campaign``'s ``step``
    with (None when its messages carry none): the shape of a real code, and none of the
    pool's used up."""
    coupon = campaign.coupon
    if coupon is None or not coupon.carries(step):
        return None
    pool = coupon.pool_name(campaign.name)
    if coupon.generate is None:
        return AssignedCoupon(code=SAMPLE_POOL_CODE, pool=pool)
    # A fixed, public key: a sample is never a code any message carries.
    sample = CodeGenerator(key=b"nurture-sample-coupon", prefix=coupon.generate, length=coupon.length)
    return AssignedCoupon(code=sample.code(pool=pool, send_key="sample", attempt=0), pool=pool)


def coupon_redeemed(enrollment: sa.Table, *, until: Any, deadline: Any | None = None) -> sa.ColumnElement[bool]:
    """SQL: the enrolment's customer redeemed a coupon one of its messages carried, after
    enrolling, by ``until`` (and ``deadline``, an SQL expression, when given): the
    ``coupon_redeemed`` goal. Correlates with ``enrollment`` (the table, or an alias)."""
    delivery = Delivery.__table__
    conditions = [
        delivery.c.enrollment_id == enrollment.c.id,
        _COUPON.c.status == "redeemed",
        _COUPON.c.redeemed_at > enrollment.c.enrolled_at,
        _COUPON.c.redeemed_at <= until,
    ]
    if deadline is not None:
        conditions.append(_COUPON.c.redeemed_at <= deadline)
    return sa.exists(
        sa.select(sa.literal(1))
        .select_from(_COUPON.join(delivery, delivery.c.send_key == _COUPON.c.send_key))
        .where(*conditions)
    )


@dataclass(frozen=True)
class PoolStatus:
    """One pool's codes by state, and the campaigns that use it."""

    pool: str
    available: int
    assigned: int
    redeemed: int
    #: Campaigns of config.toml drawing from it or generating into it.
    campaigns: tuple[str, ...] = ()
    #: Codes are generated into it (by one of ``campaigns``) rather than imported.
    generated: bool = False

    @property
    def total(self) -> int:
        """Every code of the pool."""
        return self.available + self.assigned + self.redeemed

    @property
    def dry(self) -> bool:
        """An imported pool a campaign draws from that has no code left."""
        return bool(self.campaigns) and not self.generated and self.available == 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (``nurture coupons --json``)."""
        return {"pool": self.pool, "available": self.available, "assigned": self.assigned,
                "redeemed": self.redeemed, "total": self.total, "campaigns": list(self.campaigns),
                "generated": self.generated, "dry": self.dry}


def pool_statuses(engine: Engine, config: AppConfig) -> list[PoolStatus]:
    """Every pool in the database or named by a campaign, by name: its codes per state."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(_COUPON.c.pool, _COUPON.c.status, sa.func.count()).group_by(_COUPON.c.pool, _COUPON.c.status)
        ).all()
    counts: dict[str, dict[str, int]] = {}
    for pool, status, count in rows:
        counts.setdefault(pool, {})[status] = int(count)
    users: dict[str, list[str]] = {}
    generated: set[str] = set()
    for campaign in config.campaigns:
        if campaign.coupon is None:
            continue
        pool = campaign.coupon.pool_name(campaign.name)
        users.setdefault(pool, []).append(campaign.name)
        if campaign.coupon.generated:
            generated.add(pool)
    return [
        PoolStatus(pool=pool, available=counts.get(pool, {}).get("available", 0),
                   assigned=counts.get(pool, {}).get("assigned", 0), redeemed=counts.get(pool, {}).get("redeemed", 0),
                   campaigns=tuple(users.get(pool, ())), generated=pool in generated)
        for pool in sorted({*counts, *users})
    ]


__all__ = [
    "SAMPLE_POOL_CODE",
    "STATUSES",
    "AssignedCoupon",
    "CodeGenerator",
    "CouponBatch",
    "CouponRequest",
    "Message",
    "PoolStatus",
    "assign_coupons",
    "code_generator",
    "coupon_redeemed",
    "coupons_for_batch",
    "dry_pool_reason",
    "pool_statuses",
    "sample_coupon",
]
