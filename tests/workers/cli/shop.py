"""The hand-computed shop of tests/campaigns/reports/test_customers.py (its docstring has the
arithmetic) in a throwaway project in ``tmp_path``, for the ``nurture segments``, ``customer``
and ``report channels`` tests, with helpers that read the tables they print.

Import the ``config``, ``engine`` and ``shop`` fixtures into a test module to use them (they
stand in for this folder's win_back project)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.config.schema import AppConfig
from campaigns.customers.profiles import recompute_profiles
from campaigns.store.db import make_engine
from tests.campaigns.reports.test_customers import AS_OF, add_ledger, build_shop
from tests.workers.cli.win_back import invoke


def flat(text: str) -> str:
    """Whitespace collapsed (rich wraps long lines at the console width)."""
    return " ".join(text.split())


def table_rows(output: str, start: str = "", end: str | None = None) -> dict[str, list[str]]:
    """Rows of the rich tables in ``output`` between the titles ``start`` and ``end``: first
    cell -> the other cells (a later table wins)."""
    output = output[output.index(start):]
    if end is not None:
        output = output[:output.index(end)]
    rows = {}
    for line in output.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip("│").split("│")]
            rows[cells[0]] = cells[1:]
    return rows


def round_trip(data: object) -> object:
    """What --json should print: the report with times in ISO 8601."""
    return json.loads(json.dumps(data, default=lambda value: value.isoformat()))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A minimal project: just a SQLite database (no channels or campaigns needed)."""
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "nurture.db"}"\n', encoding="utf-8")
    return path


@pytest.fixture
def engine(config: Path, tmp_path: Path):
    """The project's database, migrated by ``nurture db upgrade``."""
    assert invoke("db", "upgrade", "-c", config).exit_code == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'nurture.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def shop(engine: sa.Engine) -> sa.Engine:
    """The shop, its ledger and its profiles as of AS_OF."""
    ids = build_shop(engine)
    add_ledger(engine, ids)
    recompute_profiles(engine, AppConfig(), as_of=AS_OF)
    return engine
