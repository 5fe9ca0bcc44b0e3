"""Read-only CLI views: ``nurture segments``, ``nurture customer ID`` and ``nurture report``.

Presentation only: the numbers come from :mod:`campaigns.reports.customers`. Each command prints
rich tables, or with ``--json`` the report's dict as JSON (times in ISO 8601). Registered
on the main Typer app by the import at the end of ``workers/cli/main.py``.

``nurture customer`` shows e-mail addresses and phone numbers in full, in the table view
as in ``--json``: it is an operator tool for looking at one person's record, and a masked
address cannot be checked against a complaint or a suppression list.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from campaigns.reports import csvexport
from campaigns.errors import NurtureError
from campaigns.store.models import utcnow
from campaigns.reports.customers import channel_report, customer_view, segment_counts
from workers.cli.main import ConfigOption, JsonOption, _engine_for, _load, _parse_now, app, console, friendly_errors

report_app = typer.Typer(help="Reports over customers, orders and profiles.", no_args_is_help=True)
app.add_typer(report_app, name="report")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _when(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M}"


def _add_row(table: Table, *cells: str, style: str | None = None) -> None:
    """Add a row of plain text: stored values (names, channels, errors) are never read as
    rich markup, so ``[/b]`` in a name prints as is instead of failing."""
    table.add_row(*(Text(cell) for cell in cells), style=style)


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_table(table: Table) -> None:
    """Print a table at its natural width even on a narrow terminal: numbers are never
    truncated to an ellipsis (the terminal wraps the long lines instead)."""
    needed = Measurement.get(console, console.options.update(max_width=10_000), table).maximum
    if needed <= console.width:
        console.print(table)
    else:  # Console.print clamps width to the console's, so print through a wider twin.
        Console(width=needed, soft_wrap=True, force_terminal=console.is_terminal,
                color_system=console.color_system or None).print(table)


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


# --------------------------------------------------------------------------- segments


@app.command()
@friendly_errors
def segments(config: ConfigOption = Path("config.toml"), as_json: JsonOption = False) -> None:
    """Customers per lifecycle stage and acquisition channel, and per RFM segment."""
    cfg = _load(config)
    data = segment_counts(_engine_for(cfg), cfg)
    if as_json:
        _print_json(data)
        return
    as_of = f" (profiles as of {_when(data['as_of'])} UTC)" if data["as_of"] else ""
    matrix = Table(title=f"Lifecycle stage × acquisition channel{as_of}")
    matrix.add_column("stage")
    for channel in data["channels"]:
        matrix.add_column(channel, justify="right")
    matrix.add_column("total", justify="right", style="bold")
    for stage in data["stages"]:
        _add_row(matrix, stage, *(str(data["matrix"][stage][c]) for c in data["channels"]),
                       str(data["stage_totals"][stage]))
    matrix.add_section()
    _add_row(matrix, "total", *(str(data["channel_totals"][c]) for c in data["channels"]), str(data["customers"]),
                   style="bold")
    _print_table(matrix)

    rfm = Table(title="RFM segment")
    rfm.add_column("segment")
    rfm.add_column("customers", justify="right")
    rfm.add_column("share", justify="right")
    for row in data["segments"]:
        _add_row(rfm, row["segment"], str(row["count"]), _pct(row["share"]))
    rfm.add_section()
    _add_row(rfm, "total", str(data["customers"]), _pct(1.0 if data["customers"] else None), style="bold")
    _print_table(rfm)

    unprofiled = data["customers"] - data["profiled"]
    if data["profiled"] == 0:
        console.print("[yellow]no profiles yet:[/] run `nurture profiles` to compute stages and RFM segments",
                      highlight=False)
    elif unprofiled > 0:
        console.print(f"[yellow]{unprofiled} customer(s) have no profile yet:[/] run `nurture profiles` to "
                      "include them", highlight=False)


# --------------------------------------------------------------------------- customer


def _key_values(rows: list[tuple[str, Any]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows:
        _add_row(grid, key, _text(value))
    return grid


def _table(title: str, columns: list[str], rows: list[list[str]], *, total: int | None = None,
           right: tuple[str, ...] = ()) -> Table:
    shown = f"{title} ({len(rows)} of {total}, newest first)" if total is not None and total > len(rows) else title
    table = Table(title=shown, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        _add_row(table, *row)
    return table


@app.command()
@friendly_errors
def customer(
    external_id: Annotated[str, typer.Argument(metavar="ID", help="The customer's id (customer_id of the import).")],
    config: ConfigOption = Path("config.toml"),
    as_json: JsonOption = False,
) -> None:
    """One customer: profile, stage and segment history, orders, consents, deliveries, responses.

    Addresses are shown in full (an operator tool).
    """
    cfg = _load(config)
    view = customer_view(_engine_for(cfg), external_id)
    if view is None:
        raise NurtureError(f"customer {external_id!r} not found")
    if as_json:
        _print_json(view)
        return
    person = view["customer"]
    attributes = ", ".join(f"{k}={v}" for k, v in sorted(person["attributes"].items())) or None
    console.print(Panel(_key_values([
        ("name", person["name"]), ("email", person["email"]), ("phone", person["phone"]),
        ("wechat", person["wechat_openid"]), ("acquired via", person["acquisition_channel"]),
        ("time zone", person["timezone"]), ("locale", person["locale"]),
        ("created", _when(person["created_at"])), ("attributes", attributes),
        ("suppressed", ", ".join(f"{s['channel']}: {s['address']} ({s['reason']})" for s in view["suppressions"])
         if view["suppressed"] else "no"),
    ]), title=Text(f"customer {person['external_id']}"), title_align="left", expand=False), highlight=False)

    profile = view["profile"]
    if profile is None:
        console.print("no profile yet (run `nurture profiles`)")
    else:
        scores = ("-" if profile["r_score"] is None
                  else f"R{profile['r_score']} F{profile['f_score']} M{profile['m_score']}")
        console.print(Panel(_key_values([
            ("stage", f"{profile['stage']} since {_when(profile['stage_since'])}"),
            ("RFM segment", profile["rfm_segment"]), ("scores", scores),
            ("orders", profile["orders_count"]), ("total spent", _money(profile["total_spent"])),
            ("average order", _money(profile["avg_order_value"])),
            ("first order", _when(profile["first_order_at"])), ("last order", _when(profile["last_order_at"])),
            ("days since last order", (utcnow() - profile["last_order_at"]).days
             if profile["last_order_at"] else None),
            ("changed by the recompute as of", _when(profile["as_of"])),
        ]), title="profile", title_align="left", expand=False), highlight=False)

    for name, key in (("stage", "stage_history"), ("segment", "segment_history")):
        if view[key]:
            _print_table(_table(f"{name} history", ["entered", "value", "previous"],
                                [[_when(t["entered_at"]), t["value"], _text(t["previous"])] for t in view[key]]))

    _print_table(_table(
        f"orders: {view['orders_total']}", ["ordered", "order", "channel", "amount", "items"],
        [[_when(o["ordered_at"]), o["order_id"], _text(o["channel"]), _money(o["amount"]),
          _clip(", ".join(f"{i['sku']}×{i['quantity']}" for i in o["items"]) or "-")] for o in view["orders"]],
        total=view["orders_total"], right=("amount",),
    ))
    if view["consents"]:
        _print_table(_table("consents", ["channel", "status", "source", "recorded"],
                             [[c["channel"], c["status"], _text(c["source"]), _when(c["recorded_at"])]
                              for c in view["consents"]]))
    _print_table(_table(
        f"deliveries: {view['deliveries_total']}",
        ["created", "campaign", "step", "channel", "status", "attempts", "sent", "last error"],
        [[_when(d["created_at"]), d["campaign"], str(d["step"]), d["channel"], d["status"], str(d["attempts"]),
          _when(d["sent_at"]), _clip(_text(d["last_error"]))] for d in view["deliveries"]],
        total=view["deliveries_total"], right=("step", "attempts"),
    ))
    if view["responses"]:
        _print_table(_table(
            f"responses: {view['responses_total']}", ["occurred", "kind", "campaign", "provider"],
            [[_when(r["occurred_at"]), r["kind"], _text(r["campaign"]), r["provider"]] for r in view["responses"]],
            total=view["responses_total"],
        ))


# --------------------------------------------------------------------------- report channels

#: CSV columns before the per-stage counts.
CSV_METRICS = ("customers", "buyers", "repeat_buyers", "repeat_rate", "orders", "revenue", "avg_order_value",
               "revenue_share")
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
    cfg = _load(config)
    data = channel_report(_engine_for(cfg))
    if csv_file is not None:
        written = write_channel_csv(data, csv_file)
        if not as_json:
            console.print(f"wrote {written} rows to {csv_file}", highlight=False)
            return
    if as_json:
        _print_json(data)
        return
    totals = data["totals"]
    for dimension, label in DIMENSIONS:
        metrics = Table(title=f"By {label}")
        for column in ("channel", "customers", "buyers", "repeat", "orders", "revenue", "AOV", "share"):
            metrics.add_column(column, justify="left" if column == "channel" else "right")
        for row in data[dimension]:
            _add_row(metrics, row["channel"], str(row["customers"]), str(row["buyers"]), _pct(row["repeat_rate"]),
                            str(row["orders"]), _money(row["revenue"]), _money(row["avg_order_value"]),
                            _pct(row["revenue_share"]))
        _print_table(metrics)
        stages = Table(title=f"Lifecycle stage of the customers, by {label}")
        for column in ("channel", *data["stages"]):
            stages.add_column(column, justify="left" if column == "channel" else "right")
        for row in data[dimension]:
            _add_row(stages, row["channel"], *(str(row["stages"][s]) for s in data["stages"]))
        _print_table(stages)
    aov = totals["revenue"] / totals["orders"] if totals["orders"] else None
    console.print(f"{totals['customers']} customers, {totals['buyers']} buyers, {totals['orders']} orders, "
                  f"revenue {_money(totals['revenue'])}, AOV {_money(aov)}", highlight=False)
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
    channel and per channel."""
    from campaigns.reports.campaign import campaign_report

    cfg = _load(config)
    moment = _parse_now(now) if now else utcnow()
    try:
        data = campaign_report(_engine_for(cfg), cfg, name, now=moment)
    except KeyError:
        known = ", ".join(c.name for c in cfg.campaigns) or "none"
        raise NurtureError(f"no campaign named {name!r} (campaigns: {known})") from None
    if as_json:
        _print_json(data)
        return
    lift = data["lift"]
    rates = data["conversion_rate"]
    engaged = data["engagement"]
    summary = _key_values([
        ("enrolled (treated)", data["enrolled"]), ("held out", data["held_out"]),
        ("sent", data["sent"]), ("failed", data["failed"]), ("skipped", data["skipped"]),
        (f"converted ({data['goal']} within {data['window_days']:g} days)",
         f"{data['converted']['treated']} treated · {data['converted']['holdout']} holdout"),
        ("conversion rate", f"{_pct(rates['treated'])} treated · {_pct(rates['holdout'])} holdout"),
        ("lift", "n/a (no holdout)" if lift["absolute"] is None else
         f"{lift['absolute'] * 100:+.2f} pts (95% CI {lift['low'] * 100:+.2f} to {lift['high'] * 100:+.2f})"
         + (" significant" if lift["significant"] else " not significant")),
        ("attributed (last touch)", f"{data['attributed_orders']} orders · {_money(data['attributed_revenue'])}"),
        ("engagement (of sent)", _engagement_line(data["engagement"])),
        ("not delivered", (f"{engaged['not_delivered']} ({_pct(engaged['not_delivered_rate'])}) · "
                           f"complaints {engaged['complained']} ({_pct(engaged['complaint_rate'])})")),
    ])
    console.print(Panel(summary, title=f"campaign {name}", title_align="left", expand=False), highlight=False)
    steps = Table(title="By step, variant and channel")
    for column in ("step", "variant", "channel", "queued", "sent", "failed", "skipped", "orders", "revenue"):
        steps.add_column(column, justify="left" if column in ("variant", "channel") else "right")
    for row in data["steps"]:
        _add_row(steps, str(row["step"]), _variant(row["variant"]),
                 row["channel"], *(str(row.get(s, 0)) for s in ("queued", "sent", "failed", "skipped")),
                 str(row.get("attributed_orders", 0)), _money(row.get("attributed_revenue", 0.0)))
    _print_table(steps)

    engagement = Table(title="Engagement by step, variant and channel (messages with at least one response "
                             "of the kind; rates of sent)")
    for column in ("step", "variant", "channel", *ENGAGEMENT_COLUMNS):
        engagement.add_column(column, justify="left" if column in ("variant", "channel") else "right")
    for row in data["steps"]:
        _add_row(engagement, str(row["step"]), _variant(row["variant"]), row["channel"],
                 *_engagement_cells(row.get("sent", 0), row["engagement"]))
    engagement.add_section()
    _add_row(engagement, "total", "", "", *_engagement_cells(data["sent"], data["engagement"]), style="bold")
    _print_table(engagement)

    channels = Table(title="By channel")
    for column in ("channel", "sent", "failed", "orders", "revenue", *ENGAGEMENT_COLUMNS[1:]):
        channels.add_column(column, justify="left" if column == "channel" else "right")
    for row in data["channels"]:
        _add_row(channels, row["channel"], str(row["sent"]), str(row["failed"]), str(row["attributed_orders"]),
                 _money(row["attributed_revenue"]), *_engagement_cells(row["sent"], row["engagement"])[1:])
    _print_table(channels)


