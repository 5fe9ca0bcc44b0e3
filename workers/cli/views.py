"""Read-only looks at the customers: ``nurture segments``, ``nurture customer ID`` and
``nurture audience`` (a dry run of who a campaign or expression targets; sends nothing).

``nurture customer`` is a command group (:data:`customer_app`) whose default is ``show``:
``nurture customer ID`` and ``nurture customer show ID`` are the same, and the group's
other commands (``merge``, ``unmerge``, ``merges``) are registered on it by their modules.

Presentation only: the numbers come from :mod:`campaigns.reports.customers`,
:mod:`campaigns.reports.audience` and :mod:`campaigns.audience.selection`. Each command
prints rich tables, or with ``--json`` the report's dict as JSON (times in ISO 8601).

``nurture customer`` shows e-mail addresses and phone numbers in full, in the table view
as in ``--json``: it is an operator tool for looking at one person's record, and a masked
address cannot be checked against a complaint or a suppression list. The identifiers
table (every phone, email, openid the person was ever known by, issue #15) is masked
unless ``--reveal``: it lists far more than the one address a complaint is about.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import click
import sqlalchemy as sa
import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from campaigns.customers.identity.lookup import resolve_reference
from campaigns.errors import NurtureError
from campaigns.reports.customers import customer_view, segment_counts
from campaigns.reports.identity import customer_identity, mask_identifier
from campaigns.store.models import Customer, utcnow
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
from workers.cli.tables import (
    add_row,
    clip,
    key_values,
    money,
    pct,
    print_json,
    print_table,
    text,
    titled_table,
    when,
)


class DefaultShowGroup(TyperGroup):
    """A command group that runs ``show`` when its first argument names no subcommand.

    Click parses a group's own arguments before it picks a subcommand, so a group cannot
    take ``ID`` itself and still offer ``merge``: instead ``show`` is put in front of the
    arguments when the first one is neither a subcommand nor a help flag. ``nurture
    customer --help`` (and ``nurture customer`` alone) still list the subcommands.
    """

    #: The subcommand run when none is named.
    default_command = "show"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Insert :attr:`default_command` before ``args`` unless they start with a subcommand."""
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


#: ``nurture customer``: show one customer (the default), and the merge commands.
customer_app = typer.Typer(
    cls=DefaultShowGroup,
    no_args_is_help=True,
    help="One customer: its record by any identifier (`nurture customer ID` is `nurture customer show ID`), "
         "and merging customers.",
)


@friendly_errors
def segments(config: ConfigOption = Path("config.toml"), as_json: JsonOption = False) -> None:
    """Customers per lifecycle stage and acquisition channel, and per RFM segment."""
    cfg = load_app_config(config)
    data = segment_counts(engine_for(cfg), cfg)
    if as_json:
        print_json(data)
        return
    as_of = f" (profiles as of {when(data['as_of'])} UTC)" if data["as_of"] else ""
    matrix = Table(title=f"Lifecycle stage × acquisition channel{as_of}")
    matrix.add_column("stage")
    for channel in data["channels"]:
        matrix.add_column(channel, justify="right")
    matrix.add_column("total", justify="right", style="bold")
    for stage in data["stages"]:
        add_row(matrix, stage, *(str(data["matrix"][stage][c]) for c in data["channels"]),
                str(data["stage_totals"][stage]))
    matrix.add_section()
    add_row(matrix, "total", *(str(data["channel_totals"][c]) for c in data["channels"]), str(data["customers"]),
            style="bold")
    print_table(matrix)

    rfm = Table(title="RFM segment")
    rfm.add_column("segment")
    rfm.add_column("customers", justify="right")
    rfm.add_column("share", justify="right")
    for row in data["segments"]:
        add_row(rfm, row["segment"], str(row["count"]), pct(row["share"]))
    rfm.add_section()
    add_row(rfm, "total", str(data["customers"]), pct(1.0 if data["customers"] else None), style="bold")
    print_table(rfm)

    unprofiled = data["customers"] - data["profiled"]
    if data["profiled"] == 0:
        console.print("[yellow]no profiles yet:[/] run `nurture profiles` to compute stages and RFM segments",
                      highlight=False)
    elif unprofiled > 0:
        console.print(f"[yellow]{unprofiled} customer(s) have no profile yet:[/] run `nurture profiles` to "
                      "include them", highlight=False)


