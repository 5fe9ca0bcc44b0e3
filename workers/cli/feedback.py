"""The survey commands (docs/feedback.md): ``nurture feedback list`` and ``nurture
feedback answer ID --by NAME`` for staff, and ``nurture report feedback`` (registered on
the ``report`` group by :mod:`workers.cli.main`).

Presentation only: the figures come from :mod:`campaigns.reports.feedback`, marking an
answer from :mod:`campaigns.feedback.followups`; ``--json`` prints the dicts (times in
ISO 8601).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from campaigns.config.values import zone_named
from campaigns.errors import NurtureError
from campaigns.feedback.followups import answer_feedback
from campaigns.reports.feedback import DIMENSIONS, feedback_report, list_answers
from workers.cli.common import ConfigOption, JsonOption, console, engine_for, friendly_errors, load_app_config, parse_now
from workers.cli.tables import clip, key_values, pct, print_json, print_table, text, titled_table, when

#: ``nurture feedback``: the staff's view of survey answers.
feedback_app = typer.Typer(help="Survey answers: list them, mark a detractor answered (docs/feedback.md).",
                           no_args_is_help=True)

Band = Literal["detractor", "passive", "promoter"]


@feedback_app.command("list")
@friendly_errors
def list_command(
    config: ConfigOption = Path("config.toml"),
    band: Annotated[Band | None, typer.Option("--band", help="Only answers of this band.")] = None,
    unanswered: Annotated[bool, typer.Option("--unanswered", help="Only answers not answered yet.")] = False,
    campaign: Annotated[str | None, typer.Option("--campaign", help="Only answers to this campaign.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="Show at most this many.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Survey answers, newest first: customer, score, band, text, and whether (and by
    whom) they were answered; an unanswered detractor shows when its answer is due
    ([feedback] answer_within after its score)."""
    cfg = load_app_config(config)
    total, rows = list_answers(engine_for(cfg), cfg, band=band, unanswered=unanswered, campaign=campaign,
                               limit=limit)
    if as_json:
        print_json({"total": total, "answers": [row.to_dict() for row in rows]})
        return
    print_table(titled_table(
        "survey answers", ["id", "received", "customer", "campaign", "channel", "score", "band", "text",
                           "answered", "by / due"],
        [[str(row.id), when(row.received_at), row.customer, row.campaign, row.channel,
          f"{text(row.score)} {row.question}", text(row.band), clip(row.text or "-", 40), when(row.answered_at),
          row.answered_by or (f"due {when(row.answer_due)}" if row.answer_due else "-")] for row in rows],
        total=total, right=("id", "score")))


