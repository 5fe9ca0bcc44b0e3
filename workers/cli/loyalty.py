"""The points ledger by hand: ``nurture import redemptions``, ``nurture points CUSTOMER``
(balance, tier, lots, history), ``nurture points adjust`` and ``nurture loyalty run``
(the daily job).

Presentation only: the work is :mod:`campaigns.customers.loyalty` (redemptions, adjustments,
the daily job) and :mod:`campaigns.reports.points` (what a customer holds); docs/loyalty.md.
``nurture points`` is a group whose default is ``show``, as ``nurture customer`` is:
``nurture points C1`` and ``nurture points show C1`` are the same.
"""

from __future__ import annotations

import secrets
from datetime import UTC
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import rich.markup
import typer
from rich.panel import Panel
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from campaigns.errors import DataImportError, UnknownCustomerError
from workers.cli.common import (
    ConfigOption,
    JsonOption,
    console,
    engine_for,
    err_console,
    friendly_errors,
    load_app_config,
    parse_now,
)
from workers.cli.tables import key_values, print_json, print_table, titled_table, when
from workers.cli.views import DefaultShowGroup

if TYPE_CHECKING:
    import sqlalchemy as sa

    from campaigns.config.schema import AppConfig

#: ``nurture points``: one customer's points (the default, ``show``) and manual adjustments.
points_app = typer.Typer(
    cls=DefaultShowGroup,
    no_args_is_help=True,
    help="One customer's points: balance, tier, lots and history (`nurture points ID` is `nurture points show ID`), "
         "and manual adjustments.",
)
#: ``nurture loyalty``: the programme's jobs by hand.
loyalty_app = typer.Typer(help="The loyalty programme's daily job, by hand.", no_args_is_help=True)

CustomerArg = Annotated[str, typer.Argument(
    metavar="CUSTOMER", show_default=False,
    help="Any identifier of the customer: `C000007`, `pos:88`, `phone:+8613800138000`, `email:a@b.cn`, `unionid:...`.")]
NowOption = Annotated[str | None, typer.Option(
    "--now", help="As of this time (ISO 8601); default: now.")]
FileArg = Annotated[Path, typer.Argument(help="CSV (.csv) or JSON Lines (.jsonl) file.", show_default=False)]
FormatOption = Annotated[str | None, typer.Option("--format", help="csv or jsonl (default: from the file extension).")]
SourceOption = Annotated[str | None, typer.Option(
    "--source", metavar="NAME",
    help="The system the file comes from: a bare customer_id is the customer's id there (`NAME:<customer_id>`), "
         "as in `nurture import orders --source NAME`. `kind:value` names any identifier either way.")]
#: Bad or refused rows printed before "use --json for all".
SHOWN_ROWS = 50


def require_loyalty(cfg: AppConfig, config: Path, what: str) -> None:
    """Refuse, with the key to set, while ``[loyalty] enabled`` is false."""
    if not cfg.loyalty.enabled:
        # Printed here, escaped: friendly_errors reads a message as rich markup, which
        # would drop "[loyalty]" as a style tag.
        err_console.print("[bold red]error:[/] " + rich.markup.escape(
            f"loyalty is off: set enabled = true under [loyalty] in {config} to {what}"), highlight=False)
        raise typer.Exit(1)


def _customer_id(engine: sa.Engine, cfg: AppConfig, reference: str) -> int:
    from campaigns.customers.lookups import customer_row_id

    found = customer_row_id(engine, reference, rules=cfg.identity)
    if found is None:
        raise UnknownCustomerError(reference)
    return found


# --------------------------------------------------------------------------- import redemptions


