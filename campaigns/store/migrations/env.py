"""Alembic environment: runs against the engine passed in by :mod:`campaigns.store.db`."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from campaigns.store import models  # noqa: F401  (registers the tables on the metadata)
from campaigns.store.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    """Run migrations on the engine handed over in ``config.attributes``."""
    engine = config.attributes.get("engine")
    if engine is None:
        engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
