"""The import report (campaigns/customers/importing/report.py) as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import Engine

from campaigns.customers.importing.files import import_file
from campaigns.customers.importing.report import ImportReport
from tests.campaigns.customers.importing.import_files import write


def test_report_to_dict_is_json(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "customer_id,email\nc1,bad\n")
    report = import_file(engine, "customers", path)
    assert isinstance(report, ImportReport)
    data = json.loads(json.dumps(report.to_dict()))
    assert data == {
        "kind": "customers",
        "path": str(path),
        "rows_read": 1,
        "imported": 0,
        "created": 0,
        "updated": 0,
        "merged": 0,
        "reviews_opened": 0,
        "rejected_count": 1,
        "rejected": [{"line": 2, "reason": "email: not a valid address (one @, a dotted domain, no spaces)"}],
    }
