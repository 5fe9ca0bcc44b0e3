"""What every ``nurture`` command group shares: the consoles, the common options, the
error-to-exit-code mapping, loading the config, and the choice between in-process workers
(``broker.url = "stub://"``) and a Redis broker.

Every user mistake (bad config, bad file, unreachable server) is printed as a clear
message with exit code 1 or 2; a traceback means a bug.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import sqlalchemy as sa
import typer
from rich.console import Console

from campaigns.config.schema import AppConfig
from campaigns.customers.masking import register_secrets, secrets_from_config
from campaigns.errors import ConfigError, NurtureError
from campaigns.project.loading import load_config
from campaigns.store.db import make_engine, upgrade
from campaigns.store.models import utcnow

if TYPE_CHECKING:
    from dramatiq import Broker

    from workers.jobs.inprocess import InProcessWorkers

#: Where the commands print their results.
console = Console(soft_wrap=True)
#: Where the commands print errors, warnings and progress.
err_console = Console(stderr=True, soft_wrap=True)

#: ``--config/-c``, taken by every command that reads config.toml.
ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", envvar="NURTURE_CONFIG", help="Path to config.toml.", show_default=True),
]
#: ``--json``: machine-readable output instead of tables.
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
    # Imported when a command fails, not at start-up: `nurture check` needs no Redis client.
    import redis

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def load_app_config(config_path: Path) -> AppConfig:
    """Load config.toml and register its secrets with the log masking."""
    config = load_config(config_path)
    # main() masks every log line; from now on the config's secrets are known too.
    register_secrets(secrets_from_config(config))
    return config


def engine_for(config: AppConfig) -> sa.Engine:
    """An engine on the configured database, migrated to the latest schema."""
    engine = make_engine(config.database.url)
    upgrade(engine)
    return engine


def parse_now(value: str | None) -> datetime:
    """``--now``/``--at``/``--as-of`` as an aware time (UTC when no offset is given); now when empty."""
    if not value:
        return utcnow()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time, e.g. 2026-11-24T10:00:00+08:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def in_process_workers(config: AppConfig, *, engine: sa.Engine,
                       clock: Callable[[], datetime] = utcnow) -> InProcessWorkers:
    """Worker threads of this process over a stub broker (start them with ``.running()``)."""
    from workers.jobs.inprocess import InProcessWorkers
    from workers.jobs.runtime import Runtime

    return InProcessWorkers(runtime=Runtime.from_config(config, engine=engine, clock=clock))


def reachable_broker(config: AppConfig) -> Broker:
    """The Redis broker, pinged: a clear error now rather than on the first enqueue."""
    from workers.jobs.broker import make_broker

    broker = make_broker(config.broker)
    broker.client.ping()  # type: ignore[attr-defined]
    return broker
