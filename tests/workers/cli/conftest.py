"""Fixtures of the ``nurture`` command tests: a throwaway project (tests/workers/cli/win_back.py)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.workers.cli.win_back import Project


@pytest.fixture(autouse=True)
def _no_operator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NURTURE_DATABASE_URL", "NURTURE_BROKER_URL", "NURTURE_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Project]:
    def write(database_url: str, *, broker_url: str = "stub://") -> Project:
        templates = tmp_path / "templates" / "win_back"
        templates.mkdir(parents=True, exist_ok=True)
        (templates / "miss_you.subject.j2").write_text("We miss you, {{ customer.name }}\n")
        (templates / "miss_you.txt.j2").write_text(
            "Hi {{ customer.name }}, you ordered {{ stats.orders_count }} time(s).\n"
        )
        (templates / "miss_you.sms.j2").write_text("{{ customer.name }}: 15% off, code WELCOMEBACK\n")
        config = tmp_path / "config.toml"
        config.write_text(textwrap.dedent(f"""\
            [database]
            url = "{database_url}"

            [broker]
            url = "{broker_url}"
            batch_size = 3

            [worker]
            threads = 2
            backoff_base = "0s"
            backoff_cap = "0s"

            # Stated, off: `nurture run` sends at the real time (it has no --now), and the
            # default quiet hours would hold its messages back from 21:00 to 08:00 Shanghai.
            [compliance]
            quiet_hours = ""

            [templates]
            dir = "templates"

            [channels.email]
            kind = "outbox"
            dir = "out/email"
            recipient = "email"
            from = "Test Shop <shop@example.com>"

            [channels.sms]
            kind = "outbox"
            dir = "out/sms"
            recipient = "phone"

            [[campaigns]]
            name = "win_back"
            timezone = "Asia/Shanghai"
            trigger = {{ cron = "0 10 * * *" }}
            channels = ["email", "sms"]

              [campaigns.audience]
              min_orders = 1
              last_order_more_than_days = 90

              [[campaigns.steps]]
              template = "win_back/miss_you"
            """))
        return Project(tmp_path, config, database_url, tmp_path / "out" / "email", tmp_path / "out" / "sms")

    return write


@pytest.fixture
def project(make_project: Callable[..., Project], sqlite_url: str) -> Project:
    return make_project(sqlite_url)


@pytest.fixture
def engine(project: Project) -> Iterator[sa.Engine]:
    engine = project.engine()
    yield engine
    engine.dispose()
