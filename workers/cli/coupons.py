"""Coupons: ``nurture import coupons`` (a pool's codes), ``nurture import
coupon-redemptions`` and ``nurture coupons`` (every pool at a glance).

Presentation only: the work is :mod:`campaigns.customers.loyalty.coupon_imports` and
:mod:`campaigns.customers.loyalty.coupons` (docs/coupons.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import rich.markup
import typer

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
from workers.cli.tables import print_json, print_table, titled_table

if TYPE_CHECKING:
    from campaigns.customers.loyalty.coupon_imports import CouponImportReport

FileArg = Annotated[Path, typer.Argument(help="CSV (.csv) or JSON Lines (.jsonl) file.", show_default=False)]
FormatOption = Annotated[str | None, typer.Option("--format", help="csv or jsonl (default: from the file extension).")]
PoolOption = Annotated[str, typer.Option(
    "--pool", metavar="NAME", show_default=False,
    help="The pool the codes go into, as campaigns name it (`coupon = { pool = \"NAME\" }`).")]
NowOption = Annotated[str | None, typer.Option(
    "--now", help="Record the import at this time (ISO 8601); default: now.")]
#: Rejected or duplicate rows shown before "use --json for all".
SHOWN_ROWS = 50


def _print_report(report: CouponImportReport, *, as_json: bool, what: str) -> None:
    """The import's counts and its rows not imported, by line; exit 3 if there are any."""
    if as_json:
        print_json(report.to_dict())
    else:
        left = report.not_imported
        colour = "green" if not left else "yellow"
        unchanged = f", {report.unchanged} already recorded" if report.unchanged else ""
        console.print(f"[{colour}]{what}: {report.imported} imported{unchanged}, {len(report.duplicates)} duplicate(s), "
                      f"{len(report.rejected)} rejected of {report.rows_read} rows[/] from "
                      f"{rich.markup.escape(report.path)}", highlight=False)
        for error in left[:SHOWN_ROWS]:
            console.print(f"  {report.path}:{error.line}: {error.reason}", markup=False, highlight=False)
        if len(left) > SHOWN_ROWS:
            console.print(f"  ... and {len(left) - SHOWN_ROWS} more (use --json for all)")
    if report.not_imported:
        raise typer.Exit(3)


@friendly_errors
def import_coupons(file: FileArg, pool: PoolOption, config: ConfigOption = Path("config.toml"),
                   file_format: FormatOption = None, now: NowOption = None, as_json: JsonOption = False) -> None:
    """Add coupon codes (a `code` column) to a pool. Duplicates and bad rows are listed by line; exit 3 if any.

    A code already in the pool (stored, or on an earlier line) is a duplicate: the first is
    kept, so importing a file again adds nothing. Campaigns take the codes one per message.
    """
    from campaigns.customers.loyalty.coupon_imports import check_pool_name, import_coupon_pool
    from campaigns.errors import DataImportError

    try:
        check_pool_name(pool)
    except DataImportError as exc:
        err_console.print("[bold red]error:[/] " + rich.markup.escape(f"{exc} (--pool)"), highlight=False)
        raise typer.Exit(2) from None
    if not file.is_file():
        raise DataImportError(f"{file}: file not found")
    cfg = load_app_config(config)
    generators = [c.name for c in cfg.campaigns if c.coupon and c.coupon.generated and c.coupon.pool_name(c.name) == pool]
    if generators:
        err_console.print("[yellow]warning:[/] " + rich.markup.escape(
            f"pool {pool!r} holds the codes {', '.join(generators)} generates: they never draw imported codes"),
            highlight=False)
    report = import_coupon_pool(engine_for(cfg), file, pool=pool, now=parse_now(now), file_format=file_format)
    _print_report(report, as_json=as_json, what=f"coupons into {pool}")


@friendly_errors
def import_redemptions(file: FileArg, config: ConfigOption = Path("config.toml"), file_format: FormatOption = None,
                       as_json: JsonOption = False) -> None:
    """Mark coupons redeemed: columns code and redeemed_at; pool, order_id and customer_id optional. Exit 3 if rows were rejected.

    Each coupon is redeemed once: a replayed row changes nothing; unknown codes, and a
    second redemption of a redeemed coupon, are listed by line. A code held by two pools
    needs the pool column. customer_id names the customer by any identifier (`phone:+86...`).
    """
    from campaigns.customers.loyalty.coupon_imports import import_redemptions as run_import
    from campaigns.errors import DataImportError

    if not file.is_file():
        raise DataImportError(f"{file}: file not found")
    cfg = load_app_config(config)
    report = run_import(engine_for(cfg), file, identity=cfg.identity, file_format=file_format)
    _print_report(report, as_json=as_json, what="coupon redemptions")


@friendly_errors
def coupons(config: ConfigOption = Path("config.toml"), as_json: JsonOption = False) -> None:
    """Coupon pools: codes available, assigned and redeemed, and the campaigns using each.

    A pool a campaign draws from with no code left is dry: that campaign pauses at its next
    message (`nurture status` says why) until codes are imported and it is resumed.
    """
    from campaigns.customers.loyalty.coupons import pool_statuses

    cfg = load_app_config(config)
    pools = pool_statuses(engine_for(cfg), cfg)
    if as_json:
        print_json({"pools": [pool.as_dict() for pool in pools]})
        return
    if not pools:
        console.print("no coupon pools: import codes with `nurture import coupons FILE --pool NAME`, or give a "
                      "campaign coupon = { generate = \"PREFIX\" }", markup=False, highlight=False)
        return
    rows = [[pool.pool, "generated" if pool.generated else "imported", str(pool.available), str(pool.assigned),
             str(pool.redeemed), ", ".join(pool.campaigns) or "-", "dry" if pool.dry else "-"]
            for pool in pools]
    print_table(titled_table("Coupon pools", ["pool", "codes", "available", "assigned", "redeemed", "campaigns",
                                              "state"], rows, right=("available", "assigned", "redeemed")))
    for pool in pools:
        if pool.dry:
            console.print(f"pool {pool.pool} is dry: {', '.join(pool.campaigns)} pause(s) at the next message; "
                          f"import codes with `nurture import coupons FILE --pool {pool.pool}`",
                          markup=False, highlight=False)
