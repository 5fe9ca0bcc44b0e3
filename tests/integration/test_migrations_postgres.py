"""Migrations on a real PostgreSQL match the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from campaigns.store.db import current_revision, downgrade, head_revision, make_engine, upgrade

pytestmark = pytest.mark.integration


def test_postgres_schema_matches_models_and_downgrades(postgres_url):
    engine = make_engine(postgres_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    downgrade(engine, "base")
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()
