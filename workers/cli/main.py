"""The ``nurture`` command line: the composition root that wires domain and runtime.

Every user mistake (bad config, bad file, unreachable server) is printed as a clear
message with exit code 1 or 2; a traceback means a bug.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from campaigns.project.check import check_config_file
from campaigns.config.schema import AppConfig
from campaigns.project.loading import load_config
from campaigns.store.db import current_revision, make_engine, upgrade
from campaigns.errors import ConfigError, NurtureError
from campaigns.customers.masking import install_masking, register_secrets, secrets_from_config
from campaigns.store.models import CampaignState, Customer, Delivery, utcnow

app = typer.Typer(
    help="nurture: lifecycle marketing automation. Campaigns in config.toml, delivered by Dramatiq workers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
import_app = typer.Typer(help="Import customers, orders or events from CSV or JSONL.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(import_app, name="import")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", envvar="NURTURE_CONFIG", help="Path to config.toml.", show_default=True),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn expected failures into one clear message and a non-zero exit, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            err_console.print(f"[bold red]Configuration has {len(exc.issues)} error(s):[/]")
            for issue in exc.issues:
                err_console.print(f"  {issue}", markup=False, highlight=False)
            raise typer.Exit(1) from None
        except NurtureError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None
        except sa.exc.OperationalError as exc:
            err_console.print(f"[bold red]database error:[/] {str(exc.orig).strip() or exc}", highlight=False)
            raise typer.Exit(2) from None
        except _redis_errors() as exc:
            err_console.print(f"[bold red]broker error:[/] cannot reach Redis: {exc}", highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            # Stopping a scheduler or an import with Ctrl-C is normal: everything written so
            # far is committed and the next run carries on from the ledger.
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _load(config_path: Path) -> AppConfig:
    config = load_config(config_path)
    # main() masks every log line; from now on the config's secrets are known too.
    register_secrets(secrets_from_config(config))
    return config


def _engine_for(config: AppConfig) -> sa.Engine:
    engine = make_engine(config.database.url)
    upgrade(engine)
    return engine


def _parse_now(value: str | None) -> datetime:
    if not value:
        return utcnow()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time, e.g. 2026-11-24T10:00:00+08:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
@friendly_errors
def check(config: ConfigOption = Path("config.toml"), as_json: JsonOption = False) -> None:
    """Validate config.toml and render every template against a sample customer.

    Reports every error at once with file, line and key path; exits 1 on any error.
    """
    result = check_config_file(config)
    if as_json:
        print(json.dumps({
            "ok": result.ok,
            "errors": [{"file": i.file, "line": i.line, "key": i.key_path, "message": i.message} for i in result.issues],
            "warnings": result.warnings,
            "templates_rendered": result.templates_rendered,
        }, indent=2))
    else:
        for warning in result.warnings:
            err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
        if result.ok:
            assert result.config is not None
            console.print(
                f"[green]✓[/] {config}: {len(result.config.campaigns)} campaign(s), "
                f"{len(result.config.channels)} channel(s), {result.templates_rendered} template(s) rendered"
            )
        else:
            err_console.print(f"[bold red]{config}: {len(result.issues)} error(s)[/]")
            for issue in result.issues:
                err_console.print(f"  {issue}", markup=False, highlight=False)
    if not result.ok:
        raise typer.Exit(1)


@db_app.command("upgrade")
@friendly_errors
def db_upgrade(config: ConfigOption = Path("config.toml")) -> None:
    """Create or migrate the database schema to the latest version."""
    cfg = _load(config)
    engine = _engine_for(cfg)
    console.print(f"database at revision {current_revision(engine)}")


@db_app.command("current")
@friendly_errors
def db_current(config: ConfigOption = Path("config.toml")) -> None:
    """Show the schema revision the database is at."""
    cfg = _load(config)
    console.print(current_revision(make_engine(cfg.database.url)) or "empty database (run: nurture db upgrade)")


def _import(kind: str, file: Path, config: Path, file_format: str | None, as_json: bool) -> None:
    from campaigns.errors import DataImportError
    from campaigns.customers.importing import import_file

    if not file.is_file():
        raise DataImportError(f"{file}: file not found")
    cfg = _load(config)
    engine = _engine_for(cfg)
    size = file.stat().st_size
    show_bar = not as_json and sys.stderr.isatty() and size > 0
    with Progress(
        TextColumn(f"importing {kind}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=err_console, disable=not show_bar, transient=True,
    ) as progress:
        task = progress.add_task(kind, total=size or None)
        report = import_file(
            engine, kind, file, file_format=file_format,  # type: ignore[arg-type]
            progress=lambda done: progress.update(task, completed=done),
        )
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        colour = "green" if not report.rejected else "yellow"
        console.print(
            f"[{colour}]{kind}: {report.imported} imported, {len(report.rejected)} rejected "
            f"of {report.rows_read} rows[/] from {file}"
        )
        for error in report.rejected[:50]:
            console.print(f"  {file}:{error.line}: {error.reason}", markup=False, highlight=False)
        if len(report.rejected) > 50:
            console.print(f"  ... and {len(report.rejected) - 50} more (use --json for all)")
    if report.rejected:
        raise typer.Exit(3)


FileArg = Annotated[Path, typer.Argument(help="CSV (.csv) or JSON Lines (.jsonl) file.")]
FormatOption = Annotated[str | None, typer.Option("--format", help="csv or jsonl (default: from the file extension).")]


@import_app.command("customers")
@friendly_errors
def import_customers(file: FileArg, config: ConfigOption = Path("config.toml"),
                     file_format: FormatOption = None, as_json: JsonOption = False) -> None:
    """Import (upsert) customers keyed by customer_id. Bad rows are listed by line; exit 3 if any."""
    _import("customers", file, config, file_format, as_json)


@import_app.command("orders")
@friendly_errors
def import_orders(file: FileArg, config: ConfigOption = Path("config.toml"),
                  file_format: FormatOption = None, as_json: JsonOption = False) -> None:
    """Import (upsert) orders keyed by order_id, with optional items. Exit 3 if rows were rejected."""
    _import("orders", file, config, file_format, as_json)


@import_app.command("events")
@friendly_errors
def import_events(file: FileArg, config: ConfigOption = Path("config.toml"),
                  file_format: FormatOption = None, as_json: JsonOption = False) -> None:
    """Import events (deduplicated on event_id or content). Exit 3 if rows were rejected."""
    _import("events", file, config, file_format, as_json)


def _print_tick(report: Any, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({
            "now": report.now.isoformat(),
            "runs": [{"campaign": r.campaign, "scheduled_at": r.scheduled_at.isoformat(), "planned": r.planned}
                     for r in report.runs],
            "enqueued_jobs": report.enqueued_jobs,
            "enqueued_deliveries": report.enqueued_deliveries,
            "requeued_leases": report.requeued_leases,
            "profiles": None if report.profiles is None else {
                "customers": report.profiles.customers, "stage_entries": report.profiles.stage_entries,
                "segment_entries": report.profiles.segment_entries},
            "entries": report.entries,
        }))
        return
    if report.profiles is not None:
        console.print(f"profiles recomputed: {report.profiles.customers} customers, "
                      f"{report.profiles.stage_entries} stage entries, {report.profiles.segment_entries} segment entries")
    for name, planned in report.entries.items():
        console.print(f"entries [bold]{name}[/]: {planned} new deliveries")
    for run in report.runs:
        console.print(f"run [bold]{run.campaign}[/] @ {run.scheduled_at:%Y-%m-%d %H:%M} UTC: {run.planned} new deliveries")
    console.print(
        f"tick {report.now:%Y-%m-%d %H:%M:%S} UTC: enqueued {report.enqueued_deliveries} deliveries "
        f"in {report.enqueued_jobs} jobs"
    )


@app.command()
@friendly_errors
def scheduler(
    config: ConfigOption = Path("config.toml"),
    once: Annotated[bool, typer.Option("--once", help="Run one tick and exit.")] = False,
    now: Annotated[str | None, typer.Option("--now", help="Pretend it is this time (ISO 8601); for back-fills and tests.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Claim due campaign runs, write their deliveries and enqueue jobs.

    With broker.url = "stub://" the deliveries are also sent here, by in-process worker
    threads; with Redis, start `nurture worker` separately.
    """
    from workers.jobs.broker import make_broker
    from workers.jobs.inprocess import InProcessWorkers
    from workers.jobs.runtime import Runtime
    from workers.jobs.scheduler import Leadership, run_forever, tick

    fixed_now = _parse_now(now) if now else None
    cfg = _load(config)
    engine = _engine_for(cfg)
    clock = (lambda: fixed_now) if fixed_now else utcnow
    # --once is a manual tick: it runs whoever leads (ticks are idempotent). A loop ticks
    # only while it holds the leader lease; other schedulers stand by.
    leadership = Leadership.for_config(cfg, engine=engine)

    def standby(moment: datetime) -> None:
        if as_json:
            print(json.dumps({"now": moment.isoformat(), "standby": True, "holder": leadership.holder}))

    if cfg.broker.url.startswith("stub://"):
        runtime = Runtime.from_config(cfg, engine=engine, clock=clock)
        workers = InProcessWorkers(runtime=runtime)
        with workers.running():
            try:
                while True:
                    moment = clock()
                    if once or leadership.hold(moment):
                        _print_tick(workers.tick(moment), as_json=as_json)
                    else:
                        standby(moment)
                    if once:
                        return
                    time.sleep(cfg.scheduler.interval.total_seconds())
            finally:
                leadership.release()
    broker = make_broker(cfg.broker)
    broker.client.ping()  # type: ignore[attr-defined]  # a clear error now, not on the first enqueue
    if once:
        _print_tick(tick(config=cfg, engine=engine, broker=broker, now=clock()), as_json=as_json)
        return
    run_forever(config=cfg, engine=engine, broker=broker, clock=clock, leadership=leadership,
                on_tick=lambda report: _print_tick(report, as_json=as_json), on_standby=standby)


