"""``nurture report loyalty``: outstanding points and their liability, points per month and
source, redemptions per kind, tiers and the moves between them (registered on the
``report`` group by :mod:`workers.cli.reports`).

Presentation only: the figures come from :func:`campaigns.reports.loyalty.loyalty_report`;
``--json`` prints its dict (times in ISO 8601), ``--csv`` its rows (formula-safe).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from campaigns.errors import NurtureError
from campaigns.reports import csvexport
from campaigns.reports.loyalty import CSV_COLUMNS, MEASURES, LoyaltyReport, loyalty_report, parse_month
from workers.cli.common import ConfigOption, JsonOption, console, engine_for, friendly_errors, load_app_config, parse_now
from workers.cli.tables import add_row, key_values, money, pct, print_json, print_table, titled_table

#: What ``report loyalty`` says when ``[loyalty]`` is off (nothing to show, exit 0).
DISABLED = "loyalty is off: set enabled = true under [loyalty] in config.toml (docs/loyalty.md)"


def _points(value: int) -> str:
    return f"{value:,}"


def _customers(count: int) -> str:
    return f"{count:,} customer" + ("" if count == 1 else "s")


def write_loyalty_csv(report: LoyaltyReport, path: Path) -> int:
    """The report's rows (:meth:`LoyaltyReport.csv_rows`) as CSV under :data:`CSV_COLUMNS`;
    returns the number of data rows. Rule and tier names come from the config, kinds from
    redemption imports: formula-like cells get a leading ``'``."""
    rows = report.csv_rows()
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csvexport.writer(handle)  # formula cells neutralised (CSV injection)
            writer.writerow(CSV_COLUMNS)
            writer.writerows(rows)
    except OSError as exc:
        raise NurtureError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return len(rows)


@friendly_errors
def report_loyalty(
    config: ConfigOption = Path("config.toml"),
    now: Annotated[str | None, typer.Option("--now", help="Report as of this time (ISO 8601).")] = None,
    first: Annotated[str | None, typer.Option(
        "--from", metavar="YYYY-MM", help="First month of the monthly figures (default: 11 months before --to).")] = None,
    last: Annotated[str | None, typer.Option(
        "--to", metavar="YYYY-MM", help="Last month of the monthly figures (default: the month of --now).")] = None,
    as_json: JsonOption = False,
    csv_file: Annotated[Path | None, typer.Option("--csv", metavar="FILE",
                                                  help="Also write the report as CSV to FILE.")] = None,
) -> None:
    """The points programme: outstanding points and their liability at [loyalty] point_value
    (debts apart), what expires within 30, 60 and 90 days, points earned, redeemed,
    expired, reversed and adjusted per month and source, redemptions per kind, customers
    per tier and the moves between tiers per month.

    Months are calendar months in [loyalty] timezone; by default the last 12 up to now.
    """
    cfg = load_app_config(config)
    if not cfg.loyalty.enabled:
        if as_json:
            print_json({"enabled": False, "message": DISABLED})
        else:
            console.print(f"[yellow]{escape(DISABLED)}[/]", highlight=False)
        return
    moment = parse_now(now)
    report = loyalty_report(engine_for(cfg), cfg.loyalty, now=moment,
                            first=parse_month(first) if first else None, last=parse_month(last) if last else None)
    if csv_file is not None:
        written = write_loyalty_csv(report, csv_file)
        if not as_json:
            console.print(f"wrote {written} rows to {csv_file}", highlight=False)
            return
    if as_json:
        print_json(report.to_dict())
        return
    _print(report)


def _print(report: LoyaltyReport) -> None:
    expiring = " · ".join(f"{_points(points)} within {days} days" for days, points in report.expiring.items())
    summary = key_values([
        ("outstanding points", f"{_points(report.outstanding)} ({_customers(report.holders)})"),
        ("liability", f"{money(report.liability)} at {report.point_value:g} a point"),
        ("debts (owed, apart)", f"{_points(report.debts)} ({_customers(report.debtors)})"),
        ("expiring", expiring),
    ])
    console.print(Panel(summary, title=f"loyalty as of {report.now:%Y-%m-%d %H:%M %Z}".strip(), title_align="left",
                        expand=False), highlight=False)

    months = Table(title=f"points per month ({report.timezone}), {report.months[0]} to {report.months[-1]}",
                   title_justify="left")
    columns = ("month", *MEASURES, "net", "tier ups", "tier downs")
    for column in columns:
        months.add_column(column, justify="left" if column == "month" else "right")
    for row in report.totals:
        add_row(months, row.month, *(_points(getattr(row, m)) for m in MEASURES), f"{row.net:+,}",
                str(row.upgrades), str(row.downgrades))
    months.add_section()
    add_row(months, "total", *(_points(sum(getattr(row, m) for row in report.totals)) for m in MEASURES),
            f"{sum(row.net for row in report.totals):+,}", str(sum(row.upgrades for row in report.totals)),
            str(sum(row.downgrades for row in report.totals)), style="bold")
    print_table(months)
    if report.by_source:
        print_table(titled_table(
            "points per month and source", ["month", "source", *MEASURES],
            [[row.month, row.source, *(_points(getattr(row, m)) for m in MEASURES)] for row in report.by_source],
            right=MEASURES))
    if report.redeemed_by_kind:
        print_table(titled_table("redeemed per month and kind", ["month", "kind", "points"],
                                 [[row.month, row.kind, _points(row.points)] for row in report.redeemed_by_kind],
                                 right=("points",)))
    print_table(titled_table(
        f"customers per tier now (of {report.customers:,})", ["tier", "customers", "share"],
        [[row.tier, f"{row.customers:,}", pct(row.share)] for row in report.tiers], right=("customers", "share")))
    if report.movements:
        print_table(titled_table("tier moves per month", ["month", "from", "to", "move", "customers"],
                                 [[row.month, row.from_tier, row.to_tier, row.direction, f"{row.customers:,}"]
                                  for row in report.movements], right=("customers",)))


__all__ = ["DISABLED", "report_loyalty", "write_loyalty_csv"]
