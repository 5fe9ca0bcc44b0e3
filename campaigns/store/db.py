"""Engines, sessions and schema migrations. No module-level engine: callers own theirs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

#: Execution options that keep the rowcount of INSERT ... SELECT, which SQLAlchemy drops
#: on PostgreSQL otherwise: counting what an upsert added then needs no second query.
COUNT_ROWS = {"preserve_rowcount": True}


def normalize_url(url: str) -> str:
    """Map ``postgresql://`` URLs onto the psycopg 3 driver nurture installs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` (SQLite or PostgreSQL) with sensible per-dialect settings.

    SQLite gets WAL journaling and a busy timeout so the in-process worker threads and the
    scheduler can share one file without "database is locked" errors.

    Errors never quote the statement's parameters (``hide_parameters``): they hold emails
    and phone numbers, and error text reaches terminals and logs.
    """
    url = normalize_url(url)
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = sa.create_engine(url, **kwargs)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to ``revision`` with Alembic."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Move the database schema back to ``revision`` with Alembic."""
    from alembic import command

    command.downgrade(_alembic_config(engine), revision)


def head_revision() -> str | None:
    """The newest migration revision shipped with this version of nurture."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def dialect_insert(engine_or_session: Any, table: sa.Table) -> Any:
    """An ``INSERT`` construct supporting ``on_conflict_do_*`` for the bound dialect."""
    bind = engine_or_session.get_bind() if hasattr(engine_or_session, "get_bind") else engine_or_session
    if bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif bind.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise NotImplementedError(f"unsupported database dialect {bind.dialect.name!r}")
    return insert(table)
