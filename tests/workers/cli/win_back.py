"""The throwaway project the ``nurture`` command tests run on (the fixtures that make it
are in this folder's conftest.py): a SQLite file, the stub broker, and a ``win_back``
campaign on two outbox channels writing into ``tmp_path``; with the helpers that invoke the
Typer app and read what a command left behind."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner, Result

from campaigns.store.db import make_engine
from campaigns.store.models import Customer
from tests.conftest import TICK_NOW, seed_customers
from workers.cli.main import app

#: Just after win_back's 10:00 Asia/Shanghai slot (02:00 UTC).
NOW_ARG = TICK_NOW.isoformat()


def invoke(*args: object) -> Result:
    """Run ``nurture ARGS`` through the Typer app (every argument as text)."""
    return CliRunner().invoke(app, [str(arg) for arg in args])


def assert_no_crash(result: Result) -> None:
    """A user mistake must end in a message and an exit code, never in a traceback."""
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def flat(text: str) -> str:
    """Rich help boxes and wrapping removed, whitespace collapsed."""
    for char in "│╭╮╰╯─":
        text = text.replace(char, " ")
    return " ".join(text.split())


@dataclass
class Project:
    """Where a throwaway project's files are: its config, database and outbox folders."""

    root: Path
    config: Path
    database_url: str
    outbox: Path
    outbox_sms: Path

    def engine(self) -> sa.Engine:
        """A new engine on the project's database (the caller disposes of it)."""
        return make_engine(self.database_url)

    def write(self, name: str, text: str) -> Path:
        """Write ``text`` (dedented) to ``name`` in the project folder."""
        path = self.root / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path


def customer_rows(engine: sa.Engine) -> dict[str, tuple[str | None, str | None]]:
    """Name and email of every customer, by external id."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Customer.external_id, Customer.name, Customer.email)).all()
    return {external_id: (name, email) for external_id, name, email in rows}


def seed_lapsed(engine: sa.Engine) -> list[str]:
    """10 customers, 4 lapsed (C00000-C00003); C00003 has no email, so gets an SMS."""
    groups = seed_customers(engine, count=10, now=TICK_NOW, lapsed_share=0.4)
    assert groups["lapsed"] == ["C00000", "C00001", "C00002", "C00003"]
    with engine.begin() as conn:
        conn.execute(sa.update(Customer).where(Customer.external_id == "C00003").values(email=None))
    return groups["lapsed"]


def outbox_files(project: Project) -> tuple[list[Path], list[Path]]:
    """The email and SMS files the outbox channels have written, sorted."""
    emails = sorted(project.outbox.rglob("*.eml")) if project.outbox.exists() else []
    texts = sorted(project.outbox_sms.rglob("*.txt")) if project.outbox_sms.exists() else []
    return emails, texts
