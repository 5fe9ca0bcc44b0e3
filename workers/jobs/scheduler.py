"""The scheduler: claim due campaign runs, plan their deliveries, enqueue what is due.

A tick is idempotent: running it twice, or in two processes at once, creates no
duplicate delivery (run claims and send keys are UNIQUE) and a delivery enqueued twice
is still sent once (workers claim rows).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
import sqlalchemy as sa
from dramatiq.broker import Broker
from sqlalchemy.engine import Engine

from campaigns.config.campaigns import CampaignConfig
from campaigns.config.schema import AppConfig
from campaigns.config.triggers import (
    CronTrigger,
    DateTrigger,
    EventTrigger,
    FeedbackTrigger,
    ManualTrigger,
    PointsExpiringTrigger,
    TierEnteredTrigger,
)
from campaigns.customers.loyalty.daily import LOYALTY_RUN, LoyaltyRunReport, run_loyalty
from campaigns.customers.profiles import PROFILES_RUN, RecomputeReport, recompute_profiles
from campaigns.feedback.alerts import alerts_due
from campaigns.feedback.classification import ClassifyReport, classify_replies
from campaigns.feedback.followups import mark_followups_answered, plan_feedback
from campaigns.feedback.scores import RepliesRead, read_survey_replies
from campaigns.recommendations.refresh import RECOMMENDATIONS_RUN, RefreshReport, refresh_recommendations
from campaigns.sending.control import check_runnable
from campaigns.sending.cron import due_slot, latest_cron_slot
from campaigns.sending.ledger import (
    dispatchable_batches,
    paused_campaigns,
    requeue_expired_leases,
    run_batches,
)
from campaigns.sending.planning import (
    PlannedRun,
    claim_run,
    complete_run,
    plan_dates,
    plan_entries,
    plan_events,
    plan_points_expiring,
    plan_run,
)
from campaigns.store.leases import SCHEDULER_LEASE, acquire_lease, lease_holder, release_lease
from workers.jobs.broker import enqueue_many, send_message, staff_alerts_message

logger = logging.getLogger("nurture.scheduler")

#: Failures of the database or the broker that a later tick may not meet.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sa.exc.OperationalError, sa.exc.InterfaceError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
)


#: Messages per Redis pipeline round trip.
PIPELINE_SIZE = 500


@dataclass
class TickReport:
    """What one tick did."""

    now: datetime
    runs: list[PlannedRun] = field(default_factory=list)
    profiles: RecomputeReport | None = None
    #: The loyalty daily job, when this tick ran it (once per ``[loyalty] cron`` slot).
    loyalty: LoyaltyRunReport | None = None
    #: The recommendations refresh, when this tick ran it (once per ``[recommendations] cron`` slot).
    recommendations: RefreshReport | None = None
    #: Replies to survey messages read into answers this tick (docs/feedback.md).
    survey_replies: RepliesRead | None = None
    #: New deliveries per stage/segment-entry and event campaign.
    entries: dict[str, int] = field(default_factory=dict)
    enqueued_jobs: int = 0
    enqueued_deliveries: int = 0
    #: Replies labelled this tick, and the complaint alerts they queued (docs/feedback.md).
    replies: ClassifyReport | None = None
    #: Jobs enqueued to send the staff alerts due (0 or 1).
    staff_alert_jobs: int = 0
    requeued_leases: int = 0
    #: The ids handed to the broker, when the caller asked for them (``keep_ids``): with
    #: in-process workers the command reports what became of each (sent, deferred ...).
    delivery_ids: list[int] | None = None


def tick(*, config: AppConfig, engine: Engine, broker: Broker, now: datetime, keep_ids: bool = False) -> TickReport:
    """Run one scheduler tick at ``now``."""
    report = TickReport(now=now, delivery_ids=[] if keep_ids else None)
    report.requeued_leases = requeue_expired_leases(engine, now=now)
    batch_size = config.broker.batch_size
    queue = config.broker.queue
    # A paused campaign plans nothing (campaigns.sending.control): its slot is not claimed,
    # so a resume within max_lateness still runs it; its entries wait within entry_window.
    paused = paused_campaigns(engine)
    # Cron campaigns first: a due fan-out is not held up by the profile recompute. Every due
    # run is planned before any is handed to the workers: a frequency cap keeps a customer's
    # slot for the highest-ranked message (campaigns.sending.caps), which it can see only
    # once planned; a run enqueued before the next one is planned would win by coming first.
    planned_runs: list[int] = []
    for campaign in config.campaigns:
        if campaign.name in paused:
            continue
        slot = due_slot(campaign, now, max_lateness=config.scheduler.max_lateness)
        if slot is None:
            continue
        run_id = claim_run(engine, campaign.name, slot, lease=config.worker.lease)
        if run_id is None:
            continue
        planned = plan_run(engine, config, campaign, run_id=run_id, scheduled_at=slot, now=now)
        logger.info("campaign %s run %s planned %d deliveries", campaign.name, slot.isoformat(), planned.planned)
        report.runs.append(planned)
        planned_runs.append(run_id)
    for run_id in planned_runs:
        _enqueue(report, broker, queue, run_batches(engine, run_id, now=now, batch_size=batch_size))

    report.profiles = _recompute_when_due(config=config, engine=engine, now=now)
    # Before the entry campaigns: tier_entered reads the tier moves it records, and
    # points_expiring must not remind of lots it has just expired.
    report.loyalty = _loyalty_when_due(config=config, engine=engine, now=now)
    # After the loyalty job and before the entry campaigns, whose messages read the
    # recommendations: a slot's refresh is in place before anything due then is planned.
    report.recommendations = _recommendations_when_due(config=config, engine=engine, now=now)
    # Survey replies become scores before the follow-ups of the answers are planned; the
    # follow-ups sent since the last tick mark their answers answered.
    report.survey_replies = read_survey_replies(engine, config, now=now, window=config.scheduler.entry_window)
    mark_followups_answered(engine, config)
    for campaign in config.campaigns:
        if (not campaign.enabled or campaign.name in paused
                or isinstance(campaign.trigger, (CronTrigger, ManualTrigger))):
            continue
        if isinstance(campaign.trigger, FeedbackTrigger):
            report.entries[campaign.name] = plan_feedback(engine, config, campaign, now=now,
                                                          window=config.scheduler.entry_window)
            continue
        if isinstance(campaign.trigger, (TierEnteredTrigger, PointsExpiringTrigger)) and not config.loyalty.enabled:
            continue  # nurture check refuses them; an unchecked config plans nothing
        if isinstance(campaign.trigger, PointsExpiringTrigger):
            report.entries[campaign.name] = plan_points_expiring(engine, config, campaign, now=now)
            continue
        # Event campaigns are planned here too: events imported in bulk, and any event the
        # fast path (handle_events) missed, still go out.
        if isinstance(campaign.trigger, DateTrigger):
            report.entries[campaign.name] = plan_dates(engine, config, campaign, now=now)
            continue
        plan = plan_events if isinstance(campaign.trigger, EventTrigger) else plan_entries
        report.entries[campaign.name] = plan(
            engine, config, campaign, now=now, window=config.scheduler.entry_window
        )
    # Everything else that is due: later steps, entries, retries whose job was lost,
    # rows of workers that died, resumed campaigns.
    _enqueue(report, broker, queue, dispatchable_batches(
        engine, now=now, lease=config.worker.lease, batch_size=batch_size
    ))
    # Replies recorded since the last tick get their label; a complaint queues its alert.
    report.replies = classify_replies(engine, config.replies, now=now)
    # One job sends every alert due (detractors' too): the worker leases the rows, so a
    # job enqueued while the last one still runs finds nothing left to send twice.
    if config.staff_channels and alerts_due(engine, now=now):
        report.staff_alert_jobs = enqueue_many(broker, [staff_alerts_message(queue)])
    return report


def run_now(*, config: AppConfig, engine: Engine, broker: Broker, campaign: CampaignConfig,
            now: datetime, keep_ids: bool = False) -> TickReport:
    """Start one run of ``campaign`` at ``now`` (``nurture run``): a one-off broadcast for a
    manual campaign, or an extra run of a cron campaign.

    Each call is a run of its own, claimed at ``now`` itself rather than its minute: a
    second run plans who is targeted now, customers imported since the first included.
    Nobody gets a message twice all the same: the send keys hold one occurrence per
    customer ("once" with ``reentry = "never"``, the minute with ``"every_run"``).

    Raises :class:`~campaigns.errors.NurtureError` for a disabled or paused campaign."""
    check_runnable(engine, campaign)
    report = TickReport(now=now, delivery_ids=[] if keep_ids else None)
    slot = now
    run_id = claim_run(engine, campaign.name, slot, lease=config.worker.lease)
    if run_id is None:
        return report
    planned = plan_run(engine, config, campaign, run_id=run_id, scheduled_at=slot, now=now)
    report.runs.append(planned)
    _enqueue(report, broker, config.broker.queue,
             run_batches(engine, run_id, now=now, batch_size=config.broker.batch_size))
    return report


def _enqueue(report: TickReport, broker: Broker, queue: str, batches: Iterator[list[int]]) -> None:
    """Send one job per batch of ids, PIPELINE_SIZE jobs per Redis round trip."""
    pending = []
    for batch in batches:
        pending.append(send_message(queue, batch))
        report.enqueued_deliveries += len(batch)
        if report.delivery_ids is not None:
            report.delivery_ids.extend(batch)
        if len(pending) >= PIPELINE_SIZE:
            report.enqueued_jobs += enqueue_many(broker, pending)
            pending = []
    report.enqueued_jobs += enqueue_many(broker, pending)


def _claim_due_slot(*, config: AppConfig, engine: Engine, job: str, cron: str, timezone: str,
                    now: datetime) -> tuple[datetime, int] | None:
    """(slot, run id) when ``cron``'s latest slot (in ``timezone``) is due and this scheduler
    claimed it for ``job`` (like a campaign run: two schedulers run a slot once, and a
    claim whose scheduler died is taken over after its lease); None otherwise."""
    from zoneinfo import ZoneInfo

    slot = latest_cron_slot(cron, ZoneInfo(timezone), now)
    if slot is None or now - slot > config.scheduler.max_lateness:
        return None
    run_id = claim_run(engine, job, slot, lease=config.worker.lease)
    return None if run_id is None else (slot, run_id)


def _recompute_when_due(*, config: AppConfig, engine: Engine, now: datetime) -> RecomputeReport | None:
    """Recompute profiles once per ``[profiles] cron`` slot (claimed like a campaign run)."""
    profiles = config.profiles
    if not profiles.cron:
        return None
    claimed = _claim_due_slot(config=config, engine=engine, job=PROFILES_RUN, cron=profiles.cron,
                              timezone=profiles.timezone, now=now)
    if claimed is None:
        return None
    _slot, run_id = claimed
    report = recompute_profiles(engine, config, as_of=now)
    complete_run(engine, run_id, planned=report.customers)
    logger.info("profiles recomputed for %d customers in %.1fs", report.customers, report.seconds)
    return report


def _loyalty_when_due(*, config: AppConfig, engine: Engine, now: datetime) -> LoyaltyRunReport | None:
    """Run the loyalty daily job once per ``[loyalty] cron`` slot (claimed like a campaign
    run, so two schedulers run it once; a scheduler that died mid-job leaves the claim to
    be taken over after its lease, and the job is safe to repeat)."""
    loyalty = config.loyalty
    if not loyalty.enabled or not loyalty.cron:
        return None
    claimed = _claim_due_slot(config=config, engine=engine, job=LOYALTY_RUN, cron=loyalty.cron,
                              timezone=loyalty.timezone, now=now)
    if claimed is None:
        return None
    slot, run_id = claimed
    report = run_loyalty(engine, loyalty, now=now)
    tiers = report.tiers
    # The run's "planned" count: the lots and members it changed.
    changed = report.earned.lots + report.refunds.lots + report.expired.lots + tiers.upgraded + tiers.downgraded
    complete_run(engine, run_id, planned=changed)
    logger.info("loyalty daily job for %s: %d lots earned, %d reversed, %d expired (%d points), "
                "%d tier upgrades, %d downgrades in %.1fs", slot.isoformat(), report.earned.lots,
                report.refunds.lots, report.expired.lots, report.expired.points, tiers.upgraded,
                tiers.downgraded, sum(report.seconds.values()))
    return report


def _recommendations_when_due(*, config: AppConfig, engine: Engine, now: datetime) -> RefreshReport | None:
    """Refresh the recommendations once per ``[recommendations] cron`` slot (claimed like
    the loyalty job, so two schedulers refresh a slot once; the refresh is safe to repeat
    and replaces the tables atomically, so one taken over after a lease runs again whole)."""
    settings = config.recommendations
    if not settings.enabled or not settings.cron:
        return None
    claimed = _claim_due_slot(config=config, engine=engine, job=RECOMMENDATIONS_RUN, cron=settings.cron,
                              timezone=settings.timezone, now=now)
    if claimed is None:
        return None
    slot, run_id = claimed
    report = refresh_recommendations(engine, settings, now=now)
    complete_run(engine, run_id, planned=report.customers)
    logger.info("recommendations refreshed for %s: %d associations, %d customers, %s in %.1fs", slot.isoformat(),
                report.associations, report.customers,
                ", ".join(f"{count} {reason}" for reason, count in report.by_reason.items()), report.total_seconds)
    return report


class Leadership:
    """This process's hold on the scheduler's leader lease.

    Every scheduler process calls :meth:`hold` before a tick: the leader renews its lease
    and ticks; the others stand by and take over once the leader's lease has run out
    (it crashed, or lost its database). Ticks are idempotent, so a stalled leader that
    overlaps its successor costs work, never a duplicate message.
    """

    def __init__(self, *, engine: Engine, ttl: timedelta, holder: str | None = None) -> None:
        self.engine = engine
        self.ttl = ttl
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leading = False

    @classmethod
    def for_config(cls, config: AppConfig, *, engine: Engine) -> Leadership:
        """A leadership whose lease outlives at least two scheduler intervals."""
        return cls(engine=engine, ttl=max(config.scheduler.leader_lease, 2 * config.scheduler.interval))

    def hold(self, now: datetime) -> bool:
        """Take or renew the lease; True while this process is the leader."""
        leading = acquire_lease(self.engine, SCHEDULER_LEASE, self.holder, now=now, ttl=self.ttl)
        if leading and not self.leading:
            logger.info("scheduler %s is the leader", self.holder)
        elif not leading and self.leading:
            logger.warning("scheduler %s lost the leader lease; standing by", self.holder)
        elif not leading:
            current = lease_holder(self.engine, SCHEDULER_LEASE)
            logger.info("standing by: %s leads until %s", current.holder if current else "?",
                        current.expires_at.isoformat() if current else "?")
        self.leading = leading
        return leading

    def release(self) -> None:
        """Hand the lease over at once (a clean shutdown)."""
        if self.leading:
            release_lease(self.engine, SCHEDULER_LEASE, self.holder)
            self.leading = False


def run_forever(*, config: AppConfig, engine: Engine, broker: Broker, clock: Callable[[], datetime],
                on_tick: Callable[[TickReport], None] | None = None,
                on_standby: Callable[[datetime], None] | None = None,
                leadership: Leadership | None = None) -> None:
    """Tick every ``scheduler.interval`` while this process holds the leader lease, until
    interrupted; the lease is released on the way out."""
    leadership = leadership or Leadership.for_config(config, engine=engine)
    interval = config.scheduler.interval.total_seconds()
    try:
        while True:
            started = time.monotonic()
            now = clock()
            try:
                if leadership.hold(now):
                    report = tick(config=config, engine=engine, broker=broker, now=now)
                    if on_tick:
                        on_tick(report)
                elif on_standby:
                    on_standby(now)
            except TRANSIENT_ERRORS as exc:
                # Redis restarting or the database dropping connections must not end the
                # scheduler: what this tick planned is in the ledger, and rows it could not
                # hand to the broker are dispatched again once their lease passes.
                logger.warning("tick at %s failed, retrying next interval: %s: %s",
                               now.isoformat(), type(exc).__name__, exc)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    finally:
        with contextlib.suppress(*TRANSIENT_ERRORS):
            leadership.release()
