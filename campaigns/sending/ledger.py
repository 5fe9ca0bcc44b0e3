"""The delivery ledger's state changes, each one batched into a single transaction.

::

    queued --claim--> sending --ok--> sent
                          |--retry/defer/halt--> queued (later due_at)
                          |--permanent--> failed
                          `--suppress--> suppressed (+ suppression row)

A worker *claims* rows by stamping them with a fresh token in one UPDATE guarded by
``status = 'queued'``: two jobs carrying the same ids (a duplicated or re-enqueued message)
cannot both claim a row, so a row is sent at most once per claim. Results are written
only where the token still matches.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.audience.selection import order_facts
from campaigns.config.schema import AppConfig
from campaigns.config.vocabulary import CHANNEL_FAMILY
from campaigns.customers.masking import mask_text
from campaigns.sending.messages import Outcome, SendResult
from campaigns.sending.policy import Skip
from campaigns.sending.recommendationcontext import ShownProduct, shown_rows
from campaigns.store.bulk import insert_rows
from campaigns.store.db import COUNT_ROWS, dialect_insert
from campaigns.store.models import (
    CampaignState,
    Customer,
    Delivery,
    DeliveryAttempt,
    Enrollment,
    RecommendationSent,
    Suppression,
    utcnow,
)

_CUSTOMER_FIELDS = (
    "id", "external_id", "name", "email", "phone", "wechat_openid", "timezone", "locale",
    "acquisition_channel", "created_at", "attributes",
)


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery this worker now holds, with what rendering and addressing need."""

    id: int
    send_key: str
    campaign: str
    step: int
    channel: str
    template: str
    attempts: int
    customer: dict[str, Any]
    stats: dict[str, Any]
    enrollment_id: int | None = None
    #: A test send (see campaigns.sending.testsends): sent once to the marketer's address.
    is_test: bool = False
    #: When the row fell due (None: not in the ledger, as a preview's, so due now); the
    #: frequency caps rank a batch's messages by it.
    due_at: datetime | None = None


@dataclass
class Claim:
    """The rows one job claimed under one token."""

    token: str
    deliveries: list[ClaimedDelivery] = field(default_factory=list)


def paused_campaigns(engine: Engine) -> set[str]:
    """Names of paused campaigns (by hand, or by a ``halt`` outcome)."""
    with engine.connect() as conn:
        return set(conn.execute(sa.select(CampaignState.campaign).where(CampaignState.paused)).scalars())


def requeue_expired_leases(engine: Engine, *, now: datetime) -> int:
    """Put ``sending`` rows whose worker vanished (lease over) back in the queue."""
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(Delivery)
            .where(Delivery.status == "sending", Delivery.lease_until < now)
            # A test send is never sent again: queued, a worker would have only the
            # customer's own address to send it to.
            .values(status=sa.case((Delivery.is_test, "failed"), else_="queued"), claim_token=None,
                    dispatch_after=now, updated_at=now,
                    last_error="lease expired: worker stopped before recording an outcome")
        )
        return result.rowcount


def dispatchable_batches(
    engine: Engine, *, now: datetime, lease: timedelta, batch_size: int, page_size: int = 5000
) -> Iterator[list[int]]:
    """Yield id batches of queued rows whose ``dispatch_after`` has come, marking each page
    as handed to the broker (``dispatch_after = now + lease``: if the broker loses the job,
    the row is dispatched again after the lease).

    Reads the partial index on queued rows in ``(dispatch_after, id)`` order with keyset
    pagination, so a tick costs what it dispatches however large the backlog, and memory
    stays flat. Rows of paused campaigns stay where they are.
    """
    last: tuple[datetime, int] | None = None
    dispatch_type = Delivery.__table__.c.dispatch_after.type
    while True:
        # Read a page, then mark it in a transaction of its own that starts with the write:
        # on SQLite a transaction that reads first cannot upgrade to a write once a worker
        # has written. The mark repeats the page's condition, so a row claimed meanwhile
        # is left alone (and enqueuing it anyway is harmless: its job finds nothing to claim).
        with engine.connect() as conn:
            query = (
                sa.select(Delivery.id, Delivery.dispatch_after, Delivery.campaign)
                .where(Delivery.status == "queued", Delivery.dispatch_after <= now)
                .order_by(Delivery.dispatch_after, Delivery.id)
                .limit(page_size)
            )
            if last is not None:
                query = query.where(
                    sa.tuple_(Delivery.dispatch_after, Delivery.id)
                    > sa.tuple_(sa.literal(last[0], type_=dispatch_type), sa.literal(last[1]))
                )
            rows = conn.execute(query).all()
            # Read after the page, in the same connection: a job's halt pauses the campaign
            # and requeues its row in one transaction while this tick pages, so a page
            # holding that row is always read with the pause beside it.
            paused = set(conn.execute(sa.select(CampaignState.campaign).where(CampaignState.paused)).scalars())
        if not rows:
            return
        last = (rows[-1].dispatch_after, rows[-1].id)
        ids = [row.id for row in rows if row.campaign not in paused]
        if ids:
            with engine.begin() as conn:
                conn.execute(
                    sa.update(Delivery)
                    .where(Delivery.id.in_(ids), Delivery.status == "queued", Delivery.dispatch_after <= now)
                    .values(dispatch_after=now + lease)
                )
        for start in range(0, len(ids), batch_size):
            yield ids[start : start + batch_size]


