"""Sending queued staff alerts (``staff_alert``): lease, post, settle.

:func:`send_staff_alerts` leases the due alerts a batch at a time
(:func:`~campaigns.feedback.alerts.take_due_alerts`), posts each through its staff
channel (:mod:`workers.channels.staff`) and records the answer at once
(:func:`~campaigns.feedback.alerts.settle_alert`), so a crash loses at most the alert in
flight, which is sent again after its lease (the one case of a repeat; see the module
docstring of :mod:`campaigns.feedback.alerts`).

Answers, as the channel classified them:

* ``ok``: ``sent``.
* ``retry`` (network error, timeout, 429, 5xx, an answer that is not JSON, WeCom's 45009
  "api freq out of limit" and -1 "busy"): queued again after a backoff, 30 s doubling to
  1 h, or the provider's Retry-After / the robot's ``freq_limit_retry_after`` when longer;
  ``failed`` once the channel's ``max_attempts`` are spent.
* ``defer`` (the robot's own 20/min limiter said wait): queued until then, no attempt used.
* ``permanent``, ``suppress``, ``halt`` (other 4xx, 40xxx errcodes, WeCom's 93000 invalid
  webhook, 401/403): ``failed`` with the error, except a secret that is not set on this
  worker (code ``config``), which keeps the alert queued (checked again every
  :data:`CONFIG_WAIT`): a deploy missing one variable must not throw the alerts away.

Errors recorded never hold the robot key or the webhook secret (the channels' errors
carry status codes and errcodes, never URLs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from campaigns.config.schema import AppConfig
from campaigns.feedback.alerts import DueAlert, settle_alert, take_due_alerts
from campaigns.sending.messages import Outcome, SendResult
from workers.channels.staff import StaffSender

logger = logging.getLogger("nurture.staff_alerts")

#: The first retry's wait; each further retry doubles it, up to :data:`MAX_BACKOFF`.
MIN_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)
#: How long an alert waits for a missing secret or staff channel before it is tried again.
CONFIG_WAIT = timedelta(minutes=5)
#: Alerts leased at once.
BATCH_SIZE = 20


@dataclass
class AlertsReport:
    """What one :func:`send_staff_alerts` call did, by outcome."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    waiting: int = 0
    #: ``alert key -> error`` of the alerts that failed or will be retried.
    errors: dict[str, str] = field(default_factory=dict)


def backoff(attempt: int, retry_after_s: float | None = None) -> timedelta:
    """The wait before retrying after attempt number ``attempt`` (from 1)."""
    wait = min(MIN_BACKOFF * (2 ** max(attempt - 1, 0)), MAX_BACKOFF)
    if retry_after_s is not None:
        wait = max(wait, timedelta(seconds=min(retry_after_s, MAX_BACKOFF.total_seconds())))
    return wait


def send_staff_alerts(*, engine: Engine, config: AppConfig, senders: Mapping[str, StaffSender],
                      clock: Callable[[], datetime], lease: timedelta | None = None,
                      batch_size: int = BATCH_SIZE) -> AlertsReport:
    """Send every staff alert due now, a leased batch at a time, until none is due."""
    report = AlertsReport()
    lease = lease or config.worker.lease
    while True:
        now = clock()
        batch = take_due_alerts(engine, now=now, lease=lease, limit=batch_size)
        for alert in batch:
            _send_one(engine, config, senders, alert, clock=clock, report=report)
        if len(batch) < batch_size:
            return report


def _send_one(engine: Engine, config: AppConfig, senders: Mapping[str, StaffSender], alert: DueAlert, *,
              clock: Callable[[], datetime], report: AlertsReport) -> None:
    sender = senders.get(alert.channel)
    if sender is None:
        # A worker started before the channel was configured (or after it was removed):
        # keep the alert for one that has it rather than fail it.
        report.waiting += 1
        logger.warning("staff alert %s waits: staff channel %r is not configured in this worker",
                       alert.key, alert.channel)
        settle_alert(engine, alert.id, status="queued", now=clock(), due_at=clock() + CONFIG_WAIT,
                     count_attempt=False, error=f"staff channel {alert.channel!r} is not configured")
        return
    result = sender.send(alert)
    now = clock()
    outcome, error = result.outcome, result.error
    if outcome is Outcome.OK:
        settle_alert(engine, alert.id, status="sent", now=now)
        report.sent += 1
        logger.info("staff alert %s sent to %s", alert.key, alert.channel)
        return
    error = f"{error or outcome.value} (attempt {alert.attempt})"
    report.errors[alert.key] = error
    if outcome is Outcome.DEFER or (outcome is Outcome.HALT and result.code == "config"):
        until = result.defer_until if outcome is Outcome.DEFER and result.defer_until else now + CONFIG_WAIT
        settle_alert(engine, alert.id, status="queued", now=now, due_at=until, count_attempt=False, error=error)
        report.waiting += 1
        logger.warning("staff alert %s waits until %s: %s", alert.key, until.isoformat(), error)
        return
    options = config.staff_channels.get(alert.channel)
    max_attempts = options.max_attempts if options is not None else 1
    if outcome is Outcome.RETRY and alert.attempt < max_attempts:
        settle_alert(engine, alert.id, status="queued", now=now, error=error,
                     due_at=now + backoff(alert.attempt, result.retry_after_s))
        report.retried += 1
        logger.warning("staff alert %s to %s will be retried: %s", alert.key, alert.channel, error)
        return
    settle_alert(engine, alert.id, status="failed", now=now, error=_final(result, error))
    report.failed += 1
    logger.error("staff alert %s to %s failed: %s", alert.key, alert.channel, error)


def _final(result: SendResult, error: str) -> str:
    if result.outcome is Outcome.RETRY:
        return f"gave up after the last attempt: {error}"
    return error
