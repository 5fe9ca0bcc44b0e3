"""``nurture identity review``: the weak matches imports left for a person to decide (issue #15).

Two customers sharing only a weak identifier (an email, by default) may be one person or a
family. The command lists the open items; ``--merge N`` merges a pair (the earlier
customer survives, recorded with reason ``review`` and who decided, undone by ``nurture
customer unmerge``), ``--keep-apart N`` closes it so the pair is never proposed again.

Presentation only: the decisions are :mod:`campaigns.customers.identity.decisions`.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import typer

from campaigns.customers.identity.decisions import (
    ReviewItem,
    keep_apart,
    list_reviews,
    merge_review,
    recompute_survivor,
)
from campaigns.errors import NurtureError
from campaigns.reports.identity import mask_identifier
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
from workers.cli.tables import print_json, print_table, text, titled_table, when

#: ``nurture identity``: who is one person.
identity_app = typer.Typer(help="Identity resolution: weak matches to merge or keep apart.", no_args_is_help=True)


def operator_name(given: str | None) -> str:
    """Who decides: ``--by``, else the login name ($USER), else ``operator``."""
    if given and given.strip():
        return given.strip()
    try:
        return os.environ.get("USER") or getpass.getuser() or "operator"
    except (OSError, KeyError):  # no login name in a container
        return "operator"


def _pair(item: ReviewItem) -> str:
    return f"{item.customer_external_id} ↔ {item.other_external_id}"


def _shown(item: ReviewItem, reveal: bool) -> str:
    return item.value if reveal else mask_identifier(item.kind, item.value)


def _confirm(question: str, yes: bool) -> None:
    if not yes and not typer.confirm(question, default=False):
        err_console.print("nothing changed")
        raise typer.Exit(1)


@identity_app.command("review")
@friendly_errors
def review(
    config: ConfigOption = Path("config.toml"),
    merge: Annotated[int | None, typer.Option(
        "--merge", metavar="N", help="Merge the pair of review item N (the earlier customer survives).")] = None,
    keep: Annotated[int | None, typer.Option(
        "--keep-apart", metavar="N", help="Keep the pair of review item N apart for good.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    by: Annotated[str | None, typer.Option(
        "--by", metavar="NAME", help="Who decides, recorded on the merge (default: $USER).")] = None,
    reveal: Annotated[bool, typer.Option("--reveal", help="Show the shared values in full, not masked.")] = False,
    now: Annotated[str | None, typer.Option("--now", help="Decide as of this time (ISO 8601).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Open review items: pairs of customers sharing only a weak identifier (an email).

    Without options, lists them. `--merge N` merges item N's pair (undo with `nurture
    customer unmerge`) and recomputes the survivor's profile; `--keep-apart N` closes it
    so the pair is never proposed again. Both ask first unless `--yes`.
    """
    if merge is not None and keep is not None:
        raise NurtureError("give --merge or --keep-apart, not both")
    cfg = load_app_config(config)
    engine = engine_for(cfg)
    moment = parse_now(now)
    if merge is None and keep is None:
        with engine.connect() as conn:
            items = list_reviews(conn)
        if as_json:
            print_json([item.as_dict() | {"value": _shown(item, reveal)} for item in items])
            return
        if not items:
            console.print("no open review items")
            return
        print_table(titled_table(
            f"open review items: {len(items)}", ["item", "pair", "kind", "value", "source", "opened"],
            [[str(i.id), _pair(i), i.kind, _shown(i, reveal), text(i.source), when(i.opened_at)] for i in items],
            right=("item",),
        ))
        console.print("decide with `nurture identity review --merge N` or `--keep-apart N`", highlight=False)
        return
    chosen = merge if merge is not None else keep
    with engine.connect() as conn:
        # Shown before asking; the decision below checks again in its own transaction.
        found = [item for item in list_reviews(conn, status=None) if item.id == chosen]
    label = f"review item {chosen} ({_pair(found[0])}, {found[0].kind} {_shown(found[0], reveal)})" if found \
        else f"review item {chosen}"
    if merge is not None:
        _confirm(f"Merge {label}?", yes or not found)  # an unknown item fails below without asking
        with engine.begin() as conn:
            decision = merge_review(conn, merge, actor=operator_name(by), now=moment)
        recomputed = recompute_survivor(engine, cfg, decision.survivor_id)
        result = {"review": merge, "decision": "merged", "merge": decision.merge_id,
                  "survivor": decision.survivor_external_id, "merged": decision.merged_external_id,
                  "profile_recomputed": recomputed}
        message = (f"merged {decision.merged_external_id} into {decision.survivor_external_id} "
                   f"(merge {decision.merge_id}; undo with `nurture customer unmerge {decision.merge_id}`)")
    else:
        _confirm(f"Keep {label} apart for good?", yes or not found)
        with engine.begin() as conn:
            item = keep_apart(conn, keep, now=moment)  # type: ignore[arg-type]
        result = {"review": keep, "decision": "kept_apart", "customers": [item.customer_external_id,
                                                                          item.other_external_id]}
        message = f"kept {_pair(item)} apart: the pair will not be proposed again"
    if as_json:
        print_json(result)
    else:
        console.print(message, highlight=False)
