"""``nurture replies``: the classified inbound replies, newest first, for staff; and
``nurture alerts list`` / ``retry``: the staff alerts, and failed ones queued again.

Presentation only: the labels are written by the scheduler's tick
(:func:`campaigns.feedback.classification.classify_replies`) and read by
:func:`~campaigns.feedback.classification.labelled_replies`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from campaigns.config.durations import parse_duration
from workers.cli.common import (
    ConfigOption,
    JsonOption,
    console,
    engine_for,
    friendly_errors,
    load_app_config,
    parse_now,
)
from workers.cli.tables import print_json, print_table, titled_table

#: The labels a reply can have.
LABELS = ("question", "complaint", "positive", "other")


def _since(value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError:
        return None


@friendly_errors
def replies(
    label: Annotated[list[str] | None, typer.Option(
        "--label", "-l", help="Only replies with this label (question, complaint, positive, other); repeatable.")
    ] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only replies written since: a duration back from now (7d, 12h) or an ISO 8601 time.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="Show at most this many.")] = 50,
    config: ConfigOption = Path("config.toml"),
    as_json: JsonOption = False,
) -> None:
    """Inbound replies as classified by the [replies] rules, newest first, with the
    campaign each answers and, for complaints, the state of their staff alert.

    Replies are labelled at each scheduler tick (opt-outs never are); see
    docs/feedback.md, "Reply classification".
    """
    from campaigns.feedback.classification import labelled_replies
    from campaigns.store.models import utcnow

    unknown = sorted(set(label or ()) - set(LABELS))
    if unknown:
        raise typer.BadParameter(f"unknown label(s) {', '.join(unknown)}: use {', '.join(LABELS)}",
                                 param_hint="--label")
    since_at = None
    if since is not None:
        back = _since(since)
        try:
            since_at = utcnow() - back if back is not None else parse_now(since)
        except typer.BadParameter:
            raise typer.BadParameter(f"{since!r} is neither a duration back from now (7d, 12h) nor an ISO 8601 "
                                     "time (2026-11-01T00:00:00+08:00)", param_hint="--since") from None
    cfg = load_app_config(config)
    found, total = labelled_replies(engine_for(cfg), labels=label or (), since=since_at, limit=limit)
    if as_json:
        print_json({"total": total, "replies": [reply.as_dict() for reply in found]})
        return
    if not found:
        console.print("no classified replies" + (" matching" if label or since else "")
                      + " (replies are labelled at each scheduler tick)", markup=False, highlight=False)
        return
    rows = [[reply.replied_at.strftime("%Y-%m-%d %H:%M"), reply.label, reply.customer or "-",
             (reply.text or "").replace("\n", " ")[:60], reply.campaign or "-", reply.alert or "-"]
            for reply in found]
    print_table(titled_table("Replies", ["replied (UTC)", "label", "customer", "text", "campaign", "alert"], rows,
                             total=total))


#: ``nurture alerts``: the staff alerts (detractors, complaints) and their state.
alerts_app = typer.Typer(help="Staff alerts (detractors, complaints): list them, queue failed ones again.",
                         no_args_is_help=True)
#: What an alert's ``status`` can be.
STATUSES = ("queued", "sent", "failed")


@alerts_app.command("list")
@friendly_errors
def list_alerts(
    status: Annotated[list[str] | None, typer.Option(
        "--status", "-s", help="Only alerts in this state (queued, sent, failed); repeatable.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="Show at most this many.")] = 50,
    config: ConfigOption = Path("config.toml"),
    as_json: JsonOption = False,
) -> None:
    """The newest staff alerts with their state, attempts and last error.

    Workers send them (see docs/feedback.md, "Staff alerts"); a failed one can be queued
    again with `nurture alerts retry` once its staff channel is fixed.
    """
    from campaigns.feedback.alerts import list_staff_alerts

    unknown = sorted(set(status or ()) - set(STATUSES))
    if unknown:
        raise typer.BadParameter(f"unknown status(es) {', '.join(unknown)}: use {', '.join(STATUSES)}",
                                 param_hint="--status")
    cfg = load_app_config(config)
    found, total = list_staff_alerts(engine_for(cfg), statuses=frozenset(status or ()), limit=limit)
    if as_json:
        print_json({"total": total, "alerts": [alert.as_dict() for alert in found]})
        return
    if not found:
        console.print("no staff alerts" + (" in that state" if status else ""), markup=False, highlight=False)
        return
    rows = [[alert.created_at.strftime("%Y-%m-%d %H:%M"), alert.key, alert.kind, alert.channel, alert.status,
             str(alert.attempts), (alert.error or "-")[:80]] for alert in found]
    print_table(titled_table("Staff alerts", ["queued (UTC)", "key", "kind", "channel", "status", "attempts",
                                              "last error"], rows, total=total, right=("attempts",)))


@alerts_app.command("retry")
@friendly_errors
def retry_alerts(
    keys: Annotated[list[str] | None, typer.Argument(
        help="Alert keys (reply:12, feedback:3) to queue again; none: every failed alert.", show_default=False)
    ] = None,
    config: ConfigOption = Path("config.toml"),
    as_json: JsonOption = False,
) -> None:
    """Queue failed staff alerts again, due at once with their attempts reset (after a
    bad robot key or webhook URL was fixed). Sent alerts are never sent again."""
    from campaigns.feedback.alerts import retry_failed_alerts

    cfg = load_app_config(config)
    queued = retry_failed_alerts(engine_for(cfg), keys=frozenset(keys or ()))
    if as_json:
        print_json({"queued": queued})
        return
    console.print(f"{queued} failed alert(s) queued again; workers send them after the next scheduler tick",
                  markup=False, highlight=False)
