"""``nurture recommend refresh`` (the refresh by hand) and ``nurture recommend evaluate``
(offline evaluation against a popularity baseline).

Presentation only: the work is :mod:`campaigns.recommendations`; docs/recommendations.md.
"""

from __future__ import annotations

import sys
from datetime import UTC, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from workers.cli.common import ConfigOption, JsonOption, console, engine_for, err_console, friendly_errors, \
    load_app_config, parse_now
from workers.cli.tables import key_values, pct, print_json, print_table, titled_table, when

#: ``nurture recommend``: the recommendations refresh and its evaluation.
recommend_app = typer.Typer(help="Product recommendations: refresh them by hand, evaluate them offline.",
                            no_args_is_help=True)

NowOption = Annotated[str | None, typer.Option(
    "--now", help="Learn from the paid orders before this time (ISO 8601); default: now.")]


def _progress(as_json: bool, total: int) -> Progress:
    return Progress(TextColumn("{task.description:<14}"), BarColumn(), TimeElapsedColumn(), console=err_console,
                    disable=as_json or not sys.stderr.isatty(), transient=True)


@recommend_app.command("refresh")
@friendly_errors
def refresh(config: ConfigOption = Path("config.toml"), now: NowOption = None, as_json: JsonOption = False) -> None:
    """Recompute every customer's recommendations now and replace the tables atomically.

    What the scheduler runs at `[recommendations] cron` (with `enabled = true`); safe to
    repeat, and readers see the old recommendations until the new ones are all written.
    Prints the associations found, the customers with recommendations, the recommendations
    by reason and the time each step took.
    """
    from campaigns.recommendations.refresh import STEPS, refresh_recommendations

    cfg = load_app_config(config)
    moment = parse_now(now)
    engine = engine_for(cfg)
    with _progress(as_json, len(STEPS)) as progress:
        task = progress.add_task("starting", total=len(STEPS))

        def step(name: str) -> None:
            done = STEPS.index(name) if name in STEPS else 0
            progress.update(task, description=name, completed=done)

        report = refresh_recommendations(engine, cfg.recommendations, now=moment, progress=step)
    if as_json:
        print_json(report.to_dict())
        return
    console.print(key_values([
        ("as of", f"{when(moment.astimezone(UTC))} UTC"),
        ("customers who bought", f"{report.buyers:,}"),
        ("associations", f"{report.associations:,} (support >= {cfg.recommendations.min_support}, "
                         f"lift > {cfg.recommendations.min_lift:g})"),
        ("customers with recommendations", f"{report.customers:,}"),
        ("recommendations", f"{report.recommendations:,}"),
        ("time", f"{report.total_seconds:.2f} s"),
    ]))
    print_table(titled_table("by reason", ["reason", "recommendations"],
                             [[reason, f"{count:,}"] for reason, count in report.by_reason.items()],
                             right=("recommendations",)))
    print_table(titled_table("steps", ["step", "seconds"],
                             [[name, f"{seconds:.3f}"] for name, seconds in report.seconds.items()],
                             right=("seconds",)))


def _ks(value: str) -> list[int]:
    try:
        ks = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise typer.BadParameter(f"{value!r}: give whole numbers separated by commas, e.g. 3,5,10") from None
    if not ks or ks[0] < 1 or ks[-1] > 100:
        raise typer.BadParameter(f"{value!r}: each k between 1 and 100, e.g. 3,5,10")
    return ks


def _horizon(value: str) -> timedelta:
    from campaigns.config.durations import parse_duration

    try:
        horizon = parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not horizon:
        raise typer.BadParameter("the horizon must be longer than 0, e.g. 30d")
    return horizon


@recommend_app.command("evaluate")
@friendly_errors
def evaluate(
    as_of: Annotated[str, typer.Option("--as-of", metavar="DATE", show_default=False,
                                       help="Train on the paid orders before this date or time (ISO 8601, UTC "
                                            "unless it has an offset).")],
    horizon: Annotated[str, typer.Option("--horizon", help="Test on the paid orders in [DATE, DATE + horizon).")]
    = "30d",
    k: Annotated[str, typer.Option("--k", help="The k of hit rate@k, recall@k, coverage@k, comma-separated.")]
    = "3,5,10",
    config: ConfigOption = Path("config.toml"),
    as_json: JsonOption = False,
) -> None:
    """Train as of DATE, test on what customers bought in the horizon, beside a popularity baseline.

    Hit rate@k: the share of the customers who bought in the horizon who bought at least
    one of their first k recommendations. Recall@k: per customer, the share of the
    distinct products they bought that were among their first k, averaged. Coverage@k:
    the share of the catalogue recommended to anyone. The baseline (everyone gets the best
    sellers, same exclusions) is computed in the same run. The live tables are not touched.
    """
    from campaigns.recommendations.evaluation import evaluate as run_evaluation

    moment = parse_now(as_of)
    ks = _ks(k)
    span = _horizon(horizon)
    cfg = load_app_config(config)
    engine = engine_for(cfg)
    with _progress(as_json, 1) as progress:
        progress.add_task("evaluating", total=None)
        report = run_evaluation(engine, cfg.recommendations, as_of=moment, horizon=span, ks=ks)
    if as_json:
        print_json(report.to_dict())
        return
    console.print(key_values([
        ("trained on", f"paid orders before {when(moment.astimezone(UTC))} UTC "
                       f"({report.training.buyers:,} customers, {report.training.associations:,} associations)"),
        ("tested on", f"{report.customers:,} customers who bought in the next {horizon} "
                      f"({report.test_items:,} customer-product purchases)"),
        ("catalogue", f"{report.catalogue:,} products"),
    ]))
    rows = []
    for model, baseline in zip(report.model, report.baseline, strict=True):
        for name, figures in (("recommendations", model), ("popularity baseline", baseline)):
            rows.append([f"{figures.k}", name, pct(figures.hit_rate), pct(figures.recall), pct(figures.coverage)])
    print_table(titled_table("evaluation", ["k", "model", "hit rate", "recall", "coverage"], rows,
                             right=("k", "hit rate", "recall", "coverage")))
    for note in report.notes:
        console.print(f"note: {note}", markup=False, highlight=False)


__all__ = ["evaluate", "recommend_app", "refresh"]