@customer_app.command("show")
@friendly_errors
def customer(
    reference: Annotated[str, typer.Argument(
        metavar="ID", help="Any identifier of the customer: `C000007`, `pos:88`, `13800138000`, "
                           "`phone:+8613800138000`, `email:a@b.cn`, `unionid:...`, `openid:APP:...`.")],
    config: ConfigOption = Path("config.toml"),
    reveal: Annotated[bool, typer.Option("--reveal", help="Show identifier values in full, not masked.")] = False,
    now: Annotated[str | None, typer.Option("--now", help="Points and tier as of this time (ISO 8601); default now.")] = None,
    as_json: JsonOption = False,
) -> None:
    """One customer: identifiers and merges, profile, history, orders, consents, events,
    enrolments, deliveries, responses; with [loyalty] on, points and tier (`nurture points` has the rest).

    The customer is found by any identifier it holds. Enrolments show the holdout and each
    step's A/B variant. The customer's own addresses are shown in full (an operator tool);
    the identifiers table masks values unless `--reveal`.
    """
    cfg = load_app_config(config)
    engine = engine_for(cfg)
    with engine.connect() as conn:
        row_id = resolve_reference(conn, reference, rules=cfg.identity)
        external_id = None if row_id is None else conn.execute(
            sa.select(Customer.external_id).where(Customer.id == row_id)).scalar()
    view = None if external_id is None else customer_view(engine, external_id)
    if view is None:
        raise NurtureError(f"customer {reference!r} not found (give an id, a phone, an email, ...: "
                           "see `nurture customer show --help`)")
    with engine.connect() as conn:
        identity = customer_identity(conn, view["customer"]["id"])
    if not reveal:
        for row in identity["identifiers"]:
            row["value"] = mask_identifier(row["kind"], row["value"])
    view |= identity
    if cfg.loyalty.enabled:
        from campaigns.reports.points import points_summary

        with engine.connect() as conn:
            view["loyalty"] = points_summary(conn, cfg.loyalty, view["customer"]["id"], now=parse_now(now))
        if cfg.loyalty.referrals.enabled:
            from workers.cli.referrals import referral_summary

            view["referrals"] = referral_summary(engine, view["customer"]["id"])
    if as_json:
        print_json(view)
        return
    person = view["customer"]
    attributes = ", ".join(f"{k}={v}" for k, v in sorted(person["attributes"].items())) or None
    console.print(Panel(key_values([
        ("name", person["name"]), ("email", person["email"]), ("phone", person["phone"]),
        ("wechat", person["wechat_openid"]), ("acquired via", person["acquisition_channel"]),
        ("time zone", person["timezone"]), ("locale", person["locale"]),
        ("created", when(person["created_at"])), ("attributes", attributes),
        ("suppressed", ", ".join(f"{s['channel']}: {s['address']} ({s['reason']})" for s in view["suppressions"])
         if view["suppressed"] else "no"),
    ]), title=Text(f"customer {person['external_id']}"), title_align="left", expand=False), highlight=False)

    print_identity(view)
    if "loyalty" in view:
        print_points(view["loyalty"])
    if "referrals" in view:
        from workers.cli.referrals import print_referrals

        print_referrals(view["referrals"])
    profile = view["profile"]
    if profile is None:
        console.print("no profile yet (run `nurture profiles`)")
    else:
        scores = ("-" if profile["r_score"] is None
                  else f"R{profile['r_score']} F{profile['f_score']} M{profile['m_score']}")
        console.print(Panel(key_values([
            ("stage", f"{profile['stage']} since {when(profile['stage_since'])}"),
            ("RFM segment", profile["rfm_segment"]), ("scores", scores),
            ("orders", profile["orders_count"]), ("total spent", money(profile["total_spent"])),
            ("average order", money(profile["avg_order_value"])),
            ("first order", when(profile["first_order_at"])), ("last order", when(profile["last_order_at"])),
            ("days since last order", (utcnow() - profile["last_order_at"]).days
             if profile["last_order_at"] else None),
            ("changed by the recompute as of", when(profile["as_of"])),
        ]), title="profile", title_align="left", expand=False), highlight=False)

    for name, key in (("stage", "stage_history"), ("segment", "segment_history")):
        if view[key]:
            print_table(titled_table(f"{name} history", ["entered", "value", "previous"],
                                     [[when(t["entered_at"]), t["value"], text(t["previous"])] for t in view[key]]))

    print_table(titled_table(
        f"orders: {view['orders_total']}", ["ordered", "order", "channel", "amount", "items"],
        [[when(o["ordered_at"]), o["order_id"], text(o["channel"]), money(o["amount"]),
          clip(", ".join(f"{i['sku']}×{i['quantity']}" for i in o["items"]) or "-")] for o in view["orders"]],
        total=view["orders_total"], right=("amount",),
    ))
    if view["consents"]:
        print_table(titled_table("consents", ["channel", "status", "source", "recorded"],
                                 [[c["channel"], c["status"], text(c["source"]), when(c["recorded_at"])]
                                  for c in view["consents"]]))
    if view["events"]:
        print_table(titled_table(
            f"events: {view['events_total']}", ["occurred", "event", "properties"],
            [[when(e["occurred_at"]), e["name"],
              clip(", ".join(f"{k}={v}" for k, v in sorted(e["properties"].items())) or "-")] for e in view["events"]],
            total=view["events_total"],
        ))
    if view["enrollments"]:
        # Variants as the campaign report names them: A for the first of a step's variants.
        print_table(titled_table(
            f"enrolments: {view['enrollments_total']}",
            ["enrolled", "campaign", "occurrence", "state", "holdout", "variants", "exited"],
            [[when(e["enrolled_at"]), e["campaign"], e["occurrence"], e["state"], "yes" if e["holdout"] else "no",
              ", ".join(f"step {v['step']}: {chr(ord('A') + v['variant'])}" for v in e["variants"]) or "-",
              when(e["exited_at"])] for e in view["enrollments"]],
            total=view["enrollments_total"],
        ))
    print_table(titled_table(
        f"deliveries: {view['deliveries_total']}",
        ["created", "campaign", "step", "channel", "status", "attempts", "sent", "last error"],
        [[when(d["created_at"]), d["campaign"], str(d["step"]), d["channel"], d["status"], str(d["attempts"]),
          when(d["sent_at"]), clip(text(d["last_error"]))] for d in view["deliveries"]],
        total=view["deliveries_total"], right=("step", "attempts"),
    ))
    if view["responses"]:
        print_table(titled_table(
            f"responses: {view['responses_total']}", ["occurred", "kind", "campaign", "provider"],
            [[when(r["occurred_at"]), r["kind"], text(r["campaign"]), r["provider"]] for r in view["responses"]],
            total=view["responses_total"],
        ))