def run_batches(engine: Engine, run_id: int, *, now: datetime, batch_size: int) -> Iterator[list[int]]:
    """Yield id batches of a freshly planned run's due rows, read-only and in one pass.

    Planning already set these rows' ``dispatch_after`` past this tick, so they need no
    marking; a server-side cursor streams them so a million-row run is never in memory.
    """
    query = sa.select(Delivery.id).where(
        Delivery.run_id == run_id, Delivery.status == "queued", Delivery.due_at <= now
    )
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch_size * 20).execute(query)
        for partition in result.scalars().partitions(batch_size):
            yield list(partition)


def claim(engine: Engine, ids: Sequence[int], *, now: datetime, lease: timedelta, tests: bool = False) -> Claim:
    """Claim the still-queued, due rows among ``ids`` and load their customers.

    ``tests`` claims test sends only, and only then: a worker (``tests=False``) never
    holds one, so a test message cannot reach the customer whose data it was rendered with.
    """
    token = str(uuid.uuid4())
    result = Claim(token=token)
    # A paused campaign's rows wait, even those enqueued before the pause
    # (campaigns.sending.control); a test send is the marketer's and goes.
    held = [] if tests else [
        Delivery.campaign.not_in(sa.select(CampaignState.campaign).where(CampaignState.paused))
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.update(Delivery)
            .where(Delivery.id.in_(list(ids)), Delivery.status == "queued", Delivery.due_at <= now,
                   Delivery.is_test.is_(tests), *held)
            .values(
                status="sending",
                claim_token=token,
                lease_until=now + lease,
                attempts=Delivery.attempts + 1,
                updated_at=now,
            )
        )
        rows = conn.execute(
            sa.select(Delivery, *[getattr(Customer, name).label(f"c_{name}") for name in _CUSTOMER_FIELDS])
            .join(Customer, Customer.id == Delivery.customer_id)
            .where(Delivery.claim_token == token)
            .order_by(Delivery.id)
        ).all()
        if not rows:
            return result
        customer_ids = sorted({row.customer_id for row in rows})
        facts = order_facts(customer_ids)
        stats = {
            row.customer_id: {
                "orders_count": row.orders_count,
                "total_spent": float(row.total_spent or 0),
                "last_order_at": row.last_order_at,
            }
            for row in conn.execute(sa.select(facts))
        }
    for row in rows:
        customer = {name: getattr(row, f"c_{name}") for name in _CUSTOMER_FIELDS}
        result.deliveries.append(
            ClaimedDelivery(
                id=row.id,
                send_key=row.send_key,
                campaign=row.campaign,
                step=row.step,
                channel=row.channel,
                template=row.template,
                attempts=row.attempts,
                enrollment_id=row.enrollment_id,
                is_test=row.is_test,
                due_at=row.due_at,
                customer=customer,
                stats=stats.get(row.customer_id, {"orders_count": 0, "total_spent": 0.0, "last_order_at": None}),
            )
        )
    return result


def release(engine: Engine, claim_: Claim, *, now: datetime) -> int:
    """Hand a claim's rows back to the queue untouched: the job failed before sending any
    of them, so the claim is undone (attempts included) and they are due again at once."""
    with engine.begin() as conn:
        result = conn.execution_options(**COUNT_ROWS).execute(
            sa.update(Delivery)
            .where(Delivery.claim_token == claim_.token, Delivery.status == "sending")
            .values(status="queued", claim_token=None, lease_until=None, attempts=Delivery.attempts - 1,
                    dispatch_after=now, updated_at=now)
        )
        return result.rowcount


