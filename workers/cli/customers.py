"""Customer data in and out: ``nurture import`` (customers, orders, events and the product
catalogue), ``track``, ``profiles`` and ``forget``."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import rich.markup
import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from campaigns.customers.importing.report import UNKNOWN_SAMPLE_LINES
from campaigns.store.models import utcnow
from workers.cli.common import (
    ConfigOption,
    JsonOption,
    console,
    engine_for,
    err_console,
    friendly_errors,
    in_process_workers,
    load_app_config,
    parse_now,
)
from workers.cli.runreport import print_outcome

if TYPE_CHECKING:
    from datetime import datetime

    import sqlalchemy as sa

    from campaigns.config.schema import AppConfig
    from campaigns.customers.importing.report import ImportReport

#: ``nurture import``: one command per kind of file.
import_app = typer.Typer(help="Import customers, orders, events or products from CSV or JSONL.",
                         no_args_is_help=True)


def _usage_error(message: str) -> NoReturn:
    """One line on stderr and exit 2: a mistake in the command line, caught before anything is read."""
    err_console.print("[bold red]error:[/] " + rich.markup.escape(message), highlight=False)
    raise typer.Exit(2)


def _match_kinds(values: list[str] | None) -> tuple[str, ...] | None:
    """``--match`` as kinds: comma-separated, repeatable, order kept; None when not given
    (the source's configured kinds apply). ``--match ""`` is an explicit "ids only"."""
    if values is None:
        return None
    return tuple(kind.strip().lower() for value in values for kind in value.split(",") if kind.strip())


def _check_identity_options(source: str | None, match: tuple[str, ...] | None) -> None:
    """Refuse a bad source name or match kind before the config and the file are read."""
    from campaigns.config.identity import IdentityConfig
    from campaigns.customers.identity.resolution import MatchPlan
    from campaigns.errors import DataImportError

    # MatchPlan.of is the rule the import itself applies; default rules suffice here, as
    # neither check depends on [identity].
    try:
        MatchPlan.of(rules=IdentityConfig(), source=source)
    except DataImportError as exc:
        _usage_error(f"{exc} (--source)")
    try:
        MatchPlan.of(rules=IdentityConfig(), match=match)
    except DataImportError as exc:
        _usage_error(f"{exc} (--match)")


def _warn_undeclared_source(cfg: AppConfig, source: str | None) -> None:
    """A source missing from a non-empty [identity.sources] is likely a typo: its rows would
    match on nothing and become new customers, so say so (the import still runs)."""
    declared = cfg.identity.sources
    if source is not None and declared and source not in declared:
        err_console.print(
            "[yellow]warning:[/] " + rich.markup.escape(
                f"source {source!r} is not in [identity.sources] (configured: {', '.join(sorted(declared))}): "
                f"ids are stored as {source}:<customer_id> and rows match only on --match"),
            highlight=False,
        )


def _import(kind: str, file: Path, *, config: Path, file_format: str | None, as_json: bool,
            source: str | None = None, match: list[str] | None = None, now: str | None = None) -> None:
    from campaigns.customers.identity.decisions import recompute_survivors
    from campaigns.customers.identity.resolution import MatchPlan
    from campaigns.customers.importing.files import import_file
    from campaigns.errors import DataImportError

    kinds = _match_kinds(match)
    _check_identity_options(source, kinds)
    earn_at = parse_now(now)  # a bad --now is refused before anything is imported
    if not file.is_file():
        raise DataImportError(f"{file}: file not found")
    cfg = load_app_config(config)
    _warn_undeclared_source(cfg, source)
    plan = MatchPlan.of(rules=cfg.identity, source=source, match=kinds)
    engine = engine_for(cfg)
    size = file.stat().st_size
    show_bar = not as_json and sys.stderr.isatty() and size > 0
    with Progress(
        TextColumn(f"importing {kind}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=err_console, disable=not show_bar, transient=True,
    ) as progress:
        task = progress.add_task(kind, total=size or None)
        report = import_file(
            engine, kind, file, file_format=file_format,  # type: ignore[arg-type]
            source=plan.source, match=plan.match, identity=cfg.identity,
            progress=lambda done: progress.update(task, completed=done),
        )
    # The import's merges leave each survivor with the profile of one former record until
    # the next full recompute; bring them in step now, as `customer merge` does.
    recomputed = recompute_survivors(engine, cfg, report.survivors)
    earned = _earn_now(engine, cfg, earn_at) if kind in ("orders", "events") else None
    if as_json:
        print(json.dumps({**report.to_dict(), "source": plan.source, "match": list(plan.match),
                          "profiles_recomputed": recomputed, **({"loyalty": earned} if earned else {})},
                         indent=2, default=str))
    else:
        colour = "green" if not report.rejected else "yellow"
        console.print(
            f"[{colour}]{kind}: {report.imported} imported, {len(report.rejected)} rejected "
            f"of {report.rows_read} rows[/] from {file}"
        )
        if kind == "customers" and (plan.source or plan.match):
            console.print(_identity_line(report, plan.source, plan.match, recomputed=recomputed), highlight=False)
        if kind == "products":
            console.print(f"  {report.created} new, {report.updated} updated, {report.unchanged} unchanged "
                          "(a replay writes nothing)", highlight=False)
        if kind == "orders" and report.unknown_items:
            for line in _unknown_sku_lines(report, file):
                console.print(line, markup=False, highlight=False)
        if earned:
            console.print(f"  loyalty: {earned['points']} points earned in {earned['lots']} lot(s) by "
                          f"{earned['customers']} customer(s)", highlight=False)
        for error in report.rejected[:50]:
            console.print(f"  {file}:{error.line}: {error.reason}", markup=False, highlight=False)
        if len(report.rejected) > 50:
            console.print(f"  ... and {len(report.rejected) - 50} more (use --json for all)")
    if report.rejected:
        raise typer.Exit(3)


def _unknown_sku_lines(report: ImportReport, file: Path) -> list[str]:
    """What the orders import says of items whose sku the catalogue does not hold: they
    were kept; once, when there is no catalogue at all, else their skus and lines."""
    if report.catalogue_empty:
        return [f"  items: the catalogue is empty, so the skus of {report.unknown_items} of {report.items} item(s) "
                f"({len(report.unknown_skus)} distinct) were not checked (kept); `nurture import products FILE` "
                "loads it (docs/catalogue.md)"]
    lines = [f"  items: {report.unknown_items} of {report.items} item(s) name {len(report.unknown_skus)} sku(s) not in "
             "the catalogue (kept, not dropped; docs/catalogue.md):"]
    for sku, at in report.unknown_sample.items():
        lines.append(f"    {sku}: {file}:{', '.join(str(line) for line in at)}"
                     + (" ..." if len(at) == UNKNOWN_SAMPLE_LINES else ""))
    if len(report.unknown_skus) > len(report.unknown_sample):
        lines.append(f"    ... and {len(report.unknown_skus) - len(report.unknown_sample)} more sku(s) "
                     "(--json has the counts)")
    return lines


def _earn_now(engine: sa.Engine, cfg: AppConfig, now: datetime) -> dict[str, int] | None:
    """Points for what just arrived, at once (and the tier upgrades they bring), when
    ``[loyalty]`` is on: what the import summary reports; None while it is off."""
    if not cfg.loyalty.enabled:
        return None
    from campaigns.customers.loyalty.daily import earn_now

    report = earn_now(engine, cfg.loyalty, now=now)
    return {"points": report.points, "lots": report.lots, "customers": len(report.customers)}


def _identity_line(report: ImportReport, source: str | None, match: tuple[str, ...], *, recomputed: bool) -> str:
    """What matching did, in persons: ``--json`` has the same counts."""
    how = f"source {source}" if source else "no source"
    line = (f"  as {how}, matching on {', '.join(('id', *match))}: {report.created} new customer(s), "
            f"{report.updated} updated, {report.merged} merge(s), {report.reviews_opened} review item(s) opened")
    if report.reviews_opened:
        line += " (`nurture identity review`)"
    if recomputed:
        line += f"; profiles of {len(report.survivors)} merged customer(s) recomputed"
    return line


FileArg = Annotated[Path, typer.Argument(help="CSV (.csv) or JSON Lines (.jsonl) file.")]
FormatOption = Annotated[str | None, typer.Option("--format", help="csv or jsonl (default: from the file extension).")]
SourceOption = Annotated[str | None, typer.Option(
    "--source", metavar="NAME",
    help="The system the file comes from (`store`, `shop`): its customer ids are stored as `NAME:<customer_id>` "
         "and matched as `[identity.sources.NAME]` says. Default: none, ids are the bare customer_id.")]
RefSourceOption = Annotated[str | None, typer.Option(
    "--source", metavar="NAME",
    help="The system the file comes from: a bare customer_id is the customer's id there (`NAME:<customer_id>`, "
         "as imported with `import customers --source NAME`). `kind:value` (`phone:+8613800138000`, "
         "`id:store:S1`) names any identifier either way.")]
EarnNowOption = Annotated[str | None, typer.Option(
    "--now", help="With [loyalty] on: earn the points of what arrived as of this time (ISO 8601; the tier "
                  "window ends there); default now.")]
MatchOption = Annotated[list[str] | None, typer.Option(
    "--match", metavar="KINDS",
    help="Identifier kinds to match rows on besides their ids, comma-separated or repeated: "
         "phone, email, openid, unionid (e.g. `--match phone,email`). Overrides "
         "`[identity.sources.NAME] match` for this import; `--match \"\"` matches on ids only.")]


@import_app.command("customers")
@friendly_errors
def import_customers(file: FileArg, config: ConfigOption = Path("config.toml"),
                     source: SourceOption = None, match: MatchOption = None,
                     file_format: FormatOption = None, as_json: JsonOption = False) -> None:
    """Import (upsert) customers keyed by customer_id. Bad rows are listed by line; exit 3 if any.

    A row that matches no known customer creates one, one that matches one customer updates
    it, one that matches two or more merges them (strong identifiers) or opens a review item
    (weak ones, `nurture identity review`). See docs/identity.md.
    """
    _import("customers", file, config=config, file_format=file_format, as_json=as_json,
            source=source, match=match)


@import_app.command("orders")
@friendly_errors
def import_orders(file: FileArg, config: ConfigOption = Path("config.toml"), source: RefSourceOption = None,
                  file_format: FormatOption = None, now: EarnNowOption = None, as_json: JsonOption = False) -> None:
    """Import (upsert) orders keyed by order_id, with optional items. Exit 3 if rows were rejected.

    customer_id names the customer by any identifier: its id in `--source`, or `kind:value`.
    With [loyalty] on, paid orders earn their points at once (and refunded ones give them back).
    """
    _import("orders", file, config=config, file_format=file_format, as_json=as_json, source=source, now=now)


@import_app.command("events")
@friendly_errors
def import_events(file: FileArg, config: ConfigOption = Path("config.toml"), source: RefSourceOption = None,
                  file_format: FormatOption = None, now: EarnNowOption = None, as_json: JsonOption = False) -> None:
    """Import events (deduplicated on event_id or content). Exit 3 if rows were rejected.

    customer_id names the customer by any identifier: its id in `--source`, or `kind:value`.
    With [loyalty] on, rewarded events (review, share ...) earn their points at once.
    """
    _import("events", file, config=config, file_format=file_format, as_json=as_json, source=source, now=now)


@import_app.command("products")
@friendly_errors
def import_products(file: FileArg, config: ConfigOption = Path("config.toml"),
                    file_format: FormatOption = None, as_json: JsonOption = False) -> None:
    """Import (upsert) the product catalogue keyed by sku. Bad rows are listed by line; exit 3 if any.

    Columns: sku, name, category, price, url, image_url, in_stock (true/false, yes/no, 1/0);
    any other column is kept as an attribute. An empty value keeps the stored one; a new
    product needs a name; a row that changes nothing is not written. See docs/catalogue.md.
    """
    _import("products", file, config=config, file_format=file_format, as_json=as_json)


def _parse_properties(items: list[str]) -> dict[str, Any]:
    from campaigns.customers.importing.fields import typed_csv_value

    properties: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r}: expected KEY=VALUE, e.g. plan=pro", param_hint="--property")
        # Like a CSV column: true/false become booleans, plain numbers become numbers.
        properties[key.strip()] = typed_csv_value(value)
    return properties


@friendly_errors
def track(
    customer: Annotated[str, typer.Argument(help="The customer (must already exist): its customer_id, or any "
                                                 "identifier as kind:value (phone:+86..., email:..., unionid:...).")],
    event: Annotated[str, typer.Argument(help="Event name, e.g. signup.")],
    config: ConfigOption = Path("config.toml"),
    prop: Annotated[list[str] | None, typer.Option("--property", "-p", help="A property KEY=VALUE (repeatable).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="When it happened (ISO 8601); default now.")] = None,
    event_id: Annotated[str | None, typer.Option("--event-id", help="Your id for the event; a repeat is ignored.")] = None,
    now: EarnNowOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record one event and trigger its event campaigns right away.

    With broker.url = "stub://" the due messages are sent before this command exits, and it
    says how many were sent, deferred (quiet hours, frequency cap, send window), skipped
    and failed; with Redis a handle_events job is enqueued for the workers. With [loyalty]
    on, the event's points are earned before this command exits. Exit 3 if the event is
    rejected.
    """
    from campaigns.customers.events import record_events
    from campaigns.reports.outcomes import (
        customer_deliveries_after,
        delivery_outcomes,
        newest_delivery_id,
    )
    from workers.jobs.broker import enqueue_many, events_message, make_broker

    cfg = load_app_config(config)
    properties = _parse_properties(prop or [])
    moment = parse_now(at) if at else None
    earn_at = parse_now(now)
    engine = engine_for(cfg)
    raw: dict[str, Any] = {"customer_id": customer, "name": event, "properties": properties}
    if moment is not None:
        raw["occurred_at"] = moment.isoformat()
    if event_id is not None:
        raw["event_id"] = event_id
    result = record_events(engine, [raw], rules=cfg.identity)
    status = result.statuses[0]
    outcome: dict[str, Any] | None = None
    earned: dict[str, int] | None = None
    if result.accepted_ids:
        # Before the event campaigns are planned: their messages see the points just earned.
        earned = _earn_now(engine, cfg, earn_at)
        message = events_message(cfg.broker.queue, result.accepted_ids)
        if cfg.broker.in_process:
            # What the event planned are the customer's rows newer than this one.
            before = newest_delivery_id(engine)
            workers = in_process_workers(cfg, engine=engine)
            with workers.running():
                enqueue_many(workers.broker, [message])
                workers.join()
            outcome = delivery_outcomes(engine, ids=customer_deliveries_after(engine, customer, before,
                                                                                     rules=cfg.identity))
        else:
            enqueue_many(make_broker(cfg.broker), [message])
    if as_json:
        print(json.dumps({**result.to_dict()["events"][0], "sent": outcome["sent"] if outcome else None,
                          "outcome": outcome, **({"loyalty": earned} if earned else {})}))
    elif status.status == "rejected":
        err_console.print(f"[bold red]rejected:[/] {status.reason}", highlight=False)
    elif status.status == "duplicate":
        console.print(f"duplicate: event {status.event_id} was already recorded; nothing triggered", highlight=False)
    else:
        console.print(f"[green]accepted[/] {event} for {customer}", highlight=False)
        if earned and earned["points"]:
            console.print(f"loyalty: {earned['points']} points earned", highlight=False)
        print_outcome(outcome)
    if status.status == "rejected":
        raise typer.Exit(3)


@friendly_errors
def profiles(
    config: ConfigOption = Path("config.toml"),
    as_of: Annotated[str | None, typer.Option("--as-of", help="Compute as of this date or time (ISO 8601), e.g. 2025-12-31; default now.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute every customer's RFM scores, RFM segment and lifecycle stage.

    The scheduler also does this on [profiles] cron. --as-of reproduces a past state:
    only orders up to that moment count.
    """
    from campaigns.customers.profiles import recompute_profiles

    moment = parse_now(as_of) if as_of else None
    cfg = load_app_config(config)
    engine = engine_for(cfg)
    with console.status("recomputing profiles…", spinner="dots") if not as_json else contextlib.nullcontext():
        report = recompute_profiles(engine, cfg, as_of=moment)
    if as_json:
        print(json.dumps({
            "as_of": report.as_of.isoformat(), "customers": report.customers,
            "stage_entries": report.stage_entries, "segment_entries": report.segment_entries,
            "seconds": round(report.seconds, 3),
        }))
        return
    console.print(
        f"profiles as of {report.as_of:%Y-%m-%d %H:%M} UTC: {report.customers} customers, "
        f"{report.stage_entries} stage entries, {report.segment_entries} segment entries "
        f"({report.seconds:.2f}s)"
    )


@friendly_errors
def forget(
    customer: Annotated[str, typer.Argument(metavar="CUSTOMER", help="The customer: its customer_id (as imported) "
                                                                     "or any identifier (phone:..., email:...).")],
    config: ConfigOption = Path("config.toml"),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Erase a customer's personal data for good; aggregate reports stay correct.

    Blanks name, addresses, attributes and event properties, masks addresses in delivery
    errors, keeps suppressed addresses only as digests keyed with the installation secret
    (security.secret_env; refused while it is unset), withdraws every consent and
    removes the customer's outbox files. Orders, deliveries and enrolments stay, attached
    to an anonymous row, so revenue and campaign numbers do not change. Cannot be undone.
    """
    from campaigns.config.channels import OutboxChannelConfig
    from campaigns.config.keys import MissingSecretError, require_secret
    from campaigns.customers.forget import forget_customer
    from campaigns.customers.lookups import customer_row_id
    from campaigns.errors import UnknownCustomerError
    from campaigns.reports.deliveries import customer_send_keys
    from workers.channels.outbox import remove_messages

    cfg = load_app_config(config)
    try:
        # Before anything else: without the key, the digests kept would be unkeyed hashes
        # that give a phone number back by brute force, which is no erasure.
        secret = require_secret(cfg, "forgetting a customer")
    except MissingSecretError as exc:
        err_console.print("[bold red]error:[/] " + rich.markup.escape(f"{exc}; nothing was changed"), highlight=False)
        raise typer.Exit(2) from None
    engine = engine_for(cfg)
    if customer_row_id(engine, customer, rules=cfg.identity) is None:
        raise UnknownCustomerError(customer)  # before asking: a typo should not need a "yes"
    if not yes and not typer.confirm(
        f"Erase the personal data of customer {customer}? This cannot be undone.", err=True
    ):
        err_console.print("nothing was changed")
        raise typer.Exit(1)
    report = forget_customer(engine, customer, now=utcnow(), secret=secret, rules=cfg.identity)
    sent = customer_send_keys(engine, report.customer_id)
    files_removed = 0
    for name, options in cfg.channels.items():
        if isinstance(options, OutboxChannelConfig):
            files_removed += remove_messages(Path(options.dir), [(c, k) for ch, c, k in sent if ch == name])
    if as_json:
        print(json.dumps({"customer": customer, **report.to_dict(), "outbox_files_removed": files_removed}))
        return
    console.print(
        f"[green]forgotten[/] {customer} (now {report.placeholder}): {report.events_scrubbed} event(s) and "
        f"{report.responses_scrubbed} response(s) emptied, {report.deliveries_scrubbed + report.attempts_scrubbed} "
        f"delivery error(s) masked, {report.suppressions_digested} suppression(s) kept as digests, "
        f"{report.consents_withdrawn} consent(s) withdrawn, {report.deliveries_cancelled} queued message(s) "
        f"cancelled, {files_removed} outbox file(s) removed",
        highlight=False,
    )
