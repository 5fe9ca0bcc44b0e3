"""Readers (campaigns/customers/importing/readers.py): bytes to rows with their line numbers,
the header checks, encodings and formats, CSV quoting gone wrong, and the size limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from campaigns.customers.importing.files import import_file
from campaigns.customers.importing.report import RowError
from campaigns.errors import DataImportError
from campaigns.store.models import Customer
from tests.campaigns.customers.importing.import_files import count, customer, write


def test_missing_required_header_raises(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "o.csv", "order_id,customer_id,amount\no1,c1,5\n")
    with pytest.raises(DataImportError, match="lacks required column.*ordered_at"):
        import_file(engine, "orders", path)


def test_undecodable_file_raises(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("customer_id,name\nc1,Ann\nc2,Jos\u00e9\n".encode("latin-1"))
    with pytest.raises(DataImportError, match=r"latin1.csv:3: not valid UTF-8"):
        import_file(engine, "customers", path)
    assert count(engine, Customer) == 1  # the rows before the bad line were written


def test_utf8_bom_and_explicit_format(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_bytes("customer_id,name\nc1,\u674e\u96f7\n".encode("utf-8-sig"))
    report = import_file(engine, "customers", path, file_format="csv")
    assert (report.imported, report.rejected) == (1, [])
    assert customer(engine, "c1").name == "\u674e\u96f7"


def test_row_with_wrong_field_count_is_rejected(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "customer_id,name\nc1,Ann,extra\n\nc2,Bob\n")
    report = import_file(engine, "customers", path)
    assert report.rejected == [RowError(2, "row has 3 fields but the header has 2")]
    assert report.rows_read == 2  # the blank line is not a row
    assert count(engine, Customer) == 1


def test_an_unterminated_quote_is_reported_not_swallowed(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", 'customer_id,name\nX0029,Ann\nX0030,"unterminated\nX0031,never\n')

    report = import_file(engine, "customers", path)

    assert report.imported == 1
    assert len(report.rejected) == 1
    error = report.rejected[0]
    assert error.line == 3
    assert "unterminated quoted field" in error.reason and "lines 3-4" in error.reason
    assert customer(engine, "X0029").name == "Ann"
    assert count(engine, Customer) == 1  # X0031 is not hidden inside X0030's name


def test_a_stray_quote_mid_file_rejects_its_row_and_parsing_resumes(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", 'customer_id,name\nA1,"Ann"x\nA2,Bob\nA3,"Multi\nline"\n')

    report = import_file(engine, "customers", path)

    assert [error.line for error in report.rejected] == [2]
    assert "CSV" in report.rejected[0].reason
    assert customer(engine, "A2").name == "Bob"
    assert customer(engine, "A3").name == "Multi\nline"  # a closed multi-line field is fine


def test_wide_header_is_refused_by_a_cap_and_duplicates_are_named(engine: Engine, tmp_path: Path) -> None:
    wide = write(tmp_path, "wide.csv", "customer_id," + ",".join(f"c{i}" for i in range(60_000)) + "\n")
    with pytest.raises(DataImportError, match=r"60001 columns; at most 1000"):
        import_file(engine, "customers", wide)
    dup = write(tmp_path, "dup.csv", "customer_id,b,a,b,a,c\n")
    with pytest.raises(DataImportError, match=r"duplicate CSV column\(s\): a, b$"):
        import_file(engine, "customers", dup)


def test_oversized_lines_and_values_are_rejected_by_line(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from campaigns.customers.importing import readers

    monkeypatch.setattr(readers, "MAX_ROW_BYTES", 4096)
    path = write(tmp_path, "c.jsonl", "\n".join([
        '{"customer_id": "a1"}',
        '{"customer_id": "a2", "attributes": {"blob": "' + "x" * 10_000 + '"}}',
        '{"customer_id": "a3"}',
    ]) + "\n")
    report = import_file(engine, "customers", path)
    assert report.imported == 2
    assert [(e.line, "4096 bytes" in e.reason) for e in report.rejected] == [(2, True)]

    csv_path = write(tmp_path, "c.csv", 'customer_id,note\nb1,"' + "y" * 3000 + '\n' + "y" * 3000 + '"\nb2,ok\n')
    report = import_file(engine, "customers", csv_path)
    assert report.imported == 1
    assert [(e.line, "4096 bytes" in e.reason) for e in report.rejected] == [(2, True)]

    monkeypatch.undo()
    big = write(tmp_path, "big.jsonl", '{"customer_id": "d1", "attributes": {"blob": "' + "z" * 70_000 + '"}}\n')
    report = import_file(engine, "customers", big)
    assert report.imported == 0
    assert report.rejected[0].reason.startswith("attributes.blob: value is 70002 bytes of JSON; at most 65536")