@feedback_app.command("answer")
@friendly_errors
def answer_command(
    feedback_id: Annotated[int, typer.Argument(metavar="ID", help="The answer's id (nurture feedback list).")],
    by: Annotated[str, typer.Option("--by", metavar="NAME", help="Who answered the customer.")],
    config: ConfigOption = Path("config.toml"),
    at: Annotated[str | None, typer.Option("--at", help="When they answered (ISO 8601; default: now).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Mark an answer (usually a detractor) answered by staff. The first answer stands:
    an answer already marked, or whose follow-up campaign's first message was sent
    earlier, keeps its time and who answered it."""
    cfg = load_app_config(config)
    if not by.strip():
        raise NurtureError("--by names who answered the customer, e.g. --by \"Li Na\"")
    result = answer_feedback(engine_for(cfg), cfg, feedback_id, by=by, now=parse_now(at))
    if as_json:
        print_json({"id": result.feedback_id, "marked": result.marked, "answered_at": result.answered_at,
                    "answered_by": result.answered_by})
        return
    if result.marked:
        console.print(f"answer {result.feedback_id} marked answered by {result.answered_by} at "
                      f"{when(result.answered_at)}", markup=False, highlight=False)
    else:
        console.print(f"answer {result.feedback_id} was already answered by {result.answered_by} at "
                      f"{when(result.answered_at)}: unchanged", markup=False, highlight=False)


def _moment(value: str | None, zone: Any, *, end: bool = False) -> datetime | None:
    """``--since``/``--until``: a date is its local midnight in the report's zone (for
    ``--until``, the midnight after it: the day is included); a time as given."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return parse_now(value)
    moment = datetime.combine(day, time(0), tzinfo=zone)
    if end:
        moment += timedelta(days=1)
    return moment.astimezone(UTC)


def _figures(figures: dict[str, Any]) -> list[str]:
    if figures["question"] == "nps":
        score = "-" if figures["nps"] is None else f"{figures['nps']:+.1f}"
    else:
        score = "-" if figures["mean"] is None else f"{figures['mean']:.2f}"
    satisfied = pct(figures.get("satisfied_share", figures["promoters_share"]))
    return [figures["question"], str(figures["scored"]), score, pct(figures["detractors_share"]), satisfied,
            str(figures["answers"])]


def _duration(value: timedelta) -> str:
    """``answer_within`` as config writes it: ``24h``, ``2d``, ``90m``."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0 and (unit != "d" or seconds >= 2 * size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


FIGURE_COLUMNS = ["question", "scored", "NPS / mean", "detractors", "promoters / satisfied", "answers"]


@friendly_errors
def report_feedback(
    config: ConfigOption = Path("config.toml"),
    since: Annotated[str | None, typer.Option(
        "--since", help="From this date (local midnight) or time (ISO 8601); default: 12 periods back.")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="Up to this date (included) or time (ISO 8601, excluded); default: now.")] = None,
    by: Annotated[Literal["week", "month"], typer.Option("--by", help="Periods of the figures over time.")] = "week",
    timezone: Annotated[str | None, typer.Option(
        "--timezone", metavar="ZONE", help="Days and periods in this IANA zone (default: [profiles] timezone).")] = None,
    as_json: JsonOption = False,
) -> None:
    """NPS (promoters % - detractors %) and CSAT (mean score, share satisfied) by campaign,
    channel, stage, segment and week or month; response counts; the share of detractors
    answered within [feedback] answer_within."""
    cfg = load_app_config(config)
    zone = zone_named(timezone or cfg.profiles.timezone)
    if zone is None:
        raise NurtureError(f"unknown time zone {timezone!r} (use an IANA name such as 'Asia/Shanghai')")
    end = _moment(until, zone, end=True) or parse_now(None)
    data = feedback_report(engine_for(cfg), cfg, since=_moment(since, zone), until=end, by=by, zone=zone).to_dict()
    if as_json:
        print_json(data)
        return
    detractors = data["detractors"]
    within = cfg.feedback.answer_within
    console.print(key_values([
        ("answers received", f"{data['since']:%Y-%m-%d %H:%M} to {data['until']:%Y-%m-%d %H:%M} UTC "
                             f"({data['timezone']}, by {data['by']})"),
        ("detractors", detractors["count"]),
        (f"answered within {_duration(within)}", f"{detractors['answered_in_time']} of {detractors['count']} "
                                      f"({pct(detractors['share_answered_in_time'])}); "
                                      f"{detractors['answered']} answered in all"),
    ]))
    print_table(titled_table("overall", FIGURE_COLUMNS, [_figures(f) for f in data["totals"].values()],
                             right=tuple(FIGURE_COLUMNS[1:])))
    for dimension in DIMENSIONS:
        rows = data[f"by_{dimension}"]
        if rows:
            print_table(titled_table(f"by {dimension}", [dimension, *FIGURE_COLUMNS],
                                     [[str(row[dimension]), *_figures(row)] for row in rows],
                                     right=tuple(FIGURE_COLUMNS[1:])))
    print_table(titled_table(
        "responses (survey messages sent in the range, and their answers)",
        ["campaign", "channel", "asked", "answers", "scored", "rate"],
        [[row["campaign"], row["channel"], str(row["asked"]), str(row["answers"]), str(row["scored"]),
          pct(row["response_rate"])] for row in data["responses"]],
        right=("asked", "answers", "scored", "rate")))
