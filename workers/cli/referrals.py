"""Referrals by hand: ``nurture referrals code CUSTOMER`` (a customer's code and link, who
referred them, what their referrals did), ``nurture referrals issue`` (a code for every
customer, for a shop that shows them on its own pages) and ``nurture report referrals``
(by channel).

Presentation only: the work is :mod:`campaigns.customers.loyalty.referral_codes`,
:mod:`campaigns.customers.loyalty.referrals` and :mod:`campaigns.reports.referrals`;
docs/loyalty.md, Referrals.
"""

from __future__ import annotations

from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import rich.markup
import typer
from rich.panel import Panel
from rich.table import Table

from campaigns.config.schema import AppConfig
from campaigns.errors import UnknownCustomerError
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
from workers.cli.tables import add_row, key_values, print_json, print_table, when

#: ``nurture referrals``: codes and links.
referrals_app = typer.Typer(help="Referral codes and links: one customer's, or a code for everyone.",
                            no_args_is_help=True)

CustomerArg = Annotated[str, typer.Argument(
    metavar="CUSTOMER", show_default=False,
    help="Any identifier of the customer: `C000007`, `pos:88`, `phone:+8613800138000`, `email:a@b.cn`, `unionid:...`.")]
NowOption = Annotated[str | None, typer.Option("--now", help="As of this time (ISO 8601); default: now.")]


def require_referrals(cfg: AppConfig, config: Path) -> None:
    """Refuse, naming the key to set, while the programme or its referrals are off."""
    if cfg.loyalty.enabled and cfg.loyalty.referrals.enabled:
        return
    key = "enabled = true under [loyalty]" if not cfg.loyalty.enabled else "enabled = true under [loyalty.referrals]"
    # Printed here, escaped: friendly_errors reads a message as rich markup, which would
    # drop "[loyalty]" as a style tag.
    err_console.print("[bold red]error:[/] " + rich.markup.escape(f"referrals are off: set {key} in {config}"),
                      highlight=False)
    raise typer.Exit(1)


@referrals_app.command("code")
@friendly_errors
def code(customer: CustomerArg, config: ConfigOption = Path("config.toml"), now: NowOption = None,
         as_json: JsonOption = False) -> None:
    """A customer's referral code and link, who referred them, and their referrals so far.

    The code is issued (written down) the first time it is shown, here or in a message;
    it needs the installation secret ([security] secret_env) and is the same whenever it
    is computed.
    """
    from campaigns.customers.lookups import customer_row_id
    from campaigns.customers.loyalty.referral_codes import held_codes, issue_codes, referral_key, referral_link
    from campaigns.customers.loyalty.referrals import customer_referrals

    cfg = load_app_config(config)
    require_referrals(cfg, config)
    engine = engine_for(cfg)
    customer_id = customer_row_id(engine, customer, rules=cfg.identity)
    if customer_id is None:
        raise UnknownCustomerError(customer)
    rules = cfg.loyalty.referrals
    with engine.begin() as conn:
        held = held_codes(conn, [customer_id]).get(customer_id)
        if held is None:
            held = issue_codes(conn, referral_key(cfg), [customer_id], length=rules.code_length,
                               now=parse_now(now))[customer_id]
        summary = customer_referrals(conn, customer_id)
    data = {"customer_id": customer, "code": held, "link": referral_link(rules, held), **summary}
    if as_json:
        print_json(data)
        return
    by = data["referred_by"]
    counts = data["referrals"]
    print_table(key_values([
        ("code", held),
        ("link", data["link"] or "- (set [loyalty.referrals] link)"),
        ("referred by", f"{by['customer_id']} ({by['status']}, {when(by['referred_at'])})" if by else None),
        ("referrals", ", ".join(f"{counts[status]} {status}" for status in counts)),
        ("points earned by them", data["points"]),
    ]))


def referral_summary(engine: Any, customer_id: int) -> dict[str, Any]:
    """What the customer view shows of referrals: the code issued (None until first shown),
    who referred the customer, and their referrals by status with the points they brought."""
    from campaigns.customers.loyalty.referral_codes import held_codes
    from campaigns.customers.loyalty.referrals import customer_referrals

    with engine.connect() as conn:
        return {"code": held_codes(conn, [customer_id]).get(customer_id), **customer_referrals(conn, customer_id)}


