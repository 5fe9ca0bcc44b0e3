"""``nurture replies``: the classified inbound replies, newest first, for staff.

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
