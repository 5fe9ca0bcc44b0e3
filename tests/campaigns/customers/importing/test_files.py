"""import_file (campaigns/customers/importing/files.py), the entry: files it refuses before
reading a row, and a large file written in batches with progress reported as it goes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.customers.importing.files import import_file
from campaigns.errors import DataImportError
from campaigns.store.models import Consent, Customer
from tests.campaigns.customers.importing.import_files import count, customer


@pytest.mark.parametrize(
    ("name", "content", "file_format", "message"),
    [
        ("missing.csv", None, None, "file not found"),
        ("data.xlsx", "x", None, "unknown file format"),
        ("data.txt", "x", "parquet", "unknown file format"),
        ("empty.csv", "", None, "empty"),
        ("dup.csv", "customer_id,name,name\n", None, "duplicate CSV column"),
    ],
)
def test_unusable_files_raise(
    engine: Engine,
    tmp_path: Path,
    name: str,
    content: str | None,
    file_format: str | None,
    message: str,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataImportError, match=message):
        import_file(engine, "customers", path, file_format=file_format)


def test_large_csv_is_batched(engine: Engine, tmp_path: Path) -> None:
    rows, batch_size = 20_000, 1000
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("customer_id,name,email,email_consent,city,points\n")
        for i in range(rows):
            handle.write(
                f"cust-{i},Name {i},user{i}@example.com,{'yes' if i % 2 else 'no'},"
                f"City {i % 7},{i}\n"
            )
    commits = 0

    def on_commit(_conn: Any) -> None:
        nonlocal commits
        commits += 1

    seen: list[int] = []
    sa.event.listen(engine, "commit", on_commit)
    try:
        report = import_file(engine, "customers", path, batch_size=batch_size, progress=seen.append)
    finally:
        sa.event.remove(engine, "commit", on_commit)

    assert (report.rows_read, report.imported, report.rejected) == (rows, rows, [])
    assert count(engine, Customer) == rows
    assert count(engine, Consent) == rows
    assert commits <= rows // batch_size + 2
    assert seen == sorted(seen) and len(seen) >= rows // batch_size
    assert seen[-1] == path.stat().st_size
    last = customer(engine, f"cust-{rows - 1}")
    assert last.attributes == {"city": f"City {(rows - 1) % 7}", "points": rows - 1}
