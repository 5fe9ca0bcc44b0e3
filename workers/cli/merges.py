"""``nurture customer merge | unmerge | merges``: two records of one person made one, a
merge undone, and the merges listed (issue #15).

Registered on :data:`workers.cli.views.customer_app` by :mod:`workers.cli.main`.
Presentation only: the work is :mod:`campaigns.customers.identity.merging` and
:mod:`~campaigns.customers.identity.unmerging`; profiles are recomputed after commit, as
of the latest full recompute, so the merged person's stage and RFM scores count every
order at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer

from campaigns.customers.identity.lookup import resolve_reference
from campaigns.customers.identity.merging import choose_survivor, merge_customers
from campaigns.customers.identity.unmerging import unmerge as unmerge_customers
from campaigns.customers.profiles import latest_recompute, recompute_profiles_for
from campaigns.errors import NurtureError
from campaigns.store.models import Customer, CustomerMerge, Order
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
from workers.cli.identity import operator_name
from workers.cli.tables import print_json, print_table, text, titled_table, when

_REFERENCE_HELP = ("Any identifier of the customer: `C000007`, `pos:88`, `13800138000`, `phone:+8613800138000`, "
                   "`email:a@b.cn`, `unionid:...`, `openid:APP:...`.")
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
NowOption = Annotated[str | None, typer.Option("--now", help="Act as of this time (ISO 8601; default now).")]


def _confirm(question: str, yes: bool) -> None:
    if not yes and not typer.confirm(question, default=False):
        err_console.print("nothing changed")
        raise typer.Exit(1)


def _recompute(engine: sa.Engine, config: Any, customer_ids: list[int]) -> bool:
    """The customers' profiles as of the latest full recompute; False if there was none
    (the next ``nurture profiles`` computes everyone's)."""
    with engine.connect() as conn:
        as_of = latest_recompute(conn)
    if as_of is None:
        return False
    recompute_profiles_for(engine, config, customer_ids, as_of=as_of)
    return True


def _summaries(conn: sa.Connection, ids: list[int]) -> list[dict[str, Any]]:
    orders = sa.select(sa.func.count()).where(Order.customer_id == Customer.id).scalar_subquery()
    rows = conn.execute(
        sa.select(Customer.id, Customer.external_id, Customer.name, Customer.acquisition_channel,
                  Customer.created_at, orders.label("orders")).where(Customer.id.in_(ids))
    ).mappings().all()
    by_id = {row["id"]: dict(row) for row in rows}
    return [by_id[i] for i in ids]


def _counts(record: dict[str, Any]) -> dict[str, Any]:
    return {"moved": {table: len(ids) for table, ids in sorted(record["moved"].items())},
            "removed": {table: len(rows) for table, rows in sorted(record["removed"].items())},
            "values_changed": len(record["changed"])}


@friendly_errors
def merge(
    first: Annotated[str, typer.Argument(metavar="FIRST", help=_REFERENCE_HELP)],
    second: Annotated[str, typer.Argument(metavar="SECOND", help="The other customer, by any identifier.")],
    config: ConfigOption = Path("config.toml"),
    reason: Annotated[str, typer.Option("--reason", help="Why, recorded on the merge (not empty).")] = "cli",
    by: Annotated[str | None, typer.Option(
        "--by", metavar="NAME", help="Who decides, recorded on the merge (default: $USER).")] = None,
    yes: YesOption = False,
    now: NowOption = None,
    as_json: JsonOption = False,
) -> None:
    """Merge two customers who are one person: the earlier one survives and takes over
    orders, events, consents (a withdrawal anywhere stands), deliveries, enrolments,
    responses and identifiers; the other record is removed.

    Shows both and asks first unless `--yes`. Undo with `nurture customer unmerge ID`.
    """
    if not reason.strip():
        # The reason is the only account of why two records became one; an unmerge
        # decision later rests on it, so an empty one is refused rather than recorded.
        err_console.print("[bold red]error:[/] --reason is empty: say why these are one person, "
                          "e.g. --reason \"same phone, checked at the till\"", highlight=False)
        raise typer.Exit(2)
    cfg = load_app_config(config)
    engine = engine_for(cfg)
    moment = parse_now(now)
    with engine.connect() as conn:
        ids = []
        for reference in (first, second):
            found = resolve_reference(conn, reference, rules=cfg.identity)
            if found is None:
                raise NurtureError(f"customer {reference!r} not found (the identifier forms: "
                                   "`nurture customer show --help`)")
            ids.append(found)
        if ids[0] == ids[1]:
            raise NurtureError(f"{first!r} and {second!r} are the same customer already")
        survivor = choose_survivor(conn, ids)
        people = _summaries(conn, ids)
    merged = ids[1] if survivor == ids[0] else ids[0]
    if not as_json:
        print_table(titled_table("customers to merge", ["customer", "name", "acquired via", "created", "orders", "role"],
                                 [[p["external_id"], text(p["name"]), text(p["acquisition_channel"]),
                                   when(p["created_at"]), str(p["orders"]),
                                   "survives" if p["id"] == survivor else "merged into it"] for p in people]))
    names = {p["id"]: p["external_id"] for p in people}
    _confirm(f"Merge {names[merged]} into {names[survivor]}?", yes)
    with engine.begin() as conn:
        merge_id = merge_customers(conn, survivor_id=survivor, merged_id=merged, reason=reason.strip(),
                                   actor=operator_name(by), now=moment)
        record = dict(conn.execute(sa.select(CustomerMerge.moved, CustomerMerge.removed, CustomerMerge.changed)
                                   .where(CustomerMerge.id == merge_id)).mappings().one())
    recomputed = _recompute(engine, cfg, [survivor])
    result = {"merge": merge_id, "survivor": names[survivor], "merged": names[merged], **_counts(record),
              "profile_recomputed": recomputed}
    if as_json:
        print_json(result)
        return
    moved = ", ".join(f"{count} {table}" for table, count in result["moved"].items()) or "nothing"
    console.print(f"merged {names[merged]} into {names[survivor]} (merge {merge_id}): moved {moved}; "
                  f"{sum(result['removed'].values())} row(s) kept in the record; undo with "
                  f"`nurture customer unmerge {merge_id}`", highlight=False)


@friendly_errors
def unmerge(
    merge_id: Annotated[int, typer.Argument(metavar="MERGE", help="The merge's id (see `nurture customer merges`).")],
    config: ConfigOption = Path("config.toml"),
    yes: YesOption = False,
    now: NowOption = None,
    as_json: JsonOption = False,
) -> None:
    """Undo a merge exactly: the merged customer comes back with its own orders, events,
    consents, deliveries and enrolments; rows created since stay with the survivor.

    Later merges of the same customer are undone first, newest first. Asks unless `--yes`.
    """
    cfg = load_app_config(config)
    engine = engine_for(cfg)
    moment = parse_now(now)
    with engine.connect() as conn:
        found = conn.execute(sa.select(CustomerMerge.merged_external_id, CustomerMerge.survivor_id)
                             .where(CustomerMerge.id == merge_id)).one_or_none()
    label = f"merge {merge_id}" if found is None else f"merge {merge_id} ({found.merged_external_id} back out)"
    _confirm(f"Undo {label}?", yes or found is None)  # an unknown merge fails below without asking
    with engine.begin() as conn:
        result = unmerge_customers(conn, merge_id=merge_id, now=moment)
    recomputed = _recompute(engine, cfg, [result.survivor_id, result.merged_id])
    if as_json:
        print_json(result.to_dict() | {"profiles_recomputed": recomputed})
        return
    back = ", ".join(f"{count} {table}" for table, count in result.moved_back.items() if count) or "nothing"
    console.print(f"undid merge {merge_id}: {result.merged_external_id} is a customer again; moved back {back}",
                  highlight=False)


@friendly_errors
def merges(
    reference: Annotated[str | None, typer.Argument(metavar="[ID]", help=_REFERENCE_HELP)] = None,
    config: ConfigOption = Path("config.toml"),
    show_all: Annotated[bool, typer.Option("--all", help="Every merge, not one customer's.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The merges of one customer (into it, or of it), or `--all`, newest first, undone
    ones included."""
    if (reference is None) == (not show_all):
        raise NurtureError("give a customer ID or --all (not both)")
    cfg = load_app_config(config)
    engine = engine_for(cfg)
    m = CustomerMerge.__table__
    survivor = Customer.__table__.alias("survivor")
    query = (
        sa.select(m.c.id, m.c.merged_at, m.c.survivor_id, survivor.c.external_id.label("survivor"),
                  m.c.merged_id, m.c.merged_external_id, m.c.reason, m.c.actor, m.c.moved, m.c.unmerged_at)
        .select_from(m.outerjoin(survivor, survivor.c.id == m.c.survivor_id))
        .order_by(m.c.merged_at.desc(), m.c.id.desc())
    )
    with engine.connect() as conn:
        if reference is not None:
            customer_id = resolve_reference(conn, reference, rules=cfg.identity)
            if customer_id is None:
                raise NurtureError(f"customer {reference!r} not found (the identifier forms: "
                                   "`nurture customer show --help`)")
            query = query.where(sa.or_(m.c.survivor_id == customer_id, m.c.merged_id == customer_id))
        rows = [dict(row) for row in conn.execute(query).mappings()]
    listed = [{
        "id": row["id"], "merged_at": row["merged_at"], "survivor": row["survivor"] or f"#{row['survivor_id']}",
        "merged": row["merged_external_id"], "reason": row["reason"], "actor": row["actor"],
        "rows_moved": sum(len(ids) for ids in (row["moved"] or {}).values()), "unmerged_at": row["unmerged_at"],
    } for row in rows]
    if as_json:
        print_json(listed)
        return
    if not listed:
        console.print("no merges")
        return
    print_table(titled_table(
        f"merges: {len(listed)}", ["merge", "merged", "survivor", "merged record", "reason", "by", "rows moved", "undone"],
        [[str(r["id"]), when(r["merged_at"]), r["survivor"], r["merged"], r["reason"], r["actor"],
          str(r["rows_moved"]), when(r["unmerged_at"])] for r in listed],
        right=("merge", "rows moved"),
    ))


__all__ = ["merge", "merges", "unmerge"]
