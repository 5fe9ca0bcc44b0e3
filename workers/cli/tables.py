"""How the read-only commands print: plain-text table rows, tables at their natural width,
numbers as percentages, money and times, and JSON with ISO 8601 times."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from workers.cli.common import console


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def print_json(data: Any) -> None:
    """Print a report's dict as indented JSON, times in ISO 8601, text unescaped."""
    print(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False))


def pct(value: float | None) -> str:
    """A ratio as a percentage with one decimal, ``-`` when there is none."""
    return "-" if value is None else f"{100 * value:.1f}%"


def money(value: float | None) -> str:
    """An amount with thousands separators and two decimals, ``-`` when there is none."""
    return "-" if value is None else f"{value:,.2f}"


def when(value: datetime | None) -> str:
    """A time to the minute, ``-`` when there is none."""
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M}"


def text(value: Any) -> str:
    """A value as text, ``-`` when it is missing or empty."""
    return "-" if value is None or value == "" else str(value)


def clip(value: str, width: int = 60) -> str:
    """``value`` cut to ``width`` characters, an ellipsis marking the cut."""
    return value if len(value) <= width else value[: width - 1] + "…"


def add_row(table: Table, *cells: str, style: str | None = None) -> None:
    """Add a row of plain text: stored values (names, channels, errors) are never read as
    rich markup, so ``[/b]`` in a name prints as is instead of failing."""
    table.add_row(*(Text(cell) for cell in cells), style=style)


def print_table(table: Table) -> None:
    """Print a table at its natural width even on a narrow terminal: numbers are never
    truncated to an ellipsis (the terminal wraps the long lines instead)."""
    needed = Measurement.get(console, console.options.update(max_width=10_000), table).maximum
    if needed <= console.width:
        console.print(table)
    else:  # Console.print clamps width to the console's, so print through a wider twin.
        Console(width=needed, soft_wrap=True, force_terminal=console.is_terminal,
                color_system=console.color_system or None).print(table)


def key_values(rows: list[tuple[str, Any]]) -> Table:
    """A two-column grid of bold keys and their values (``-`` for missing ones)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows:
        add_row(grid, key, text(value))
    return grid


def titled_table(title: str, columns: list[str], rows: list[list[str]], *, total: int | None = None,
                 right: tuple[str, ...] = ()) -> Table:
    """A table of plain-text ``rows``; when ``total`` is more than the rows shown, the title
    says how many of how many (newest first). Columns named in ``right`` are right-aligned."""
    shown = f"{title} ({len(rows)} of {total}, newest first)" if total is not None and total > len(rows) else title
    table = Table(title=shown, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        add_row(table, *row)
    return table
