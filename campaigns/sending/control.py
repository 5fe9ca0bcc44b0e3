"""Campaign control by hand: pause and resume a campaign, and re-queue its failed deliveries.

A pause is the ``campaign_state`` row a provider's ``halt`` answer also writes
(:func:`campaigns.sending.ledger.record`). While a campaign is paused:

* the scheduler plans nothing for it: no cron run is claimed, no entry, event or date is
  enrolled (``workers/jobs/scheduler.py``, :mod:`campaigns.sending.event_triggers`), and
  ``nurture run`` refuses it (:func:`check_runnable`);
* the dispatcher hands none of its queued rows to the broker
  (:func:`~campaigns.sending.ledger.dispatchable_batches`), and a job claims none of them
  (:func:`~campaigns.sending.ledger.claim`), so a row enqueued just before the pause waits too.

Nothing is lost: the rows stay ``queued``, and :func:`resume_campaign` makes them
dispatchable at the next tick. What the triggers would have planned during the pause is
not caught up afterwards, except entries and events still within
``[scheduler] entry_window`` and a cron slot still within ``max_lateness`` at resume
(a welcome series paused for an hour still greets that hour's signups; one paused for a
week does not greet them a week late).

:func:`retry_failed` puts ``failed`` rows back in the queue once their cause is fixed:
the same row and send key (so each message still goes at most once), its attempts kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.campaigns import CampaignConfig
from campaigns.errors import NurtureError
from campaigns.store.db import COUNT_ROWS, dialect_insert
from campaigns.store.models import CampaignState, Delivery, Enrollment

#: The reason recorded for a pause by hand without ``--reason``.
PAUSED_BY_HAND = "by hand"


def paused_reason(engine: Engine, campaign: str) -> str | None:
    """Why ``campaign`` is paused (by hand or by a provider's halt answer); None when it is not."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(CampaignState.paused_reason).where(CampaignState.campaign == campaign, CampaignState.paused)
        ).first()
    if row is None:
        return None
    return row.paused_reason or PAUSED_BY_HAND


def pause_campaign(engine: Engine, campaign: str, *, reason: str | None = None, now: datetime) -> bool:
    """Pause ``campaign`` by hand; True if this paused it, False if it was already paused
    (its first reason is kept: the provider's halt answer says more than a second pause)."""
    text = f"{PAUSED_BY_HAND}: {reason.strip()}" if reason and reason.strip() else PAUSED_BY_HAND
    values = {"paused": True, "paused_reason": text[:1000], "updated_at": now}
    with engine.begin() as conn:
        # Write first (SQLite cannot upgrade a transaction that read first once a worker
        # has written); the UPDATE's guard and the INSERT's conflict make it race-free.
        updated = conn.execute(
            sa.update(CampaignState)
            .where(CampaignState.campaign == campaign, sa.not_(CampaignState.paused))
            .values(**values),
            execution_options=COUNT_ROWS,
        ).rowcount
        if updated:
            return True
        inserted = conn.execute(
            dialect_insert(conn, CampaignState.__table__)
            .values(campaign=campaign, **values)
            .on_conflict_do_nothing(index_elements=["campaign"]),
            execution_options=COUNT_ROWS,
        ).rowcount
        return inserted > 0


def resume_campaign(engine: Engine, campaign: str, *, now: datetime) -> bool:
    """Unpause a campaign (paused by hand or by a provider's halt answer); True if it was paused.

    Its queued rows become dispatchable at the next tick: rows a job left unclaimed
    during the pause carry a ``dispatch_after`` up to a lease ahead (the mark of a hand-over
    to the broker), which is brought back to their due time. A row that is still in the
    broker as well is then enqueued twice, which is harmless: one job claims it.
    """
    with engine.begin() as conn:
        resumed = conn.execute(
            sa.update(CampaignState)
            .where(CampaignState.campaign == campaign, CampaignState.paused)
            .values(paused=False, paused_reason=None, updated_at=now),
            execution_options=COUNT_ROWS,
        ).rowcount > 0
        if resumed:
            conn.execute(
                sa.update(Delivery)
                .where(Delivery.campaign == campaign, Delivery.status == "queued",
                       Delivery.dispatch_after > Delivery.due_at)
                .values(dispatch_after=Delivery.due_at)
            )
        return resumed


