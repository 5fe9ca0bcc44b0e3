"""Setting up: ``nurture check`` (config.toml and its templates) and ``nurture db`` (the schema)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from campaigns.project.check import check_config_file
from campaigns.store.db import current_revision, make_engine
from workers.cli.common import (
    ConfigOption,
    JsonOption,
    console,
    engine_for,
    err_console,
    friendly_errors,
    load_app_config,
)

#: ``nurture db``: its commands migrate the database or show its revision.
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


@friendly_errors
def check(config: ConfigOption = Path("config.toml"), as_json: JsonOption = False) -> None:
    """Validate config.toml and render every template for several kinds of customer.

    Each template is rendered as a send would render it, for every customer archetype its
    campaign can reach: typical, no orders, one order, many orders, no name, no attributes,
    and no email, phone or WeChat. Reports every error at once with file, line and key path,
    and warns about marketing email without an unsubscribe link; exits 1 on any error.
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
    cfg = load_app_config(config)
    engine = engine_for(cfg)
    console.print(f"database at revision {current_revision(engine)}")


@db_app.command("current")
@friendly_errors
def db_current(config: ConfigOption = Path("config.toml")) -> None:
    """Show the schema revision the database is at."""
    cfg = load_app_config(config)
    console.print(current_revision(make_engine(cfg.database.url)) or "empty database (run: nurture db upgrade)")
