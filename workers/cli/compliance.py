"""Compliance commands: ``nurture suppress``, ``nurture consent`` and ``nurture reply``.

Thin: the rules live in :mod:`campaigns.responses.optout`.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from campaigns.config.vocabulary import FAMILY_FIELDS
from campaigns.customers.lookups import customer_row_id
from campaigns.errors import NurtureError
from campaigns.reports.suppressions import suppression_list
from campaigns.responses.optout import (
    family_of_address,
    lift_suppression,
    opt_out,
    set_consent,
)
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

#: ``nurture suppress``: add to, remove from and list the suppression list.
suppress_app = typer.Typer(help="The suppression list: addresses never messaged again.", no_args_is_help=True)

FamilyOption = Annotated[
    str | None,
    typer.Option("--channel", help="Channel family: email, sms or wechat (guessed from the address when left out)."),
]


def _family(address: str, family: str | None) -> str:
    chosen = family or family_of_address(address)
    if chosen not in FAMILY_FIELDS:
        raise NurtureError(f"unknown channel family {chosen!r}: use email, sms or wechat")
    return chosen


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)))


@suppress_app.command("add")
@friendly_errors
def suppress_add(
    address: Annotated[str, typer.Argument(help="E-mail address, phone number (E.164) or WeChat OpenID.")],
    family: FamilyOption = None,
    reason: Annotated[str, typer.Option(help="Why (kept with the entry).")] = "added by an operator",
    config: ConfigOption = Path("config.toml"),
    as_json: JsonOption = False,
) -> None:
    """Suppress an address and withdraw the consent of every customer who has it.

    Queued messages to it are skipped when their time comes; nothing is sent to it again
    on that channel, whatever the campaign's purpose.
    """
    engine = engine_for(load_app_config(config))
    result = opt_out(engine, family=_family(address, family), address=address, reason=reason,
                     source="operator", now=utcnow())
    if as_json:
        _print_json({"family": result.family, "address": result.address, "added": result.suppressed,
                     "customers": result.customers})
        return
    state = "suppressed" if result.suppressed else "was already suppressed"
    console.print(f"{result.family} {address} {state}; consent withdrawn for {result.customers} customer(s)",
                  highlight=False)


@suppress_app.command("remove")
@friendly_errors
def suppress_remove(
    address: Annotated[str, typer.Argument(help="The suppressed address.")],
    family: FamilyOption = None,
    config: ConfigOption = Path("config.toml"),
) -> None:
    """Lift a suppression (e.g. a bounce the customer has fixed).

    Consent is not re-granted: marketing resumes only once the customer gives it again.
    """
    from campaigns.config.keys import installation_secret

    cfg = load_app_config(config)
    engine = engine_for(cfg)
    chosen = _family(address, family)
    # With the installation secret a forgotten customer's (keyed) digest is found too.
    if not lift_suppression(engine, family=chosen, address=address, secret=installation_secret(cfg)):
        raise NurtureError(f"{address} is not on the {chosen} suppression list")
    console.print(f"{chosen} {address} removed from the suppression list", highlight=False)


@suppress_app.command("list")
@friendly_errors
def suppress_list(
    family: FamilyOption = None,
    limit: Annotated[int, typer.Option(help="Show at most this many, newest first.")] = 100,
    config: ConfigOption = Path("config.toml"),
    as_json: JsonOption = False,
) -> None:
    """The newest entries of the suppression list, with reason and time."""
    engine = engine_for(load_app_config(config))
    listing = suppression_list(engine, family=family, limit=limit)
    total, rows = listing["total"], listing["entries"]
    if as_json:
        _print_json(listing)
        return
    table = Table(title=f"Suppression list ({total} entries{', newest ' + str(len(rows)) if total > len(rows) else ''})")
    for column in ("channel", "address", "reason", "since"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["channel"], row["address"], row["reason"], f"{row['created_at']:%Y-%m-%d %H:%M}")
    console.print(table)


@friendly_errors
def consent(
    reference: Annotated[str, typer.Argument(
        metavar="ID", help="Any identifier of the customer: `C000007`, `pos:88`, `13800138000`, "
                           "`phone:+8613800138000`, `email:a@b.cn`, `unionid:...`, `openid:APP:...`.")],
    family: Annotated[str, typer.Option("--channel", help="email, sms or wechat.")],
    grant: Annotated[bool, typer.Option("--grant/--withdraw", help="Record consent given, or withdrawn.")],
    source: Annotated[str, typer.Option(help="Where it was given or withdrawn (form, call, store...).")] = "operator",
    config: ConfigOption = Path("config.toml"),
) -> None:
    """Record a customer's marketing consent on one channel, with its source and time.

    The customer is found by any identifier it holds; a bare value that is one customer's
    id and another's phone is refused as ambiguous (write `id:...` or `phone:...`).
    """
    cfg = load_app_config(config)
    engine = engine_for(cfg)
    customer_id = customer_row_id(engine, reference, rules=cfg.identity)
    if customer_id is None:
        raise NurtureError(f"customer {reference!r} not found")
    status = "granted" if grant else "withdrawn"
    try:
        set_consent(engine, customer_id=customer_id, family=family, status=status, source=source, now=utcnow())
    except ValueError as exc:
        raise NurtureError(str(exc)) from None
    console.print(f"{reference}: {family} consent {status} (source: {source})", highlight=False)


@friendly_errors
def reply(
    address: Annotated[str, typer.Argument(help="Who replied: phone number, e-mail address or OpenID.")],
    text: Annotated[str, typer.Argument(help="What they wrote.")],
    family: FamilyOption = None,
    at: Annotated[str | None, typer.Option("--at", help="When they wrote (ISO 8601; default: now).")] = None,
    config: ConfigOption = Path("config.toml"),
    as_json: JsonOption = False,
) -> None:
    """Record a customer's reply, like a reply a provider pushes.

    The reply is credited to the last message sent to that customer on a channel of the
    address's family, so the campaign report's "replied" counts it. An opt-out word
    suppresses the address and withdraws consent at once, before any queued send fires:
    R, T, TD, N, 退订, 取消, STOP, UNSUBSCRIBE, CANCEL, END, QUIT, STOPALL (trimmed, any
    case). For replies exported from a provider console or taken by hand; `nurture serve`
    takes them from provider pushes. The same address, --at and text twice is one reply.
    """
    from campaigns.responses.replies import record_reply

    cfg = load_app_config(config)
    chosen = _family(address, family)
    moment = utcnow()
    result = record_reply(engine_for(cfg), cfg, family=chosen, address=address, text=text,
                          at=parse_now(at) if at else moment, now=moment)
    if as_json:
        _print_json({"recorded": result.recorded, "family": chosen, "customer": result.customer,
                     "campaign": result.campaign, "step": result.step, "send_key": result.send_key,
                     "opt_out": result.opt_out, "added": result.suppressed, "customers": result.customers})
        return
    if not result.recorded:
        console.print("this reply (same address, time and text) was recorded before: nothing changed",
                      highlight=False)
        return
    who = f"customer {result.customer}" if result.customer else "no customer has this address"
    to = (f"credited to {result.campaign} step {result.step}" if result.campaign
          else "not credited to a campaign (no message was sent to them on this channel before)")
    console.print(Text(f"reply from {address} recorded ({who}); {to}"))
    if result.opt_out:
        state = "suppressed" if result.suppressed else "was already suppressed"
        console.print(Text(f"opt-out: {chosen} {address} {state}; consent withdrawn for {result.customers} "
                           "customer(s)"))