def print_referrals(summary: dict[str, Any]) -> None:
    """The referrals panel of the customer view."""
    by = summary["referred_by"]
    counts = summary["referrals"]
    console.print(Panel(key_values([
        ("code", summary["code"] or "- (not issued yet: `nurture referrals code`)"),
        ("referred by", f"{by['customer_id']} ({by['status']}, {when(by['referred_at'])})" if by else None),
        ("referrals", ", ".join(f"{counts[status]} {status}" for status in counts)),
        ("points from them", f"{summary['points']:,}"),
    ]), title="referrals", title_align="left", expand=False), highlight=False)


@referrals_app.command("issue")
@friendly_errors
def issue(config: ConfigOption = Path("config.toml"), now: NowOption = None, as_json: JsonOption = False) -> None:
    """Issue a referral code to every customer without one (in batches; safe to repeat).

    Messages issue the codes they show on their own; this is for a shop that shows every
    customer's code on its own pages. Needs the installation secret ([security] secret_env).
    """
    from campaigns.customers.loyalty.referral_codes import issue_all, referral_key

    cfg = load_app_config(config)
    require_referrals(cfg, config)
    issued = issue_all(engine_for(cfg), referral_key(cfg), length=cfg.loyalty.referrals.code_length,
                       now=parse_now(now))
    if as_json:
        print_json({"issued": issued})
    else:
        console.print(f"issued {issued} referral code(s)", highlight=False)


def _moment(value: str | None, zone: ZoneInfo) -> datetime | None:
    """``--since``/``--until``: a date is its local midnight in ``[loyalty] timezone``."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return parse_now(value)
    return datetime.combine(day, time(0), tzinfo=zone)


def _reasons(refused_by: dict[str, int]) -> str:
    return ", ".join(f"{reason} {number}" for reason, number in refused_by.items()) or "-"


@friendly_errors
def report_referrals(
    config: ConfigOption = Path("config.toml"),
    since: Annotated[str | None, typer.Option(
        "--since", help="Sign-ups from this date (local midnight, [loyalty] timezone) or time (ISO 8601) on.")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="Sign-ups before this date (local midnight) or time (ISO 8601).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Referrals by channel: sign-ups with a code, referrals, converted, rewarded, reversed,
    refused by reason, and the points granted, taken back and given as welcome points.

    The channel is the sign-up event's `channel` property, else the referee's acquisition
    channel. Converted: the referee bought (a paid order since the sign-up, not refunded).
    Advocates: customers with a converted referral (`referrals_converted >= 1`).
    """
    from campaigns.reports.referrals import referral_report

    cfg = load_app_config(config)
    zone = ZoneInfo(cfg.loyalty.timezone)
    with engine_for(cfg).connect() as conn:
        data = referral_report(conn, since=_moment(since, zone), until=_moment(until, zone))
    if as_json:
        print_json(data)
        return
    span = "".join(part for part in (f" since {since}" if since else "", f" until {until}" if until else ""))
    total = data["total"]
    table = Table(title=f"referrals by channel{span}: {total['referrers']} referrer(s), "
                        f"{total['advocates']} advocate(s)", title_justify="left")
    columns = ("channel", "sign-ups", "referrals", "pending", "converted", "rewarded", "reversed", "refused",
               "refused by reason", "points granted", "taken back", "welcome")
    for column in columns:
        table.add_column(column, justify="left" if column in ("channel", "refused by reason") else "right")

    def cells(row: dict[str, Any]) -> list[str]:
        return [str(row[name]) for name in ("signups", "referrals", "pending", "converted", "rewarded", "reversed",
                                            "refused")] + [
            _reasons(row["refused_by"]), str(row["points_granted"]), str(row["points_reversed"]),
            str(row["welcome_points"])]

    for row in data["channels"]:
        add_row(table, row["channel"], *cells(row))
    table.add_section()
    add_row(table, "total", *cells(total), style="bold")
    print_table(table)


__all__ = ["code", "issue", "print_referrals", "referral_summary", "referrals_app", "report_referrals",
           "require_referrals"]
