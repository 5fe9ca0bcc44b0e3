"""The Alembic migrations and the SQLModel models describe the same schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from campaigns.store import models  # noqa: F401
from campaigns.store.db import current_revision, downgrade, head_revision, make_engine, upgrade


def test_migrated_sqlite_schema_matches_the_models(sqlite_engine):
    with sqlite_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_migrations_go_down_to_empty_and_back_up(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    downgrade(engine, "base")
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()
