"""Sending: ``nurture scheduler``, ``run``, ``worker`` and ``serve`` start the processes that
deliver; ``status`` watches them (``pause``, ``resume`` and ``retry`` are in
:mod:`workers.cli.campaigns`).

With ``broker.url = "stub://"`` each command sends through worker threads of its own
process (:attr:`~campaigns.config.runtime.BrokerConfig.in_process`); with Redis, ``nurture worker`` does.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from campaigns.errors import NurtureError
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
    reachable_broker,
)
from workers.cli.runreport import outcome_of, print_tick


@friendly_errors
def scheduler(
    config: ConfigOption = Path("config.toml"),
    once: Annotated[bool, typer.Option("--once", help="Run one tick and exit.")] = False,
    now: Annotated[str | None, typer.Option("--now", help="Pretend it is this time (ISO 8601), for back-fills and tests; needs broker.url = \"stub://\".")] = None,
    as_json: JsonOption = False,
) -> None:
    """Claim due campaign runs, write their deliveries and enqueue jobs.

    With broker.url = "stub://" the deliveries are also sent here, by in-process worker
    threads; with Redis, start `nurture worker` separately.
    """
    from workers.jobs.scheduler import Leadership, run_forever, tick

    fixed_now = parse_now(now) if now else None
    cfg = load_app_config(config)
    if fixed_now is not None and not cfg.broker.in_process:
        # The clock moves this process only: Redis workers check due times, quiet hours
        # and caps on their own real clock, so replayed messages would wait in the queue.
        raise NurtureError("--now needs the in-process broker (broker.url = \"stub://\", or "
                           "NURTURE_BROKER_URL=stub://): with Redis the workers send on the real clock, "
                           "not the replayed one")
    engine = engine_for(cfg)
    clock = (lambda: fixed_now) if fixed_now else utcnow
    # --once is a manual tick: it runs whoever leads (ticks are idempotent). A loop ticks
    # only while it holds the leader lease; other schedulers stand by.
    leadership = Leadership.for_config(cfg, engine=engine)

    def standby(moment: datetime) -> None:
        if as_json:
            print(json.dumps({"now": moment.isoformat(), "standby": True, "holder": leadership.holder}))

    if cfg.broker.in_process:
        workers = in_process_workers(cfg, engine=engine, clock=clock)
        with workers.running():
            try:
                while True:
                    moment = clock()
                    if once or leadership.hold(moment):
                        report = workers.tick(moment)  # returns once the queue has drained
                        print_tick(report, as_json=as_json, outcome=outcome_of(engine, report))
                    else:
                        standby(moment)
                    if once:
                        return
                    time.sleep(cfg.scheduler.interval.total_seconds())
            finally:
                leadership.release()
    broker = reachable_broker(cfg)
    if once:
        print_tick(tick(config=cfg, engine=engine, broker=broker, now=clock()), as_json=as_json)
        return
    run_forever(config=cfg, engine=engine, broker=broker, clock=clock, leadership=leadership,
                on_tick=lambda report: print_tick(report, as_json=as_json), on_standby=standby)


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
    from workers.http.app import create_app
    from workers.http.server_limits import install_log_limits, uvicorn_options

    cfg = load_app_config(config)
    engine = engine_for(cfg)
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
    if cfg.broker.in_process:
        if processes > 1:
            raise NurtureError("--workers above 1 needs broker.url = \"redis://...\": with stub:// this "
                               "process's own worker threads send what events trigger")
        workers = in_process_workers(cfg, engine=engine)
        with workers.running():
            uvicorn.run(create_app(workers.runtime, broker=workers.broker), host=host, port=port, **limits)
        return
    broker = reachable_broker(cfg)  # a clear error now, not on the first event
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


@friendly_errors
def run_campaign(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    config: ConfigOption = Path("config.toml"),
    as_json: JsonOption = False,
) -> None:
    """Run a campaign now, once: a one-off broadcast (trigger = { manual = true }) or an
    extra run of a cron campaign.

    Running it again reaches whoever is targeted by then (customers imported since
    included) and nobody twice: with reentry = "never" nobody ever gets it twice, with
    "every_run" not twice within a minute. Prints how many were sent, deferred (quiet
    hours, frequency cap, send window), skipped and failed."""
    from workers.jobs.scheduler import run_now

    cfg = load_app_config(config)
    campaign_cfg = cfg.campaign(campaign)
    engine = engine_for(cfg)
    now = utcnow()
    if cfg.broker.in_process:
        workers = in_process_workers(cfg, engine=engine)
        with workers.running():
            report = run_now(config=cfg, engine=engine, broker=workers.broker, campaign=campaign_cfg, now=now,
                             keep_ids=True)
            workers.join()
        outcome = outcome_of(engine, report)
    else:
        report = run_now(config=cfg, engine=engine, broker=reachable_broker(cfg), campaign=campaign_cfg, now=now)
        outcome = None  # Redis workers send it: `nurture status` tells
    if not any(run.planned for run in report.runs) and not as_json:
        # Claimed nothing (same minute) or planned nothing new (everyone already had it).
        console.print(f"{campaign}: nothing more to send (everyone targeted already has it)")
        return
    print_tick(report, as_json=as_json, outcome=outcome)


@friendly_errors
def worker(
    config: ConfigOption = Path("config.toml"),
    processes: Annotated[int | None, typer.Option(help="Worker processes (default: worker.processes).")] = None,
    threads: Annotated[int | None, typer.Option(help="Threads per process (default: worker.threads).")] = None,
) -> None:
    """Run Dramatiq worker processes that deliver queued messages (Redis broker).

    Equivalent to: NURTURE_CONFIG=config.toml dramatiq workers.app --processes N --threads M
    """
    cfg = load_app_config(config)
    if cfg.broker.in_process:
        err_console.print(
            "[bold red]error:[/] broker.url is stub:// (in-process): deliveries are sent by "
            "`nurture scheduler` itself. Set broker.url = \"redis://...\" to run separate workers."
        )
        raise typer.Exit(1)
    engine_for(cfg).dispose()  # migrate once here rather than racing in every process
    reachable_broker(cfg)  # fail clearly now rather than retry forever
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


@friendly_errors
def status(config: ConfigOption = Path("config.toml"), as_json: JsonOption = False) -> None:
    """Deliveries per campaign, channel and status; why messages were held back; paused campaigns."""
    from campaigns.reports.deliveries import (
        delivery_summary,
        held_back_summary,
        paused_campaigns_summary,
    )

    cfg = load_app_config(config)
    engine = engine_for(cfg)
    summary = delivery_summary(engine)
    held_back = held_back_summary(engine)
    paused = paused_campaigns_summary(engine)
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