def print_points(points: dict[str, Any]) -> None:
    """The loyalty panel of the customer view: balance, tier, the next tier and the next expiry."""
    expiry = points["next_expiry"]
    console.print(Panel(key_values([
        ("balance", f"{points['balance']:,}"),
        ("by kind", ", ".join(f"{kind} {value:,}" for kind, value in points["by_kind"].items()) or None),
        ("tier", points["tier"]),
        ("next tier", None if points["next_tier"] is None
         else f"{points['next_tier']} ({points['to_next_tier']:,g} to go)"),
        ("next expiry", None if expiry is None else f"{expiry['points']:,} valid through {expiry['valid_through']}"),
    ]), title="points", title_align="left", expand=False), highlight=False)


def print_identity(view: dict[str, Any]) -> None:
    """The identifiers table and the merges that formed the person, under the customer panel."""
    print_table(titled_table(
        f"identifiers: {len(view['identifiers'])}", ["kind", "value", "source", "verified", "first seen", "last seen"],
        [[i["kind"], i["value"], text(i["source"]), "yes" if i["verified"] else "no", when(i["first_seen_at"]),
          when(i["last_seen_at"])] for i in view["identifiers"]],
    ))
    if view["merges"]:
        print_table(titled_table(
            f"merged into this person: {len(view['merges'])}", ["merge", "merged", "when", "why", "by"],
            [[str(m["id"]), m["merged_external_id"], when(m["merged_at"]), m["reason"], m["actor"]]
             for m in view["merges"]],
            right=("merge",),
        ))