def _parse_properties(items: list[str]) -> dict[str, Any]:
    from campaigns.customers.importing import _typed_csv_value

    properties: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r}: expected KEY=VALUE, e.g. plan=pro", param_hint="--property")
        # Like a CSV column: true/false become booleans, plain numbers become numbers.
        properties[key.strip()] = _typed_csv_value(value)
    return properties


def _sent_count(engine: sa.Engine, external_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(Delivery).join(Customer, Customer.id == Delivery.customer_id)
            .where(Customer.external_id == external_id, Delivery.status == "sent")
        ).scalar_one()


@app.command()
@friendly_errors
def track(
    customer: Annotated[str, typer.Argument(help="The customer's customer_id (must already exist).")],
    event: Annotated[str, typer.Argument(help="Event name, e.g. signup.")],
    config: ConfigOption = Path("config.toml"),
    prop: Annotated[list[str] | None, typer.Option("--property", "-p", help="A property KEY=VALUE (repeatable).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="When it happened (ISO 8601); default now.")] = None,
    event_id: Annotated[str | None, typer.Option("--event-id", help="Your id for the event; a repeat is ignored.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Record one event and trigger its event campaigns right away.

    With broker.url = "stub://" the due messages are sent before this command exits; with
    Redis a handle_events job is enqueued for the workers. Exit 3 if the event is rejected.
    """
    from campaigns.customers.events import record_events
    from workers.jobs.broker import enqueue_many, events_message, make_broker

    cfg = _load(config)
    properties = _parse_properties(prop or [])
    moment = _parse_now(at) if at else None
    engine = _engine_for(cfg)
    raw: dict[str, Any] = {"customer_id": customer, "name": event, "properties": properties}
    if moment is not None:
        raw["occurred_at"] = moment.isoformat()
    if event_id is not None:
        raw["event_id"] = event_id
    result = record_events(engine, [raw])
    status = result.statuses[0]
    sent: int | None = None
    if result.accepted_ids:
        message = events_message(cfg.broker.queue, result.accepted_ids)
        if cfg.broker.url.startswith("stub://"):
            from workers.jobs.inprocess import InProcessWorkers
            from workers.jobs.runtime import Runtime

            before = _sent_count(engine, customer)
            workers = InProcessWorkers(runtime=Runtime.from_config(cfg, engine=engine))
            with workers.running():
                enqueue_many(workers.broker, [message])
                workers.join()
            sent = _sent_count(engine, customer) - before
        else:
            enqueue_many(make_broker(cfg.broker), [message])
    if as_json:
        print(json.dumps({**result.to_dict()["events"][0], "sent": sent}))
    elif status.status == "rejected":
        err_console.print(f"[bold red]rejected:[/] {status.reason}", highlight=False)
    elif status.status == "duplicate":
        console.print(f"duplicate: event {status.event_id} was already recorded; nothing triggered", highlight=False)
    else:
        tail = f"{sent} message(s) sent" if sent is not None else "handed to the workers"
        console.print(f"[green]accepted[/] {event} for {customer}: {tail}", highlight=False)
    if status.status == "rejected":
        raise typer.Exit(3)


@app.command()
@friendly_errors
def serve(
    config: ConfigOption = Path("config.toml"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    processes: Annotated[int, typer.Option("--workers", min=1, max=64,
                                           help="Server processes (a Redis broker is needed for more than 1).")] = 1,
) -> None:
    """Receive events, provider callbacks and customer links over HTTP.

    POST /events (Bearer key from [api] key_env), GET /health, SMS and WeChat callbacks,
    /u/ unsubscribe and preferences, /c/ clicks, /o/ opens, POST /bounces, and the
    read-only dashboard at /dashboard (password from [api] dashboard_password_env)
    (docs/operations.md).

    With broker.url = "stub://" the triggered messages are sent by worker threads in this
    process; with Redis, handle_events jobs go to `nurture worker`.
    """
    import uvicorn

    from campaigns.config.secretvalues import read_secret
    from workers.jobs.broker import make_broker
    from workers.http.app import create_app
    from workers.jobs.runtime import Runtime
    from workers.http.serving import install_log_limits, uvicorn_options

    cfg = _load(config)
    engine = _engine_for(cfg)
    # Header/body timeouts and the connection cap of [api] (docs/operations.md "Server
    # limits"); repeated errors (accept() failing, invalid requests) are rate-limited.
    limits = uvicorn_options(cfg.api)
    install_log_limits()
    if read_secret(cfg.api.key_env) is None:
        err_console.print(f"[yellow]warning:[/] {cfg.api.key_env} is not set: POST /events answers 503 "
                          "until it is (set it to the key clients send as 'Authorization: Bearer <key>')")
    if read_secret(cfg.api.dashboard_password_env) is None:
        err_console.print(f"[yellow]note:[/] {cfg.api.dashboard_password_env} is not set: /dashboard answers 503 "
                          "until it is (set it to the password the dashboard should ask for)")
    if cfg.broker.url.startswith("stub://"):
        from workers.jobs.inprocess import InProcessWorkers

        if processes > 1:
            raise NurtureError("--workers above 1 needs broker.url = \"redis://...\": with stub:// this "
                               "process's own worker threads send what events trigger")
        workers = InProcessWorkers(runtime=Runtime.from_config(cfg, engine=engine))
        with workers.running():
            uvicorn.run(create_app(workers.runtime, broker=workers.broker), host=host, port=port, **limits)
        return
    broker = make_broker(cfg.broker)
    broker.client.ping()  # type: ignore[attr-defined]  # a clear error now, not on the first event
    engine.dispose()
    if processes > 1:
        # Callbacks are CPU-bound Python (P7): one process per core. uvicorn forks its
        # workers only from an import string; each builds its own app from the config.
        os.environ["NURTURE_CONFIG"] = str(Path(config).resolve())
        # The protocol class is built in each process from the same config.
        uvicorn.run("workers.http.serve:create", factory=True, host=host, port=port, workers=processes,
                    **{**limits, "http": "workers.http.serve:http_protocol"})
        return
    uvicorn.run(create_app(cfg, broker=broker), host=host, port=port, **limits)


@app.command("run")
@friendly_errors
def run_campaign(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    config: ConfigOption = Path("config.toml"),
    as_json: JsonOption = False,
) -> None:
    """Run a campaign now, once: a one-off broadcast (trigger = { manual = true }) or an
    extra run of a cron campaign. Running it again within the same minute sends nothing
    twice; with reentry = "never" nobody gets it twice ever."""
    from workers.jobs.broker import make_broker
    from workers.jobs.inprocess import InProcessWorkers
    from workers.jobs.runtime import Runtime
    from workers.jobs.scheduler import run_now

    cfg = _load(config)
    try:
        campaign_cfg = cfg.campaign(campaign)
    except KeyError:
        known = ", ".join(c.name for c in cfg.campaigns) or "none"
        raise NurtureError(f"no campaign named {campaign!r} (campaigns: {known})") from None
    engine = _engine_for(cfg)
    now = utcnow()
    if cfg.broker.url.startswith("stub://"):
        workers = InProcessWorkers(runtime=Runtime.from_config(cfg, engine=engine))
        with workers.running():
            report = run_now(config=cfg, engine=engine, broker=workers.broker, campaign=campaign_cfg, now=now)
            workers.join()
    else:
        broker = make_broker(cfg.broker)
        broker.client.ping()  # type: ignore[attr-defined]
        report = run_now(config=cfg, engine=engine, broker=broker, campaign=campaign_cfg, now=now)
    if not any(run.planned for run in report.runs) and not as_json:
        # Claimed nothing (same minute) or planned nothing new (everyone already had it).
        console.print(f"{campaign}: nothing more to send (everyone targeted already has it)")
        return
    _print_tick(report, as_json=as_json)


@app.command()
@friendly_errors
def worker(
    config: ConfigOption = Path("config.toml"),
    processes: Annotated[int | None, typer.Option(help="Worker processes (default: worker.processes).")] = None,
    threads: Annotated[int | None, typer.Option(help="Threads per process (default: worker.threads).")] = None,
) -> None:
    """Run Dramatiq worker processes that deliver queued messages (Redis broker).

    Equivalent to: NURTURE_CONFIG=config.toml dramatiq workers.app --processes N --threads M
    """
    from workers.jobs.broker import make_broker

    cfg = _load(config)
    if cfg.broker.url.startswith("stub://"):
        err_console.print(
            "[bold red]error:[/] broker.url is stub:// (in-process): deliveries are sent by "
            "`nurture scheduler` itself. Set broker.url = \"redis://...\" to run separate workers."
        )
        raise typer.Exit(1)
    _engine_for(cfg).dispose()  # migrate once here rather than racing in every process
    make_broker(cfg.broker).client.ping()  # fail clearly now rather than retry forever
    # Dramatiq's own script next to this interpreter: on SIGHUP Dramatiq re-executes its
    # argv[0], and "python -m dramatiq" would come back as whichever "python" is on PATH.
    script = Path(sys.executable).parent / "dramatiq"
    launcher = [str(script)] if script.is_file() else [sys.executable, "-m", "dramatiq"]
    command = [
        *launcher, "workers.app",
        "--processes", str(processes or cfg.worker.processes),
        "--threads", str(threads or cfg.worker.threads),
        "--queues", cfg.broker.queue,
    ]
    env = {**os.environ, "NURTURE_CONFIG": str(Path(config).resolve())}
    sys.stdout.flush()
    sys.stderr.flush()
    # Become Dramatiq (same PID) rather than wait for a child: the SIGTERM, SIGINT or SIGHUP
    # sent to `nurture worker` (systemd, Docker, Kubernetes, kill) then reaches Dramatiq,
    # which stops its worker processes gracefully (SIGHUP: and starts fresh ones), and no
    # process is left behind consuming jobs.
    os.execve(command[0], command, env)


@app.command()
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

    moment = _parse_now(as_of) if as_of else None
    cfg = _load(config)
    engine = _engine_for(cfg)
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


@app.command()
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
    channels, who is excluded and why, and a sample. Sends nothing."""
    from campaigns.audience.selection import audience_breakdown, expression_select

    moment = _parse_now(now) if now else utcnow()
    cfg = _load(config)
    engine = _engine_for(cfg)
    if (campaign is None) == (where is None):
        err_console.print("[bold red]error:[/] give either a campaign name or --where EXPRESSION")
        raise typer.Exit(1)
    if where is not None:
        query = expression_select(cfg, where, now=moment).subquery()
        with engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(query)).scalar_one()
            rows = conn.execute(sa.select(Customer.external_id, Customer.name, Customer.acquisition_channel)
                                .join(query, query.c.customer_id == Customer.id)
                                .order_by(Customer.id).limit(sample)).all()
        if as_json:
            print(json.dumps({"where": where, "matched": count,
                              "sample": [{"external_id": r[0], "name": r[1], "acquisition_channel": r[2]} for r in rows]}))
            return
        console.print(f"[bold]{count}[/] customers match {where}")
        for row in rows:
            console.print(f"  {row[0]}  {row[1] or ''}  ({row[2] or '-'})", highlight=False)
        return
    try:
        campaign_cfg = cfg.campaign(campaign)  # type: ignore[arg-type]
    except KeyError:
        known = ", ".join(c.name for c in cfg.campaigns) or "none"
        err_console.print(f"[bold red]error:[/] no campaign named {campaign!r} (campaigns: {known})")
        raise typer.Exit(1) from None
    result = audience_breakdown(engine, cfg, campaign_cfg, now=moment, sample_size=sample)
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
    table.add_row("held out", str(result["holdout"]))
    console.print(table)
    if result["sample"]:
        sample_table = Table(title=f"Sample of {len(result['sample'])}")
        for column in ("external_id", "name", "channel", "stage", "rfm_segment", "orders_count"):
            sample_table.add_column(column)
        for row in result["sample"]:
            sample_table.add_row(*[str(row[c]) if row[c] is not None else "-" for c in
                                   ("external_id", "name", "channel", "stage", "rfm_segment", "orders_count")])
        console.print(sample_table)


def delivery_summary(engine: sa.Engine) -> list[dict[str, Any]]:
    """Deliveries per campaign, channel and status."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Delivery.campaign, Delivery.channel, Delivery.status, sa.func.count())
            .group_by(Delivery.campaign, Delivery.channel, Delivery.status)
            .order_by(Delivery.campaign, Delivery.channel, Delivery.status)
        ).all()
    return [{"campaign": r[0], "channel": r[1], "status": r[2], "count": r[3]} for r in rows]


def held_back_summary(engine: sa.Engine) -> list[dict[str, Any]]:
    """Why messages were skipped, or wait queued, per campaign: policy decisions (consent,
    caps, quiet hours, windows, conditions) and provider errors awaiting a retry. Reasons
    are grouped without their per-customer detail (the time zone in parentheses)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Delivery.campaign, Delivery.status, Delivery.last_error, sa.func.count())
            .where(Delivery.status.in_(["skipped", "queued"]), Delivery.last_error.is_not(None))
            .group_by(Delivery.campaign, Delivery.status, Delivery.last_error)
        ).all()
    counts: dict[tuple[str, str, str], int] = {}
    for campaign, status, reason, count in rows:
        key = (campaign, status, reason.split(" (")[0] if reason.endswith(")") else reason)
        counts[key] = counts.get(key, 0) + count
    return [{"campaign": c, "status": s, "reason": r, "count": n}
            for (c, s, r), n in sorted(counts.items(), key=lambda item: (item[0][0], -item[1], item[0][2]))]


@app.command()
@friendly_errors
def status(config: ConfigOption = Path("config.toml"), as_json: JsonOption = False) -> None:
    """Deliveries per campaign, channel and status; why messages were held back; paused campaigns."""
    cfg = _load(config)
    engine = _engine_for(cfg)
    summary = delivery_summary(engine)
    held_back = held_back_summary(engine)
    with engine.connect() as conn:
        paused = [{"campaign": r[0], "reason": r[1]} for r in conn.execute(
            sa.select(CampaignState.campaign, CampaignState.paused_reason).where(CampaignState.paused))]
    if as_json:
        print(json.dumps({"deliveries": summary, "held_back": held_back, "paused": paused}, indent=2))
        return
    table = Table(title="Deliveries")
    for column in ("campaign", "channel", "status", "count"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for row in summary:
        table.add_row(row["campaign"], row["channel"], row["status"], str(row["count"]))
    console.print(table)
    if held_back:
        reasons = Table(title="Held back: skipped for good, or queued until the reason passes")
        for column in ("campaign", "status", "reason", "count"):
            reasons.add_column(column, justify="right" if column == "count" else "left")
        for row in held_back:
            reasons.add_row(row["campaign"], row["status"], row["reason"], str(row["count"]))
        console.print(reasons)
    for item in paused:
        console.print(f"[bold red]paused[/] {item['campaign']}: {item['reason']}  (resume: nurture resume {item['campaign']})")


@app.command()
@friendly_errors
def resume(campaign: str, config: ConfigOption = Path("config.toml")) -> None:
    """Resume a campaign paused by a provider's halt answer (after fixing the cause)."""
    from campaigns.sending.ledger import resume_campaign

    cfg = _load(config)
    if resume_campaign(_engine_for(cfg), campaign):
        console.print(f"resumed {campaign}; its queued deliveries go out on the next scheduler tick")
    else:
        console.print(f"{campaign} was not paused")


@app.command()
@friendly_errors
def forget(
    customer: Annotated[str, typer.Argument(metavar="CUSTOMER", help="The customer's customer_id (as imported).")],
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
    import rich.markup

    from campaigns.config.channels import OutboxChannelConfig
    from campaigns.errors import UnknownCustomerError
    from campaigns.customers.forget import forget_customer
    from campaigns.config.keys import MissingSecretError, require_secret
    from workers.channels.outbox import remove_messages

    cfg = _load(config)
    try:
        # Before anything else: without the key, the digests kept would be unkeyed hashes
        # that give a phone number back by brute force, which is no erasure.
        secret = require_secret(cfg, "forgetting a customer")
    except MissingSecretError as exc:
        err_console.print("[bold red]error:[/] " + rich.markup.escape(f"{exc}; nothing was changed"), highlight=False)
        raise typer.Exit(2) from None
    engine = _engine_for(cfg)
    with engine.connect() as conn:
        customer_id = conn.execute(sa.select(Customer.id).where(Customer.external_id == customer)).scalar()
    if customer_id is None:
        raise UnknownCustomerError(customer)  # before asking: a typo should not need a "yes"
    if not yes and not typer.confirm(
        f"Erase the personal data of customer {customer}? This cannot be undone.", err=True
    ):
        err_console.print("nothing was changed")
        raise typer.Exit(1)
    report = forget_customer(engine, customer, now=utcnow(), secret=secret)
    with engine.connect() as conn:
        sent = conn.execute(sa.select(Delivery.channel, Delivery.campaign, Delivery.send_key)
                            .where(Delivery.customer_id == report.customer_id)).all()
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


def _demo_refusal(cfg: AppConfig, db_path: Path, target: Any) -> str | None:
    """Why the demo must not run on this config's database and outbox, or None.

    The demo sends only to outbox channels (never to a real provider), and resets only a
    database it created that holds nothing but its data (``inspect_demo_database``).
    """
    from campaigns.config.channels import OutboxChannelConfig

    used = {name for campaign in cfg.campaigns for name in campaign.channels}
    real = sorted(name for name in used if not isinstance(cfg.channels.get(name), OutboxChannelConfig))
    if real:
        return (f"the demo sends only to outbox channels (files), and channel(s) {', '.join(real)} would reach "
                "real people; run it with a config whose campaigns use outbox channels only")
    where = os.path.relpath(db_path)
    own_db = "give the demo a database of its own, e.g. NURTURE_DATABASE_URL=sqlite:///var/demo.db nurture demo"
    if target.foreign:
        main = [table for table in ("customer", "orders", "delivery") if table in target.foreign]
        others = [table for table in target.foreign if table not in main]
        held = ", ".join([f"{target.foreign[table]} {table} row(s)" for table in main]
                         + [table.strip("()") for table in others if table.startswith("(")]
                         + ([f"rows in {len(others)} other table(s)"] if any(t[0] != "(" for t in others) else []))
        return f"{where} holds data the demo did not write ({held}); the demo leaves it alone: {own_db}"
    if target.created_by_demo:
        return None
    for name, options in cfg.channels.items():
        if not isinstance(options, OutboxChannelConfig):
            continue
        for campaign in cfg.campaigns:
            folder = Path(options.dir) / campaign.name
            files = sum(1 for path in folder.iterdir() if path.is_file()) if folder.is_dir() else 0
            if files:
                return (f"{os.path.relpath(folder)} holds {files} file(s) that no demo database records; the demo "
                        f"leaves them alone: move them away, or give channel {name} another outbox dir for the demo")
    return None


@app.command()
@friendly_errors
def demo(
    config: ConfigOption = Path("config.toml"),
    customers: Annotated[int, typer.Option(help="How many demo customers to generate.")] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed for the demo data.")] = 7,
) -> None:
    """Generate demo data, import it, run the campaigns in-process and show what was sent.

    Uses the embedded default (SQLite + stub broker + outbox) and resets only its own
    data: it refuses (exit 2) a database or outbox holding anything it did not write.
    """
    from campaigns.config.channels import OutboxChannelConfig
    from campaigns.customers.demo_data import inspect_demo_database, mark_demo_database, write_demo_files
    from campaigns.customers.importing import import_file
    from workers.channels.outbox import remove_messages
    from workers.jobs.inprocess import InProcessWorkers
    from workers.jobs.runtime import Runtime

    result = check_config_file(config)
    if not result.ok:
        raise ConfigError(result.issues)
    cfg = result.config
    assert cfg is not None
    register_secrets(secrets_from_config(cfg))
    if not cfg.broker.url.startswith("stub://") or not cfg.database.url.startswith("sqlite"):
        err_console.print("[bold red]error:[/] the demo runs on the embedded default (sqlite + stub://); "
                          "use `nurture scheduler` for other set-ups")
        raise typer.Exit(1)
    db_path = Path(cfg.database.url.split("///", 1)[1])
    target = inspect_demo_database(db_path)
    refusal = _demo_refusal(cfg, db_path, target)
    if refusal is not None:
        # Never touch what the demo did not write: the user's own database, ledger or outbox.
        err_console.print(f"[bold red]error:[/] {refusal}", highlight=False)
        raise typer.Exit(2)
    if target.created_by_demo:
        # A demo database, holding only demo data: reset it, and remove the outbox files its
        # ledger records (not whole folders: other files there are not the demo's).
        for name, options in cfg.channels.items():
            if isinstance(options, OutboxChannelConfig):
                remove_messages(Path(options.dir), [(c, k) for ch, c, k in target.deliveries if ch == name])
        for suffix in ("", "-wal", "-shm"):
            Path(str(db_path) + suffix).unlink(missing_ok=True)
    data_dir = db_path.parent / "demo-data"
    from campaigns.customers.demo_data import demo_moment

    now = demo_moment(utcnow())
    console.print(f"demo clock: {now.astimezone(ZoneInfo('Asia/Shanghai')):%Y-%m-%d %H:%M} Asia/Shanghai, where the "
                  "demo customers live (marketing waits out the quiet hours, 21:00-08:00 local)")
    console.print(f"[bold]1.[/] generating {customers} customers with two years of orders → {data_dir}")
    files = write_demo_files(data_dir, customers=customers, seed=seed, now=now)
    engine = _engine_for(cfg)
    mark_demo_database(db_path)  # before any data: a later run may reset this database
    console.print("[bold]2.[/] importing through `nurture import` code paths")
    for kind, path in files.items():
        report = import_file(engine, kind, path)  # type: ignore[arg-type]
        console.print(f"   {kind:<9} {report.imported:>6} imported, {len(report.rejected)} rejected  ({path.name})")
    from campaigns.customers.profiles import recompute_profiles

    profiles_report = recompute_profiles(engine, cfg, as_of=now)
    console.print(f"[bold]3.[/] profiles: {profiles_report.customers} customers staged and RFM-scored "
                  f"in {profiles_report.seconds:.1f}s (what the scheduler does daily)")
    console.print("[bold]4.[/] scheduler tick with in-process Dramatiq workers (stub broker)")
    runtime = Runtime.from_config(cfg, engine=engine, clock=lambda: now)
    workers = InProcessWorkers(runtime=runtime)
    with workers.running():
        report = workers.tick(now)
    _print_tick(report, as_json=False)
    console.print("[bold]5.[/] results")
    table = Table(title="What was sent")
    for column in ("campaign", "channel", "status", "messages", "where"):
        table.add_column(column, justify="right" if column == "messages" else "left")
    for row in delivery_summary(engine):
        options = cfg.channels.get(row["channel"])
        directory = getattr(options, "dir", None)
        where = os.path.relpath(Path(directory) / row["campaign"]) if directory else "-"
        table.add_row(row["campaign"], row["channel"], row["status"], str(row["count"]), where)
    console.print(table)
    from campaigns.reports.campaign import campaign_report

    outcomes = Table(title="Campaign enrolment (later steps wait for their day; conversions accrue over 14 days)")
    for column in ("campaign", "enrolled", "held out", "sent", "queued (later steps)", "skipped"):
        outcomes.add_column(column, justify="left" if column == "campaign" else "right")
    for campaign in cfg.campaigns:
        data = campaign_report(engine, cfg, campaign.name, now=now)
        outcomes.add_row(campaign.name, str(data["enrolled"]), str(data["held_out"]), str(data["sent"]),
                         str(data["deliveries"].get("queued", 0)), str(data["skipped"]))
    console.print(outcomes)
    console.print(f"database: {db_path}   ·   run again: `make demo`")
    console.print("explore: .venv/bin/nurture status | segments | audience win_back | customer C000042 | "
                  "report channels | report campaign win_back")
    console.print("in a browser: NURTURE_DASHBOARD_PASSWORD=demo .venv/bin/nurture serve, then "
                  "http://127.0.0.1:8000/dashboard (any user name, password demo)")


def main() -> None:
    """Console entry point."""
    logging.basicConfig(level=os.environ.get("NURTURE_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # No log line carries a full address or a secret, whichever handler writes it
    # (uvicorn's included); commands add the config's secrets when they load it.
    install_masking()
    from workers.channels.registry import quiet_request_logs

    quiet_request_logs()
    app()
from workers.cli import compliance as cli_compliance  # noqa: F401,E402  (registers suppress, consent and reply)
from workers.cli import views as cli_views  # noqa: F401,E402  (registers the report commands)