#: Columns of the engagement tables: counts, then rates (CTO = clicks per open).
ENGAGEMENT_COLUMNS = ("sent", "delivered", "not deliv.", "opened", "clicked", "replied", "unsub.", "complaints",
                      "open %", "click %", "CTO %", "reply %", "unsub. %")


def _variant(variant: int | None) -> str:
    return "-" if variant is None else chr(ord("A") + variant)


def _engagement_cells(sent: int, engagement: dict[str, Any]) -> list[str]:
    """The cells of :data:`ENGAGEMENT_COLUMNS` for one row of the report."""
    counts = ("delivered", "not_delivered", "opened", "clicked", "replied", "unsubscribed", "complained")
    rates = ("open_rate", "click_rate", "click_to_open_rate", "reply_rate", "unsubscribe_rate")
    return [str(sent), *(str(engagement[c]) for c in counts), *(_pct(engagement[r]) for r in rates)]


def _engagement_line(engagement: dict[str, Any]) -> str:
    e = engagement
    return (f"delivered {e['delivered']} ({_pct(e['delivery_rate'])}) · opened {e['opened']} ({_pct(e['open_rate'])})"
            f" · clicked {e['clicked']} ({_pct(e['click_rate'])}, {_pct(e['click_to_open_rate'])} of opens)"
            f" · replied {e['replied']} ({_pct(e['reply_rate'])})"
            f" · unsubscribed {e['unsubscribed']} ({_pct(e['unsubscribe_rate'])})")
