"""``nurture demo``: generate demo data, import it, send in-process to outbox files and show
the results, on a database and outbox of its own (it refuses anything it did not write)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from campaigns.config.channels import OutboxChannelConfig
from campaigns.config.schema import AppConfig
from campaigns.customers.masking import register_secrets, secrets_from_config
from campaigns.errors import ConfigError
from campaigns.project.check import check_config_file
from campaigns.store.models import utcnow
from workers.cli.common import (
    ConfigOption,
    console,
    engine_for,
    err_console,
    friendly_errors,
    in_process_workers,
)
from workers.cli.runreport import outcome_of, print_tick


def _demo_refusal(cfg: AppConfig, db_path: Path, target: Any) -> str | None:
    """Why the demo must not run on this config's database and outbox, or None.

    The demo sends only to outbox channels (never to a real provider), and resets only a
    database it created that holds nothing but its data (``inspect_demo_database``).
    """
    used = {name for campaign in cfg.campaigns for name in campaign.channels}
    real = sorted(name for name in used if not isinstance(cfg.channels.get(name), OutboxChannelConfig))
    if real:
        return (f"the demo sends only to outbox channels (files), and channel(s) {', '.join(real)} would reach "
                "real people; run it with a config whose campaigns use outbox channels only")
    where = os.path.relpath(db_path)
    own_db = "give the demo a database of its own, e.g. NURTURE_DATABASE_URL=sqlite:///var/demo.db nurture demo"
    if target.foreign:
        main = [table for table in ("customer", "orders", "product", "delivery") if table in target.foreign]
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
    from campaigns.customers.demo_data import (
        demo_moment,
        inspect_demo_database,
        mark_demo_database,
        write_demo_files,
    )
    from campaigns.customers.profiles import recompute_profiles
    from campaigns.reports.campaign import campaign_report
    from campaigns.reports.deliveries import delivery_summary
    from workers.channels.outbox import remove_messages
    from workers.cli.demo_identity import decide_reviews, import_sources, show_one_person
    from workers.cli.demo_loyalty import DEMO_SECRET, run_programme, show_referral

    result = check_config_file(config)
    if not result.ok:
        raise ConfigError(result.issues)
    cfg = result.config
    assert cfg is not None
    if cfg.loyalty.enabled and not os.environ.get(cfg.security.secret_env):
        # Coupon and referral codes are keyed with the installation secret: the demo, on
        # its own database only, uses one of its own when the environment has none.
        os.environ[cfg.security.secret_env] = DEMO_SECRET
        console.print(f"note: {cfg.security.secret_env} is not set: the demo keys its coupon and referral codes "
                      "with a demo secret (set your own before real use)", highlight=False)
    register_secrets(secrets_from_config(cfg))
    if not cfg.broker.in_process or not cfg.database.url.startswith("sqlite"):
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
    now = demo_moment(utcnow())
    console.print(f"demo clock: {now.astimezone(ZoneInfo('Asia/Shanghai')):%Y-%m-%d %H:%M} Asia/Shanghai, where the "
                  "demo customers live (marketing waits out the quiet hours, 21:00-08:00 local)")
    console.print(f"[bold]1.[/] generating {customers} people with two years of orders → {data_dir}")
    files = write_demo_files(data_dir, customers=customers, seed=seed, now=now)
    console.print(f"   they come from two systems: the web shop (source online) and the store's tills (source "
                  f"store); {files.in_both} people are in both, under one phone", highlight=False)
    engine = engine_for(cfg)
    mark_demo_database(db_path)  # before any data: a later run may reset this database
    console.print("[bold]2.[/] importing through `nurture import --source` code paths (\\[identity.sources] in "
                  f"{config.name})", highlight=False)
    import_sources(engine, cfg, files)
    decide_reviews(engine, files, now=utcnow())
    profiles_report = recompute_profiles(engine, cfg, as_of=now)
    console.print(f"[bold]3.[/] profiles: {profiles_report.customers} customers staged and RFM-scored "
                  f"in {profiles_report.seconds:.1f}s (what the scheduler does daily)")
    console.print("[bold]4.[/] points (\\[loyalty] in config.toml: seed 004's rules; what the scheduler does daily)",
                  highlight=False)
    run_programme(engine, cfg, files, now=now)
    member = show_referral(engine, cfg, now=now, data_dir=data_dir)
    console.print("[bold]5.[/] scheduler tick with in-process Dramatiq workers (stub broker)")
    workers = in_process_workers(cfg, engine=engine, clock=lambda: now)
    with workers.running():
        tick_report = workers.tick(now)
    print_tick(tick_report, as_json=False, outcome=outcome_of(engine, tick_report))
    console.print("[bold]6.[/] results")
    table = Table(title="What was sent")
    for column in ("campaign", "channel", "status", "messages", "where"):
        table.add_column(column, justify="right" if column == "messages" else "left")
    for row in delivery_summary(engine):
        options = cfg.channels.get(row["channel"])
        directory = getattr(options, "dir", None)
        where = os.path.relpath(Path(directory) / row["campaign"]) if directory else "-"
        table.add_row(row["campaign"], row["channel"], row["status"], str(row["count"]), where)
    console.print(table)
    outcomes = Table(title="Campaign enrolment (later steps wait for their day; conversions accrue over 14 days)")
    for column in ("campaign", "enrolled", "held out", "sent", "queued (later steps)", "skipped"):
        outcomes.add_column(column, justify="left" if column == "campaign" else "right")
    for campaign in cfg.campaigns:
        data = campaign_report(engine, cfg, campaign.name, now=now)
        outcomes.add_row(campaign.name, str(data["enrolled"]), str(data["held_out"]), str(data["sent"]),
                         str(data["deliveries"].get("queued", 0)), str(data["skipped"]))
    console.print(outcomes)
    console.print("[bold]7.[/] one person across the two sources")
    person = show_one_person(engine, cfg, files)
    console.print(f"database: {db_path}   ·   run again: `make demo`")
    console.print(f"explore: .venv/bin/nurture status | segments | audience win_back | customer {person or 'online:W000042'}"
                  " | identity review | report identity | report channels | report campaign win_back",
                  highlight=False)
    console.print(f"points: .venv/bin/nurture points {member or 'online:W000042'} | report loyalty | report referrals"
                  " | coupons | report campaign tier_gift", highlight=False)
    console.print("in a browser: NURTURE_DASHBOARD_PASSWORD=demo .venv/bin/nurture serve, then "
                  "http://127.0.0.1:8000/dashboard (any user name, password demo)")
