"""The report commands: ``nurture report channels`` (customers, orders and revenue per
acquisition and purchase channel, also as CSV), ``nurture report campaign NAME`` and
``nurture report identity`` (customers per source, overlaps, omnichannel share, merges per
day; also as CSV); ``nurture report loyalty`` lives in :mod:`workers.cli.loyaltyreport`.

Presentation only: the numbers come from :mod:`campaigns.reports.customers`,
:mod:`campaigns.reports.campaign` and :mod:`campaigns.reports.identity`; ``--json`` prints
the report's dict (times in ISO 8601).
"""

from __future__ import annotations

from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table

from campaigns.config.values import zone_named
from campaigns.errors import NurtureError
from campaigns.reports import csvexport
from campaigns.reports.campaign import campaign_report
from campaigns.reports.customers import channel_report
from campaigns.reports.identity import identity_report
from campaigns.store.models import utcnow
from workers.cli.common import (
    ConfigOption,
    JsonOption,
    console,
    engine_for,
    friendly_errors,
    load_app_config,
    parse_now,
)
from workers.cli.loyaltyreport import report_loyalty
from workers.cli.tables import add_row, key_values, money, pct, print_json, print_table, titled_table

#: ``nurture report``: one command per report.
report_app = typer.Typer(help="Reports over customers, orders and profiles.", no_args_is_help=True)
report_app.command("loyalty")(report_loyalty)

#: CSV columns before the per-stage counts.
CSV_METRICS = ("customers", "buyers", "repeat_buyers", "repeat_rate", "orders", "revenue", "avg_order_value",
               "revenue_share")
#: The two channel dimensions of the report: key in the data, and its label.
DIMENSIONS = (("acquisition", "acquisition channel"), ("purchase", "purchase channel"))


def _csv_value(metric: str, value: Any) -> Any:
    if value is None:
        return ""
    if metric in ("revenue", "avg_order_value"):
        return f"{value:.2f}"
    return round(value, 4) if isinstance(value, float) else value


def write_channel_csv(data: dict[str, Any], path: Path) -> int:
    """One row per (dimension, channel): the metrics, then one ``stage_<name>`` column per
    stage. Returns the number of data rows written. Channel names come from imported data:
    a cell a spreadsheet would run as a formula is written with a leading ``'``."""
    rows = 0
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csvexport.writer(handle)  # formula cells neutralised (CSV injection)
            writer.writerow(["dimension", "channel", *CSV_METRICS, *(f"stage_{s}" for s in data["stages"])])
            for dimension, _ in DIMENSIONS:
                for row in data[dimension]:
                    writer.writerow([dimension, row["channel"], *(_csv_value(m, row[m]) for m in CSV_METRICS),
                                     *(row["stages"][s] for s in data["stages"])])
                    rows += 1
    except OSError as exc:
        raise NurtureError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return rows


@report_app.command("channels")
@friendly_errors
def report_channels(
    config: ConfigOption = Path("config.toml"),
    as_json: JsonOption = False,
    csv_file: Annotated[Path | None, typer.Option("--csv", metavar="FILE",
                                                  help="Also write the report as CSV to FILE.")] = None,
) -> None:
    """Customers, repeat purchase, orders, revenue and stages per acquisition and purchase channel."""
    cfg = load_app_config(config)
    data = channel_report(engine_for(cfg))
    if csv_file is not None:
        written = write_channel_csv(data, csv_file)
        if not as_json:
            console.print(f"wrote {written} rows to {csv_file}", highlight=False)
            return
    if as_json:
        print_json(data)
        return
    totals = data["totals"]
    for dimension, label in DIMENSIONS:
        metrics = Table(title=f"By {label}")
        for column in ("channel", "customers", "buyers", "repeat", "orders", "revenue", "AOV", "share"):
            metrics.add_column(column, justify="left" if column == "channel" else "right")
        for row in data[dimension]:
            add_row(metrics, row["channel"], str(row["customers"]), str(row["buyers"]), pct(row["repeat_rate"]),
                    str(row["orders"]), money(row["revenue"]), money(row["avg_order_value"]),
                    pct(row["revenue_share"]))
        print_table(metrics)
        stages = Table(title=f"Lifecycle stage of the customers, by {label}")
        for column in ("channel", *data["stages"]):
            stages.add_column(column, justify="left" if column == "channel" else "right")
        for row in data[dimension]:
            add_row(stages, row["channel"], *(str(row["stages"][s]) for s in data["stages"]))
        print_table(stages)
    aov = totals["revenue"] / totals["orders"] if totals["orders"] else None
    console.print(f"{totals['customers']} customers, {totals['buyers']} buyers, {totals['orders']} orders, "
                  f"revenue {money(totals['revenue'])}, AOV {money(aov)}", highlight=False)
    if data["as_of"] is None:
        console.print("[yellow]no profiles yet:[/] stage columns show everyone as unprofiled; "
                      "run `nurture profiles`", highlight=False)


