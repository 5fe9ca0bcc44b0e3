"""Fixtures for the domain's tests: ``engine``, a fresh migrated database once on SQLite
and once on PostgreSQL (folders that test one engine only override it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from campaigns.store.db import make_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    """An engine on a fresh, migrated database: SQLite, then PostgreSQL (a throwaway one)."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    made = make_engine(url)
    yield made
    made.dispose()
