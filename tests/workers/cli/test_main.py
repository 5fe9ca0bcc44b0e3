"""``nurture --help`` and ``nurture import --help``: workers/cli/main.py registers every command
with its help, in order."""

from __future__ import annotations

from collections.abc import Callable

from tests.workers.cli.win_back import flat, invoke
from workers.cli import campaigns, demo, sending, setup


def first_line(func: Callable[..., object]) -> str:
    assert func.__doc__
    return func.__doc__.strip().splitlines()[0].strip()


def test_top_level_help_lists_every_command_with_its_help():
    result = invoke("--help")

    assert result.exit_code == 0
    text = flat(result.output)
    assert "lifecycle marketing automation" in text
    for name, func in {"check": setup.check, "scheduler": sending.scheduler, "worker": sending.worker,
                       "status": sending.status, "resume": campaigns.resume, "demo": demo.demo}.items():
        assert f"{name} {first_line(func)}" in text, name
    assert "db Database schema (Alembic migrations)." in text
    assert "import Import customers, orders, events or products from CSV or JSONL." in text


def test_import_help_lists_the_three_kinds_with_their_help():
    result = invoke("import", "--help")

    assert result.exit_code == 0
    text = flat(result.output)
    assert "Import customers, orders, events or products from CSV or JSONL." in text
    assert "customers Import (upsert) customers keyed by customer_id." in text
    assert "orders Import (upsert) orders keyed by order_id, with optional items." in text
    assert "events Import events (deduplicated on event_id or content)." in text
    assert "scheduler" not in text


def test_python_dash_m_workers_cli_is_the_nurture_command():
    # The benches fall back to it when no `nurture` script is on PATH; before __main__.py
    # existed it imported the package, did nothing and exited 0.
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "workers.cli", "check", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage: python -m workers.cli check" in flat(result.stdout)