@friendly_errors
def audience(
    campaign: Annotated[str | None, typer.Argument(help="Campaign name (dry run of its audience).")] = None,
    config: ConfigOption = Path("config.toml"),
    where: Annotated[str | None, typer.Option("--where", help='An audience expression instead of a campaign, e.g. \'stage == "at_risk" and orders_count >= 2\'.')] = None,
    sample: Annotated[int, typer.Option(help="How many customers to show.")] = 10,
    now: Annotated[str | None, typer.Option("--now", help="Evaluate as of this time (ISO 8601).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Dry run: how many customers a campaign (or --where expression) targets, on which
    channels, who is excluded and why, who its holdout takes, and a sample. Sends nothing."""
    from campaigns.reports.audience import campaign_audience, expression_matches

    moment = parse_now(now) if now else utcnow()
    cfg = load_app_config(config)
    engine = engine_for(cfg)
    if (campaign is None) == (where is None):
        err_console.print("[bold red]error:[/] give either a campaign name or --where EXPRESSION")
        raise typer.Exit(1)
    if where is not None:
        matches = expression_matches(engine, cfg, where, now=moment, sample=sample)
        if as_json:
            print(json.dumps(matches))
            return
        console.print(f"[bold]{matches['matched']}[/] customers match {where}")
        for row in matches["sample"]:
            console.print(f"  {row['external_id']}  {row['name'] or ''}  ({row['acquisition_channel'] or '-'})",
                          highlight=False)
        return
    campaign_cfg = cfg.campaign(campaign)  # type: ignore[arg-type]
    result = campaign_audience(engine, cfg, campaign_cfg, now=moment, sample_size=sample)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    console.print(f"[bold]{campaign}[/]: {result['matched']} customers match the audience, "
                  f"[green]{result['reachable']} reachable[/]")
    table = Table(title="By channel and exclusion")
    table.add_column("")
    table.add_column("customers", justify="right")
    for name, count in result["by_channel"].items():
        table.add_row(f"→ {name}", str(count))
    for reason, count in result["excluded"].items():
        table.add_row(f"excluded: {reason.replace('_', ' ')}", str(count))
    share = f" ({campaign_cfg.holdout:.0%} of the reachable, kept out to measure lift)" if campaign_cfg.holdout else ""
    table.add_row(f"held out{share}", str(result["holdout"]))
    table.add_row("would be messaged", str(result["would_send"]), style="bold")
    console.print(table)
    if result["sample"]:
        columns = ("external_id", "name", "channel", "stage", "rfm_segment", "orders_count", "held_out")
        sample_table = Table(title=f"Sample of {len(result['sample'])}")
        for column in columns:
            sample_table.add_column(column)
        for row in result["sample"]:
            sample_table.add_row(*[("yes" if row[c] else "no") if c == "held_out" else
                                   str(row[c]) if row[c] is not None else "-" for c in columns])
        console.print(sample_table)
