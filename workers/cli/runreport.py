"""What ``nurture scheduler``, ``run`` and ``track`` print: what was planned and enqueued,
then what became of it (:func:`campaigns.reports.outcomes.delivery_outcomes`): sent,
deferred by reason, skipped by reason, failed.

With in-process workers (``broker.url = "stub://"``) the queue has drained before the
command prints, so the outcome is known. With Redis, workers in other processes send
later: the commands say the messages were handed over and point to ``nurture status``.
Times are printed in UTC whatever offset ``--now`` was given with.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from workers.cli.common import console

if TYPE_CHECKING:
    import sqlalchemy as sa

    from workers.jobs.scheduler import TickReport

#: The line printed instead of an outcome when Redis workers do the sending.
HANDED_OVER = "handed to the workers: `nurture status` shows what was sent, deferred and skipped"


def utc(moment: datetime, *, seconds: bool = True) -> str:
    """``moment`` in UTC, labelled: ``2026-12-04 02:00:00 UTC`` (``seconds=False``: to the minute)."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M{':%S' if seconds else ''}} UTC"


def outcome_of(engine: sa.Engine, report: TickReport) -> dict[str, Any]:
    """What became of the deliveries a tick or run handed over (kept with ``keep_ids``)
    and of every row its runs planned; call it once in-process workers have drained."""
    from campaigns.reports.outcomes import delivery_outcomes

    return delivery_outcomes(engine, ids=report.delivery_ids or (), run_ids=[run.run_id for run in report.runs])


def outcome_text(outcome: dict[str, Any]) -> str:
    """One line: ``3 sent, 1 deferred (quiet hours 1), 1 skipped (address suppressed 1), 0 failed``,
    then what waits for a later step or is still being sent, when anything does."""

    def detailed(count: int, word: str, reasons: dict[str, int]) -> str:
        details = ", ".join(f"{reason} {n}" for reason, n in reasons.items())
        return f"{count} {word}" + (f" ({details})" if details else "")

    parts = [
        f"{outcome['sent']} sent",
        detailed(sum(outcome["deferred"].values()), "deferred", outcome["deferred"]),
        detailed(sum(outcome["skipped"].values()), "skipped", outcome["skipped"]),
        detailed(sum(outcome["failed"].values()), "failed", outcome["failed"]),
    ]
    if outcome["waiting"]:
        parts.append(f"{outcome['waiting']} planned for a later step")
    if outcome["in_flight"]:
        parts.append(f"{outcome['in_flight']} still being sent")
    return ", ".join(parts)


def print_outcome(outcome: dict[str, Any] | None) -> None:
    """The outcome line, or :data:`HANDED_OVER` when Redis workers send (``outcome`` None)."""
    console.print(outcome_text(outcome) if outcome is not None else HANDED_OVER, markup=False, highlight=False)


def print_tick(report: TickReport, *, as_json: bool, outcome: dict[str, Any] | None = None) -> None:
    """Print what a scheduler tick (or ``nurture run``) planned and enqueued, and its
    ``outcome`` (None: Redis workers send it later)."""
    if as_json:
        print(json.dumps({
            "now": report.now.astimezone(UTC).isoformat(),
            "runs": [{"campaign": r.campaign, "scheduled_at": r.scheduled_at.astimezone(UTC).isoformat(),
                      "planned": r.planned} for r in report.runs],
            "enqueued_jobs": report.enqueued_jobs,
            "enqueued_deliveries": report.enqueued_deliveries,
            "requeued_leases": report.requeued_leases,
            "profiles": None if report.profiles is None else {
                "customers": report.profiles.customers, "stage_entries": report.profiles.stage_entries,
                "segment_entries": report.profiles.segment_entries},
            "loyalty": None if report.loyalty is None else report.loyalty.to_dict(),
            "entries": report.entries,
            "replies": None if report.replies is None else {
                "labelled": report.replies.labelled, "opt_outs": report.replies.opt_outs,
                "alerts": report.replies.alerts},
            "staff_alert_jobs": report.staff_alert_jobs,
            "outcome": outcome,
        }))
        return
    if report.profiles is not None:
        console.print(f"profiles recomputed: {report.profiles.customers} customers, "
                      f"{report.profiles.stage_entries} stage entries, {report.profiles.segment_entries} segment entries")
    if report.loyalty is not None:
        loyalty = report.loyalty
        console.print(f"loyalty daily job: {loyalty.earned.lots} lots earned, {loyalty.expired.lots} expired, "
                      f"{loyalty.tiers.upgraded} tier upgrades, {loyalty.tiers.downgraded} downgrades")
    for name, planned in report.entries.items():
        console.print(f"entries [bold]{name}[/]: {planned} new deliveries")
    if report.replies is not None and report.replies.total:
        labels = ", ".join(f"{count} {label}" for label, count in sorted(report.replies.labelled.items()))
        alerts = f"; {report.replies.alerts} complaint alert(s) queued" if report.replies.alerts else ""
        console.print(f"replies labelled: {labels}{alerts}", markup=False, highlight=False)
    for run in report.runs:
        console.print(f"run [bold]{run.campaign}[/] @ {utc(run.scheduled_at, seconds=False)}: {run.planned} new deliveries")
    console.print(f"tick {utc(report.now)}: enqueued {report.enqueued_deliveries} deliveries "
                  f"in {report.enqueued_jobs} jobs")
    if report.enqueued_deliveries or report.runs:
        print_outcome(outcome)
