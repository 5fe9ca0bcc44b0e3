"""Campaign control: ``nurture campaigns`` (every campaign at a glance), ``pause`` and
``resume`` by hand, and ``retry`` of failed deliveries once their cause is fixed.

Presentation only: the numbers come from :mod:`campaigns.reports.campaigns_overview`, the
state changes from :mod:`campaigns.sending.control` (which says what a pause holds).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from workers.cli.common import (
    ConfigOption,
    JsonOption,
    console,
    engine_for,
    friendly_errors,
    load_app_config,
    parse_now,
)
from workers.cli.tables import clip, print_json, print_table, text, titled_table

#: ``--now``: the moment the command acts at (ISO 8601), for replays and tests.
NowOption = Annotated[str | None, typer.Option(
    "--now", help="Act as if it were this time (ISO 8601, e.g. 2026-12-04T10:00+08:00); default: now.")]
CampaignArgument = Annotated[str, typer.Argument(help="Campaign name (as in config.toml).", show_default=False)]


def _moment(value: datetime | None, zone: str) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M} {zone}"


@friendly_errors
def list_campaigns(config: ConfigOption = Path("config.toml"), now: NowOption = None,
                   as_json: JsonOption = False) -> None:
    """Every campaign: trigger, next run, state, enrolled, sent today and last error.

    State is active, paused (and why: by hand, or a provider's answer) or disabled
    (enabled = false). Sent today counts the campaign's local day, in its own time zone.
    """
    from campaigns.reports.campaigns_overview import campaigns_overview

    cfg = load_app_config(config)
    moment = parse_now(now)
    rows = campaigns_overview(engine_for(cfg), cfg, now=moment)
    if as_json:
        print_json({"now": moment, "campaigns": [row.as_dict() for row in rows]})
        return
    if not rows:
        console.print("no campaigns in config.toml")
        return
    columns = ["campaign", "trigger", "next run", "state", "enrolled", "sent today", "queued", "failed",
               "last error"]
    lines = []
    for row in rows:
        state = row.state if row.paused_reason is None else f"paused: {clip(row.paused_reason, 50)}"
        enrolled = f"{row.enrolled} ({row.held_out} held out)" if row.held_out else str(row.enrolled)
        error = "-" if row.last_error is None else f"{clip(row.last_error, 50)} ({_moment(row.last_error_at, 'UTC')})"
        lines.append([row.name, row.trigger, row.next, state, enrolled, str(row.sent_today), str(row.queued),
                      str(row.failed), text(error)])
    print_table(titled_table(f"Campaigns at {moment.isoformat(timespec='minutes')}", columns, lines,
                             right=("enrolled", "sent today", "queued", "failed")))


@friendly_errors
def pause(
    campaign: CampaignArgument,
    config: ConfigOption = Path("config.toml"),
    reason: Annotated[str | None, typer.Option("--reason", help="Why, shown by `nurture campaigns` and `status`.")] = None,
    now: NowOption = None,
) -> None:
    """Pause a campaign by hand: it plans nothing new and its queued messages wait.

    Nothing is lost: queued messages stay in the ledger and go out after `nurture resume`.
    Messages already being sent finish.
    """
    from campaigns.sending.control import pause_campaign, paused_reason

    cfg = load_app_config(config)
    name = cfg.campaign(campaign).name
    engine = engine_for(cfg)
    if pause_campaign(engine, name, reason=reason, now=parse_now(now)):
        console.print(f"paused {name}: it plans nothing and its queued messages wait "
                      f"(resume: nurture resume {name})", highlight=False)
    else:
        console.print(f"{name} was already paused ({paused_reason(engine, name)})", highlight=False, markup=False)


@friendly_errors
def resume(campaign: CampaignArgument, config: ConfigOption = Path("config.toml"), now: NowOption = None) -> None:
    """Resume a paused campaign (after fixing the cause): its queued messages go out at the next tick."""
    from campaigns.sending.control import resume_campaign

    cfg = load_app_config(config)
    name = cfg.campaign(campaign).name
    if resume_campaign(engine_for(cfg), name, now=parse_now(now)):
        console.print(f"resumed {name}; its queued deliveries go out on the next scheduler tick", highlight=False)
    else:
        console.print(f"{name} was not paused", highlight=False)


@friendly_errors
def retry(
    campaign: CampaignArgument,
    config: ConfigOption = Path("config.toml"),
    since: Annotated[str | None, typer.Option(
        "--since", help="Only deliveries that failed at or after this time (ISO 8601).")] = None,
    now: NowOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-queue a campaign's failed deliveries once their cause is fixed.

    Each keeps its send key, so it still goes at most once; skipped messages (no consent,
    suppressed, capped) are not failures and are not retried. They go out at the next tick.
    """
    from campaigns.sending.control import paused_reason, retry_failed

    cfg = load_app_config(config)
    chosen = cfg.campaign(campaign)
    engine = engine_for(cfg)
    report = retry_failed(engine, chosen, now=parse_now(now), since=parse_now(since) if since else None)
    paused = paused_reason(engine, chosen.name)
    if as_json:
        print_json({"campaign": report.campaign, "requeued": report.requeued, "not_retried": report.not_retried,
                    "paused": paused})
        return
    if report.requeued:
        plural = "y" if report.requeued == 1 else "ies"
        later = "; they go out on the next scheduler tick" if paused is None else ""
        console.print(f"{chosen.name}: re-queued {report.requeued} failed deliver{plural}{later}", highlight=False)
    else:
        console.print(f"{chosen.name}: no failed deliveries to re-queue", highlight=False)
    for state, count in sorted(report.not_retried.items()):
        console.print(f"  {count} not retried: their series ended ({state})", highlight=False)
    if paused is not None and report.requeued:
        console.print(f"  {chosen.name} is paused ({paused}): they wait until `nurture resume {chosen.name}`",
                      highlight=False, markup=False)