def check_runnable(engine: Engine, campaign: CampaignConfig) -> None:
    """Raise :class:`~campaigns.errors.NurtureError` when ``campaign`` must not start a run
    now (``nurture run``): it is disabled in config.toml, or paused."""
    if not campaign.enabled:
        raise NurtureError(f"campaign {campaign.name!r} is disabled (enabled = false in config.toml): "
                           "it plans nothing until it is enabled again")
    reason = paused_reason(engine, campaign.name)
    if reason is not None:
        raise NurtureError(f"campaign {campaign.name!r} is paused ({reason}): it plans nothing until "
                           f"`nurture resume {campaign.name}`")


@dataclass(frozen=True)
class RetryReport:
    """What :func:`retry_failed` did."""

    campaign: str
    #: Failed rows put back in the queue.
    requeued: int
    #: Failed rows left failed because their series has ended, by enrolment state
    #: (``exited_goal``, ``exited_unsubscribe``, or ``completed`` by a later step).
    not_retried: dict[str, int] = field(default_factory=dict)


def retry_failed(engine: Engine, campaign: CampaignConfig, *, now: datetime, since: datetime | None = None) -> RetryReport:
    """Put ``campaign``'s failed deliveries (failed at or after ``since``) back in the queue,
    due now, for the next tick to dispatch.

    Each row keeps its id, send key and attempts (the ``delivery_attempt`` history stays),
    so a message still goes at most once; a second retry finds nothing until a row fails
    again. Rows ``skipped`` (no consent, a cap, a condition) or ``suppressed`` are not
    failures and are never retried; nor are test sends. The send-time policy checks every
    retried row again, so consent withdrawn since the failure still stops it.

    A failed last step had ended its enrolment as ``completed``: that enrolment is made
    active again so the retried row is not skipped as "series ended". Rows whose series has
    ended otherwise (goal reached, unsubscribed, or completed by a later step) stay failed
    and are counted in :attr:`RetryReport.not_retried`.
    """
    last_step = len(campaign.steps) - 1
    failed = [Delivery.campaign == campaign.name, Delivery.status == "failed", sa.not_(Delivery.is_test)]
    if since is not None:
        failed.append(Delivery.updated_at >= since)
    enrollment = Enrollment.__table__
    with engine.begin() as conn:
        conn.execute(
            sa.update(Enrollment)
            .where(Enrollment.state == "completed",
                   Enrollment.id.in_(sa.select(Delivery.enrollment_id).where(*failed, Delivery.step == last_step)))
            .values(state="active", exited_at=None)
        )
        series_on = sa.or_(
            Delivery.enrollment_id.is_(None),
            sa.exists().where(enrollment.c.id == Delivery.enrollment_id, enrollment.c.state == "active"),
        )
        requeued = conn.execute(
            sa.update(Delivery)
            .where(*failed, series_on)
            .values(status="queued", due_at=now, dispatch_after=now, claim_token=None, lease_until=None,
                    last_error=None, updated_at=now),
            execution_options=COUNT_ROWS,
        ).rowcount
        left = conn.execute(
            sa.select(enrollment.c.state, sa.func.count())
            .select_from(Delivery.__table__.join(enrollment, enrollment.c.id == Delivery.enrollment_id))
            .where(*failed)
            .group_by(enrollment.c.state)
        ).all()
    return RetryReport(campaign=campaign.name, requeued=requeued, not_retried={state: count for state, count in left})


__all__ = [
    "PAUSED_BY_HAND",
    "RetryReport",
    "check_runnable",
    "pause_campaign",
    "paused_reason",
    "resume_campaign",
    "retry_failed",
]