@report_app.command("campaign")
@friendly_errors
def report_campaign(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    config: ConfigOption = Path("config.toml"),
    now: Annotated[str | None, typer.Option("--now", help="Report as of this time (ISO 8601).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Enrolled, held out, sent, failed, converted (treated vs holdout), lift with a 95 %
    interval, revenue attributed by last touch, and engagement (delivered, opened,
    clicked, replied, unsubscribed, not delivered, complaints), per step, variant and
    channel and per channel; the recommended products the messages showed, clicked and
    bought within the window, and the revenue from them."""
    cfg = load_app_config(config)
    moment = parse_now(now) if now else utcnow()
    data = campaign_report(engine_for(cfg), cfg, name, now=moment)
    if as_json:
        print_json(data)
        return
    lift = data["lift"]
    rates = data["conversion_rate"]
    engaged = data["engagement"]
    summary = key_values([
        ("enrolled (treated)", data["enrolled"]), ("held out", data["held_out"]),
        ("sent", data["sent"]), ("failed", data["failed"]), ("skipped", data["skipped"]),
        (f"converted ({data['goal']} within {data['window_days']:g} days)",
         f"{data['converted']['treated']} treated · {data['converted']['holdout']} holdout"),
        ("conversion rate", f"{pct(rates['treated'])} treated · {pct(rates['holdout'])} holdout"),
        ("lift", "n/a (no holdout)" if lift["absolute"] is None else
         f"{lift['absolute'] * 100:+.2f} pts (95% CI {lift['low'] * 100:+.2f} to {lift['high'] * 100:+.2f})"
         + (" significant" if lift["significant"] else " not significant")),
        ("attributed (last touch)", f"{data['attributed_orders']} orders · {money(data['attributed_revenue'])}"),
        *_recommended_lines(data["recommendations"]),
        ("engagement (of sent)", _engagement_line(data["engagement"])),
        ("not delivered", (f"{engaged['not_delivered']} ({pct(engaged['not_delivered_rate'])}) · "
                           f"complaints {engaged['complained']} ({pct(engaged['complaint_rate'])})")),
    ])
    console.print(Panel(summary, title=f"campaign {name}", title_align="left", expand=False), highlight=False)
    steps = Table(title="By step, variant and channel")
    for column in ("step", "variant", "channel", "queued", "sent", "failed", "skipped", "orders", "revenue"):
        steps.add_column(column, justify="left" if column in ("variant", "channel") else "right")
    for row in data["steps"]:
        add_row(steps, str(row["step"]), _variant(row["variant"]),
                 row["channel"], *(str(row.get(s, 0)) for s in ("queued", "sent", "failed", "skipped")),
                 str(row.get("attributed_orders", 0)), money(row.get("attributed_revenue", 0.0)))
    print_table(steps)

    engagement = Table(title="Engagement by step, variant and channel (messages with at least one response "
                             "of the kind; rates of sent)")
    for column in ("step", "variant", "channel", *ENGAGEMENT_COLUMNS):
        engagement.add_column(column, justify="left" if column in ("variant", "channel") else "right")
    for row in data["steps"]:
        add_row(engagement, str(row["step"]), _variant(row["variant"]), row["channel"],
                 *_engagement_cells(row.get("sent", 0), row["engagement"]))
    engagement.add_section()
    add_row(engagement, "total", "", "", *_engagement_cells(data["sent"], data["engagement"]), style="bold")
    print_table(engagement)

    channels = Table(title="By channel")
    for column in ("channel", "sent", "failed", "orders", "revenue", *ENGAGEMENT_COLUMNS[1:]):
        channels.add_column(column, justify="left" if column == "channel" else "right")
    for row in data["channels"]:
        add_row(channels, row["channel"], str(row["sent"]), str(row["failed"]), str(row["attributed_orders"]),
                 money(row["attributed_revenue"]), *_engagement_cells(row["sent"], row["engagement"])[1:])
    print_table(channels)


#: Columns of the engagement tables: counts, then rates (CTO = clicks per open).
ENGAGEMENT_COLUMNS = ("sent", "delivered", "not deliv.", "opened", "clicked", "replied", "unsub.", "complaints",
                      "open %", "click %", "CTO %", "reply %", "unsub. %")


def _recommended_lines(recommended: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary's lines on recommended products (none when no message showed any)."""
    if not recommended["shown"]:
        return []
    reasons = " · ".join(f"{row['reason']} {row['shown']}/{row['clicked']}/{row['bought']}"
                         for row in recommended["by_reason"])
    return [
        ("recommended products", f"{recommended['shown']} shown in {recommended['messages']} messages · "
                                 f"{recommended['clicked']} clicked ({pct(recommended['click_rate'])}) · "
                                 f"{recommended['bought']} bought ({pct(recommended['buy_rate'])})"),
        ("bought from them", f"{recommended['orders']} orders · {money(recommended['revenue'])} "
                             f"(shown/clicked/bought by reason: {reasons})"),
    ]


def _variant(variant: int | None) -> str:
    return "-" if variant is None else chr(ord("A") + variant)


def _engagement_cells(sent: int, engagement: dict[str, Any]) -> list[str]:
    """The cells of :data:`ENGAGEMENT_COLUMNS` for one row of the report."""
    counts = ("delivered", "not_delivered", "opened", "clicked", "replied", "unsubscribed", "complained")
    rates = ("open_rate", "click_rate", "click_to_open_rate", "reply_rate", "unsubscribe_rate")
    return [str(sent), *(str(engagement[c]) for c in counts), *(pct(engagement[r]) for r in rates)]


def _engagement_line(engagement: dict[str, Any]) -> str:
    e = engagement
    return (f"delivered {e['delivered']} ({pct(e['delivery_rate'])}) · opened {e['opened']} ({pct(e['open_rate'])})"
            f" · clicked {e['clicked']} ({pct(e['click_rate'])}, {pct(e['click_to_open_rate'])} of opens)"
            f" · replied {e['replied']} ({pct(e['reply_rate'])})"
            f" · unsubscribed {e['unsubscribed']} ({pct(e['unsubscribe_rate'])})")


#: CSV columns of ``report identity``: one row per source, overlap, channel and day, each
#: filling the columns that apply to it.
IDENTITY_CSV = ("section", "name", "other", "customers", "omnichannel", "merges", "unmerged", "share",
                "share_of_other")


def write_identity_csv(data: dict[str, Any], path: Path) -> int:
    """``report identity`` as CSV in :data:`IDENTITY_CSV` (sections ``source``, ``overlap``,
    ``omnichannel``, ``merges``); returns the number of data rows. Source and channel names
    come from imported data: formula-like cells get a leading ``'``."""
    def share(value: float | None) -> Any:
        return "" if value is None else round(value, 4)

    rows: list[list[Any]] = [
        *(["source", r["source"], "", r["customers"], "", "", "", share(r["share"]), ""] for r in data["sources"]),
        *(["overlap", r["first"], r["second"], r["customers"], "", "", "", share(r["share_of_first"]),
           share(r["share_of_second"])] for r in data["overlaps"]),
        *(["omnichannel", r["channel"], "", r["customers"], r["omnichannel"], "", "", share(r["share"]), ""]
          for r in data["omnichannel"]),
        *(["merges", r["day"], "", "", "", r["merges"], r["unmerged"], "", ""] for r in data["merges"]),
    ]
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csvexport.writer(handle)  # formula cells neutralised (CSV injection)
            writer.writerow(IDENTITY_CSV)
            writer.writerows(rows)
    except OSError as exc:
        raise NurtureError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return len(rows)


def _since(value: str | None, zone: Any) -> datetime | None:
    """``--since``: a date is its local midnight in the report's zone; a time as given."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return parse_now(value)
    return datetime.combine(day, time(0), tzinfo=zone)


@report_app.command("identity")
@friendly_errors
def report_identity(
    config: ConfigOption = Path("config.toml"),
    since: Annotated[str | None, typer.Option(
        "--since", help="Count merges from this date (local midnight) or time (ISO 8601) on.")] = None,
    timezone: Annotated[str | None, typer.Option(
        "--timezone", metavar="ZONE", help="The days of merges in this IANA zone (default: [profiles] timezone).")] = None,
    as_json: JsonOption = False,
    csv_file: Annotated[Path | None, typer.Option("--csv", metavar="FILE",
                                                  help="Also write the report as CSV to FILE.")] = None,
) -> None:
    """One person across systems: customers per source, overlaps between sources, the
    omnichannel share per acquisition channel, and merges per day.

    A customer counts under every source it holds an id from (`(none)`: an import without
    `--source`); omnichannel means ids from two or more sources. `--since` limits the
    merges only. Merges later undone are counted apart.
    """
    cfg = load_app_config(config)
    zone = zone_named(timezone or cfg.profiles.timezone)
    if zone is None:
        raise NurtureError(f"unknown time zone {timezone!r} (use an IANA name such as 'Asia/Shanghai')")
    data = identity_report(engine_for(cfg), zone=zone, since=_since(since, zone))
    if csv_file is not None:
        written = write_identity_csv(data, csv_file)
        if not as_json:
            console.print(f"wrote {written} rows to {csv_file}", highlight=False)
            return
    if as_json:
        print_json(data)
        return
    print_table(titled_table(
        f"customers per source (of {data['customers']})", ["source", "customers", "share"],
        [[r["source"], str(r["customers"]), pct(r["share"])] for r in data["sources"]], right=("customers", "share")))
    if data["overlaps"]:
        print_table(titled_table(
            "overlaps: customers known to both", ["source", "and source", "customers", "of first", "of second"],
            [[r["first"], r["second"], str(r["customers"]), pct(r["share_of_first"]), pct(r["share_of_second"])]
             for r in data["overlaps"]], right=("customers", "of first", "of second")))
    omni = Table(title="omnichannel share by acquisition channel (ids from 2+ sources)", title_justify="left")
    for column in ("channel", "customers", "omnichannel", "share"):
        omni.add_column(column, justify="left" if column == "channel" else "right")
    for row in data["omnichannel"]:
        add_row(omni, row["channel"], str(row["customers"]), str(row["omnichannel"]), pct(row["share"]))
    total = data["omnichannel_total"]
    omni.add_section()
    add_row(omni, "total", str(total["customers"]), str(total["omnichannel"]), pct(total["share"]), style="bold")
    print_table(omni)
    since_text = f" since {since}" if since else ""
    print_table(titled_table(
        f"merges per day ({data['timezone']}){since_text}: {data['merges_total']}, "
        f"{data['unmerged_total']} more undone", ["day", "merges", "undone"],
        [[r["day"], str(r["merges"]), str(r["unmerged"])] for r in data["merges"]], right=("merges", "undone")))