@friendly_errors
def import_redemptions(file: FileArg, config: ConfigOption = Path("config.toml"), source: SourceOption = None,
                       file_format: FormatOption = None, now: NowOption = None, as_json: JsonOption = False) -> None:
    """Redeem points: columns redemption_id, customer_id, points, kind, redeemed_at (note optional). Exit 3 if rows were refused or rejected.

    Each redemption is all or nothing: one asking more than the customer may redeem for its
    kind at its time is refused with the balance allowed, and nothing of it is written.
    redemption_id is the idempotency key: importing the file again changes nothing (its rows
    are counted as duplicates). Bad rows are listed by line and the good ones applied.
    """
    from campaigns.customers.loyalty.redemption_imports import import_redemptions as run_import

    if not file.is_file():
        raise DataImportError(f"{file}: file not found")
    cfg = load_app_config(config)
    require_loyalty(cfg, config, "import redemptions")
    engine = engine_for(cfg)
    size = file.stat().st_size
    show_bar = not as_json and sys.stderr.isatty() and size > 0
    with Progress(
        TextColumn("importing redemptions"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=err_console, disable=not show_bar, transient=True,
    ) as progress:
        task = progress.add_task("redemptions", total=size or None)
        report = run_import(engine, file, loyalty=cfg.loyalty, now=parse_now(now), identity=cfg.identity,
                            source=source, file_format=file_format,
                            progress=lambda done: progress.update(task, completed=done))
    if as_json:
        print_json(report.to_dict())
    else:
        colour = "yellow" if report.failed else "green"
        console.print(
            f"[{colour}]redemptions: {report.redeemed} redeemed ({report.points} points), {report.duplicates} "
            f"duplicate(s), {len(report.refused)} refused, {len(report.rejected)} rejected of {report.rows_read} "
            f"rows[/] from {rich.markup.escape(str(file))}", highlight=False)
        problems = report.problems()
        for line, reason in problems[:SHOWN_ROWS]:
            console.print(f"  {file}:{line}: {reason}", markup=False, highlight=False)
        if len(problems) > SHOWN_ROWS:
            console.print(f"  ... and {len(problems) - SHOWN_ROWS} more (use --json for all)")
    if report.failed:
        raise typer.Exit(3)


# --------------------------------------------------------------------------- points


def _signed(points: int) -> str:
    return f"{points:+,}"


@points_app.command("show")
@friendly_errors
def show(
    customer: CustomerArg,
    config: ConfigOption = Path("config.toml"),
    limit: Annotated[int, typer.Option("--limit", min=0, max=10_000,
                                       help="History entries to show, newest first.")] = 20,
    now: NowOption = None,
    as_json: JsonOption = False,
) -> None:
    """A customer's points: balance and balance by kind, tier and the next one, the lots still
    holding points (source, rule, earned, last local day valid, remaining) and the ledger's
    history, newest first.

    Dates are in the customer's own time zone, the one their points' validity is counted in.
    """
    from campaigns.reports.points import customer_points

    cfg = load_app_config(config)
    if not cfg.loyalty.enabled:
        err_console.print("[yellow]warning:[/] loyalty is off ([loyalty] enabled = false): nothing earns points",
                          highlight=False)
    engine = engine_for(cfg)
    customer_id = _customer_id(engine, cfg, customer)
    with engine.connect() as conn:
        data = customer_points(conn, cfg.loyalty, customer_id, now=parse_now(now), history_limit=limit)
    data = {"customer": customer, **data}
    if as_json:
        print_json(data)
        return
    expiry = data["next_expiry"]
    to_next = data["to_next_tier"]
    next_tier = "-" if data["next_tier"] is None else f"{data['next_tier']} ({to_next:,g} to go)"
    console.print(Panel(key_values([
        ("balance", f"{data['balance']:,}"),
        ("tier", data["tier"] + (f" since {when(data['tier_since'])}" if data["tier_since"] else "")),
        ("next tier", next_tier),
        ("benefits", ", ".join(data["tier_benefits"]) or None),
        ("next expiry", None if expiry is None else f"{expiry['points']:,} valid through {expiry['valid_through']}"),
        ("time zone", data["timezone"]),
    ]), title=Text(f"points of {customer} as of {when(data['as_of'].astimezone(UTC))} UTC"), title_align="left", expand=False),
        highlight=False)
    print_table(titled_table("balance by kind", ["kind", "redeemable"],
                             [[kind, f"{points:,}"] for kind, points in data["by_kind"].items()],
                             right=("redeemable",)))
    print_table(titled_table(
        f"lots: {len(data['lots'])}",
        ["source", "ref", "rule", "earned", "valid through", "points", "remaining", "kinds"],
        [[lot["source"], lot["source_ref"], lot["rule"], str(lot["earned_on"]),
          str(lot["valid_through"] or "never"), f"{lot['points']:,}", f"{lot['remaining']:,}",
          ", ".join(lot["kinds"])] for lot in data["lots"]],
        right=("points", "remaining"),
    ))
    if limit:
        print_table(titled_table(
            f"history: {data['history_total']}", ["occurred", "entry", "points", "source", "ref", "detail"],
            [[when(e["occurred_at"]), e["kind"], _signed(e["points"]), e["source"], e["source_ref"],
              e["detail"] or "-"] for e in data["history"]],
            total=data["history_total"], right=("points",),
        ))


@points_app.command("adjust", context_settings={"ignore_unknown_options": True})
@friendly_errors
def adjust(
    customer: CustomerArg,
    points: Annotated[int, typer.Argument(
        metavar="POINTS", show_default=False, help="Points to add (a new lot, redeemable for everything) or, negative, to take.")],
    reason: Annotated[str, typer.Option("--reason", show_default=False,
                                        help="Why (kept on the ledger entry). Required.")],
    adjustment_id: Annotated[str | None, typer.Option(
        "--id", metavar="ADJUSTMENT_ID",
        help="Your id for the adjustment: giving it again changes nothing. Default: a new one, printed.")] = None,
    config: ConfigOption = Path("config.toml"),
    now: NowOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add or take points by hand, with a reason. Exit 3 if refused.

    Added points are a lot valid `[loyalty] adjustments_valid_for`; taken points are spent like
    a redemption of any kind and refused whole beyond the balance. The same `--id` again is
    a duplicate and changes nothing.
    """
    from campaigns.customers.loyalty.redeeming import adjust as run_adjust

    if not reason.strip():
        err_console.print("[bold red]error:[/] --reason must say why", highlight=False)
        raise typer.Exit(2)
    if adjustment_id is not None and not 1 <= len(adjustment_id.strip()) <= 160:
        err_console.print("[bold red]error:[/] --id: 1 to 160 characters", highlight=False)
        raise typer.Exit(2)
    cfg = load_app_config(config)
    require_loyalty(cfg, config, "adjust points")
    moment = parse_now(now)
    key = adjustment_id.strip() if adjustment_id else f"adj-{moment:%Y%m%d%H%M%S}-{secrets.token_hex(4)}"
    engine = engine_for(cfg)
    customer_id = _customer_id(engine, cfg, customer)
    result = run_adjust(engine, cfg.loyalty, customer_id=customer_id, points=points, adjustment_id=key,
                        reason=reason.strip()[:500], at=moment, now=moment)
    if as_json:
        print_json({"customer": customer, "adjustment_id": key, "status": result.status, "points": result.points,
                    "reason": result.reason})
    elif result.status == "adjusted":
        console.print(f"[green]adjusted[/] {customer}: {_signed(points)} points (adjustment id {key})",
                      highlight=False)
    elif result.status == "duplicate":
        console.print(f"duplicate: adjustment {key} was already recorded; nothing changed", highlight=False)
    else:
        err_console.print("[bold red]refused:[/] " + rich.markup.escape(f"{result.reason} (adjustment id {key})"),
                          highlight=False)
    if result.status == "refused":
        raise typer.Exit(3)


# --------------------------------------------------------------------------- loyalty run


def _done(value: Any) -> str:
    """A step's report of numbers as ``key n, key n`` (for steps without a sentence of their own)."""
    if isinstance(value, dict):
        return ", ".join(f"{key.replace('_', ' ')} {_done(item)}" for key, item in value.items()
                         if not isinstance(item, list)) or "-"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _step_lines(data: dict[str, Any]) -> list[tuple[str, str]]:
    """One line per step of the job, in the order it ran: what it did."""
    earned, refunds, expired, tiers = data["earned"], data["refunds"], data["expired"], data["tiers"]
    entered = ", ".join(f"{tier} {count}" for tier, count in sorted(tiers.get("entered", {}).items()))
    sentences = {
        "earn": f"{earned['points']:,} points in {earned['lots']:,} lots ({earned['skipped']:,} rows earned nothing)",
        "refunds": f"{refunds['points']:,} points taken back from {refunds['lots']:,} lots "
                   f"({refunds['owed']:,} owed, {refunds['forgiven']:,} forgiven)",
        "settle": f"{data['settled']:,} debt(s) settled",
        "expire": f"{expired['points']:,} points expired from {expired['lots']:,} lots",
        "tiers": f"{tiers['upgraded']:,} up, {tiers['downgraded']:,} down, {tiers['in_grace']:,} into grace, "
                 f"{tiers['recovered']:,} recovered" + (f" (entered: {entered})" if entered else ""),
    }
    # Steps added to the job later (referrals ...) are shown by their report's numbers.
    return [(step, sentences.get(step) or _done(data.get(step, "-"))) for step in data["seconds"]]


@loyalty_app.command("run")
@friendly_errors
def run(config: ConfigOption = Path("config.toml"), now: NowOption = None, as_json: JsonOption = False) -> None:
    """Run the daily job now: earn, take back refunds, settle debts, expire lots, move tiers.

    What the scheduler runs at `[loyalty] cron`; every step is safe to repeat. Prints what
    each step did and how long it took.
    """
    from campaigns.customers.loyalty.daily import run_loyalty

    cfg = load_app_config(config)
    require_loyalty(cfg, config, "run the daily job")
    moment = parse_now(now)
    report = run_loyalty(engine_for(cfg), cfg.loyalty, now=moment)
    data = report.to_dict()
    if as_json:
        print_json({"now": moment, **data})
        return
    seconds = data["seconds"]
    print_table(titled_table(
        f"loyalty run as of {when(moment.astimezone(UTC))} UTC", ["step", "done", "seconds"],
        [[step, done, f"{seconds.get(step, 0):.3f}"] for step, done in _step_lines(data)],
        right=("seconds",),
    ))


__all__ = ["adjust", "import_redemptions", "loyalty_app", "points_app", "require_loyalty", "run", "show"]