def backoff(attempt: int, *, base: timedelta, cap: timedelta, retry_after_s: float | None = None) -> timedelta:
    """Full-jitter exponential backoff; a provider's Retry-After wins when given."""
    if retry_after_s is not None:
        return timedelta(seconds=max(0.0, retry_after_s))
    ceiling = min(cap.total_seconds(), base.total_seconds() * (2 ** max(0, attempt - 1)))
    return timedelta(seconds=random.uniform(0, ceiling))


@dataclass(frozen=True)
class Recorded:
    """What recording a batch decided: ids to retry (with their delay) and halted campaigns."""

    retries: list[tuple[int, timedelta]]
    halted: dict[str, str]
    counts: dict[str, int]


def record(
    engine: Engine,
    config: AppConfig,
    claim_: Claim,
    results: dict[int, tuple[SendResult, datetime, datetime]],
    *,
    skips: dict[int, Skip] | None = None,
    now: datetime | None = None,
    shown: dict[int, Sequence[ShownProduct]] | None = None,
) -> Recorded:
    """Write every attempt and every status change of one claimed batch in one transaction.

    ``results`` maps delivery id to (result, started_at, finished_at); ``skips`` the rows
    the send-time policy stopped (no provider call, no attempt). Rows whose claim was lost
    (lease expired and taken by another worker) are left alone. Enrolments end here: on a
    goal or an unsubscribe, or as completed when their last step is final. ``shown`` maps
    a delivery id to the recommended products its message showed: a message sent (not a
    test send) writes one ``recommendation_sent`` row per product, once per (delivery,
    sku) however often it is recorded.
    """
    now = now or utcnow()
    by_id = {delivery.id: delivery for delivery in claim_.deliveries}
    attempts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    suppressions: list[dict[str, Any]] = []
    retries: list[tuple[int, timedelta]] = []
    halted: dict[str, str] = {}
    counts: dict[str, int] = {}
    recommended: list[dict[str, Any]] = []
    worker = config.worker
    for delivery_id, (result, started_at, finished_at) in results.items():
        delivery = by_id[delivery_id]
        counts[result.outcome.value] = counts.get(result.outcome.value, 0) + 1
        if result.error:
            # Channels keep their errors PII-free; this is the last line of defence for a
            # provider that echoes the recipient in a message nobody anticipated.
            result = replace(result, error=mask_text(result.error))
        attempts.append(
            {
                "delivery_id": delivery_id,
                "attempt": delivery.attempts,
                "outcome": result.outcome.value,
                "code": result.code,
                "error": (result.error or None) and result.error[:1000],
                "provider_message_id": result.provider_message_id,
                "started_at": started_at,
                "finished_at": finished_at,
            }
        )
        change: dict[str, Any] = {"b_id": delivery_id, "claim_token": None, "lease_until": None, "updated_at": now}
        if delivery.is_test and result.outcome is not Outcome.OK:
            # A test send is tried once and says why it failed: no retry (nobody would send
            # it again), no suppression or paused campaign (the address is not a customer's).
            change.update(status="failed", last_error=result.error)
        elif result.outcome is Outcome.OK:
            change.update(status="sent", sent_at=finished_at, provider_message_id=result.provider_message_id,
                          last_error=None)
            if shown and not delivery.is_test:
                recommended += shown_rows(delivery, shown.get(delivery_id, ()), sent_at=finished_at)
        elif result.outcome is Outcome.RETRY and delivery.attempts < worker.channel_max_attempts.get(
            delivery.channel, worker.max_attempts
        ):
            delay = backoff(delivery.attempts, base=worker.backoff_base, cap=worker.backoff_cap,
                            retry_after_s=result.retry_after_s)
            # This job re-enqueues the row with the delay; the scheduler only steps in if that
            # message is lost (a lease after the row is due).
            change.update(status="queued", due_at=now + delay, dispatch_after=now + delay + worker.lease,
                          last_error=result.error)
            retries.append((delivery_id, delay))
        elif result.outcome is Outcome.RETRY:
            change.update(status="failed", last_error=f"gave up after {delivery.attempts} attempts: {result.error}")
        elif result.outcome is Outcome.DEFER:
            until = result.defer_until or now
            change.update(status="queued", due_at=until, dispatch_after=until, last_error=result.error)
        elif result.outcome is Outcome.HALT:
            # Not the message's fault: it waits, queued, until an operator resumes the campaign.
            change.update(status="queued", dispatch_after=now, last_error=result.error)
            halted[delivery.campaign] = result.error or "halted by provider answer"
        elif result.outcome is Outcome.SUPPRESS:
            change.update(status="suppressed", last_error=result.error)
            suppression = _suppression_for(config, delivery, result)
            if suppression:
                suppressions.append(suppression)
        else:
            change.update(status="failed", last_error=result.error)
        updates.append(change)
    exits: dict[str, set[int]] = {}
    for delivery_id, skip in (skips or {}).items():
        delivery = by_id[delivery_id]
        if skip.defer_until is not None:
            # Not now, but certainly later (a send window): back to the queue, due then.
            counts["deferred"] = counts.get("deferred", 0) + 1
            updates.append({"b_id": delivery_id, "claim_token": None, "lease_until": None, "updated_at": now,
                            "status": "queued", "due_at": skip.defer_until, "dispatch_after": skip.defer_until,
                            "last_error": skip.reason[:1000]})
            continue
        counts["skipped"] = counts.get("skipped", 0) + 1
        updates.append({"b_id": delivery_id, "claim_token": None, "lease_until": None, "updated_at": now,
                        "status": "skipped", "last_error": skip.reason[:1000]})
        if skip.exit_state and delivery.enrollment_id:
            exits.setdefault(skip.exit_state, set()).add(delivery.enrollment_id)
    final = {"sent", "failed", "suppressed", "skipped"}
    last_steps = {c.name: len(c.steps) - 1 for c in config.campaigns}
    for change in updates:
        delivery = by_id[change["b_id"]]
        if (change.get("status") in final and delivery.enrollment_id
                and delivery.step == last_steps.get(delivery.campaign)):
            exits.setdefault("completed", set()).add(delivery.enrollment_id)

    with engine.begin() as conn:
        if attempts:
            conn.execute(sa.insert(DeliveryAttempt.__table__), attempts)
        for columns, group in _group_by_columns(updates).items():
            statement = (
                sa.update(Delivery.__table__)
                .where(Delivery.__table__.c.id == sa.bindparam("b_id"),
                       Delivery.__table__.c.claim_token == claim_.token)
                .values({column: sa.bindparam(column) for column in columns})
            )
            conn.execute(statement, group)
        # Exits first, so a goal reached at the last step is not recorded as "completed".
        for state in sorted(exits, key=lambda name: name == "completed"):
            conn.execute(
                sa.update(Enrollment)
                .where(Enrollment.id.in_(sorted(exits[state])), Enrollment.state == "active")
                .values(state=state, exited_at=now)
            )
        if recommended:
            # A message recorded twice (a lost claim, a send that went again after a crash)
            # showed the same products: the first rows stand. One statement of fixed text
            # (arrays unnested on PostgreSQL): a multi-row VALUES was compiled afresh per
            # batch, and an executemany was a pipelined statement per row, 20 ms of a
            # 50-message batch's record (docs/benchmarks.md).
            insert_rows(conn, RecommendationSent.__table__, recommended,
                        finish=lambda insert: insert.on_conflict_do_nothing(index_elements=["delivery_id", "sku"]))
        if suppressions:
            conn.execute(
                dialect_insert(conn, Suppression.__table__)
                .values(suppressions)
                .on_conflict_do_nothing(index_elements=["channel", "address"])
            )
        for campaign, reason in halted.items():
            conn.execute(
                dialect_insert(conn, CampaignState.__table__)
                .values(campaign=campaign, paused=True, paused_reason=reason, updated_at=now)
                .on_conflict_do_update(
                    index_elements=["campaign"],
                    set_={"paused": True, "paused_reason": reason, "updated_at": now},
                )
            )
    return Recorded(retries=retries, halted=halted, counts=counts)


def _group_by_columns(updates: list[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    # executemany needs the same parameter names in every row; group rows by their shape.
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for update in updates:
        columns = tuple(sorted(key for key in update if key != "b_id"))
        groups.setdefault(columns, []).append(update)
    return groups


def _suppression_for(config: AppConfig, delivery: ClaimedDelivery, result: SendResult) -> dict[str, Any] | None:
    channel = config.channels.get(delivery.channel)
    if channel is None:
        return None
    family = CHANNEL_FAMILY.get(channel.recipient)
    address = delivery.customer.get(channel.recipient)
    if not family or not address:
        return None
    return {"channel": family, "address": address, "reason": (result.error or "suppressed")[:200], "created_at": utcnow()}
