"""CSV files meant for spreadsheets, with formula cells neutralised (CSV injection).

Text in our exports comes from imported data (a channel named ``=HYPERLINK(...)``), and a
spreadsheet runs a cell starting with ``=``, ``+``, ``-`` or ``@`` as a formula. Following
the OWASP CSV injection guidance, such a cell is written with a leading single quote so
the spreadsheet shows it as text. defusedcsv does this for ``= + - @ | %`` (leaving numbers
and numeric text such as ``-5.00`` alone, and escaping ``|`` against DDE); a leading tab or
carriage return, which OWASP lists as well, is added here. Every CSV export writes through
:func:`writer`; files meant to be imported again (the demo data) do not, as the quote would
become part of the value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any

from defusedcsv import csv as defused_csv

# Beginnings defusedcsv leaves alone but OWASP lists.
_EXTRA_TRIGGERS = ("\t", "\r")


def _quote_whitespace_trigger(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_EXTRA_TRIGGERS):
        return "'" + value  # defusedcsv leaves a value starting with ' as it is
    return value


class SafeWriter:
    """A ``csv.writer`` whose every cell a spreadsheet would evaluate gets a leading ``'``."""

    def __init__(self, handle: IO[str], **fmtparams: Any) -> None:
        self._writer = defused_csv.writer(handle, **fmtparams)

    def writerow(self, row: Iterable[Any]) -> Any:
        """Write one row, neutralised."""
        return self._writer.writerow([_quote_whitespace_trigger(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        """Write every row, neutralised."""
        for row in rows:
            self.writerow(row)


def writer(handle: IO[str], **fmtparams: Any) -> SafeWriter:
    """A CSV writer for exports (same arguments as :func:`csv.writer`)."""
    return SafeWriter(handle, **fmtparams)


__all__ = ["SafeWriter", "writer"]
