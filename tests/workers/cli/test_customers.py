"""The customer commands of workers/cli/customers.py through the Typer app: ``nurture import``
(customers, orders), each on a throwaway project in ``tmp_path``, and hostile rows listed by
line (the rows themselves: tests/campaigns/customers/importing/test_fields.py)."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from campaigns.store.db import make_engine
from campaigns.store.models import Customer, Order
from tests.campaigns.customers.importing.import_files import count, customer, write
from tests.campaigns.customers.importing.test_fields import UNSTORABLE_CUSTOMERS
from tests.workers.cli.win_back import assert_no_crash, customer_rows, invoke

# --------------------------------------------------------------------------- import

CUSTOMERS_CSV = """
customer_id,name,email,timezone
A1,Ann,ann@example.com,Asia/Shanghai
A2,Bob,not-an-email,
,No Id,noid@example.com,
A3,Cy,cy@example.com,Mars/Base
A4,Di,di@example.com,UTC
A5,Ed,ed@example.com
A6,Flo,flo@example.com,Europe/Paris
"""
#: line -> a word the reason must contain (line 1 is the header).
BAD_CUSTOMER_LINES = {3: "email", 4: "customer_id", 5: "timezone", 7: "fields"}
GOOD_CUSTOMERS = {"A1": ("Ann", "ann@example.com"), "A4": ("Di", "di@example.com"),
                  "A6": ("Flo", "flo@example.com")}


def test_import_customers_lists_each_bad_row_by_file_and_line_and_keeps_the_good_ones(project, engine):
    file = project.write("customers.csv", CUSTOMERS_CSV)

    result = invoke("import", "customers", file, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 3, result.output
    assert "3 imported, 4 rejected of 7 rows" in result.output
    listed = {}
    for line in result.output.splitlines():
        prefix = f"{file}:"
        if line.strip().startswith(prefix):
            number, _, reason = line.strip()[len(prefix):].partition(": ")
            listed[int(number)] = reason
    assert sorted(listed) == sorted(BAD_CUSTOMER_LINES)
    for number, word in BAD_CUSTOMER_LINES.items():
        assert word in listed[number], (number, listed[number])
    # The bad time zone is named; the bad email is not echoed (nothing personal in output)
    assert "not-an-email" not in result.output and "'Mars/Base'" in listed[5]
    assert customer_rows(engine) == GOOD_CUSTOMERS


def test_import_customers_json_report_parses_and_has_the_rejected_lines(project, engine):
    file = project.write("customers.csv", CUSTOMERS_CSV)

    result = invoke("import", "customers", file, "-c", project.config, "--json")

    assert_no_crash(result)
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert report["kind"] == "customers"
    assert (report["rows_read"], report["imported"], report["rejected_count"]) == (7, 3, 4)
    assert [entry["line"] for entry in report["rejected"]] == sorted(BAD_CUSTOMER_LINES)
    for entry in report["rejected"]:
        assert BAD_CUSTOMER_LINES[entry["line"]] in entry["reason"]
    assert customer_rows(engine) == GOOD_CUSTOMERS


def test_re_importing_customers_updates_instead_of_duplicating(project, engine):
    file = project.write("customers.csv", CUSTOMERS_CSV)

    first = invoke("import", "customers", file, "-c", project.config, "--json")
    second = invoke("import", "customers", file, "-c", project.config, "--json")

    assert (first.exit_code, second.exit_code) == (3, 3)
    counts = ("created", "updated", "merged", "reviews_opened")
    first_report, second_report = json.loads(first.stdout), json.loads(second.stdout)
    assert [second_report.pop(key) for key in counts] == [0, 3, 0, 0]  # issue #15: the report counts persons
    assert [first_report.pop(key) for key in counts] == [3, 0, 0, 0]
    assert second_report == first_report
    assert customer_rows(engine) == GOOD_CUSTOMERS
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Customer)).scalar() == 3

    # A changed value in a re-import updates the row in place.
    changed = project.write("customers2.csv", """
        customer_id,name
        A1,Ann Lee
        """)
    third = invoke("import", "customers", changed, "-c", project.config)
    assert third.exit_code == 0, third.output
    assert customer_rows(engine) == {**GOOD_CUSTOMERS, "A1": ("Ann Lee", "ann@example.com")}


def test_import_of_a_clean_file_exits_0(project, engine):
    file = project.write("ok.jsonl", """
        {"customer_id": "J1", "email": "j1@example.com"}
        {"customer_id": "J2", "name": "Jo"}
        """)

    result = invoke("import", "customers", file, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    assert "2 imported, 0 rejected of 2 rows" in result.output
    assert customer_rows(engine) == {"J1": (None, "j1@example.com"), "J2": ("Jo", None)}


def test_import_of_a_missing_file_is_a_clear_error(project, engine):
    missing = project.root / "nope.csv"

    result = invoke("import", "customers", missing, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 1
    assert f"{missing}: file not found" in result.output
    assert customer_rows(engine) == {}


def test_import_orders_lists_the_unknown_customers(project, engine):
    customers = project.write("customers.csv", """
        customer_id,email
        K1,k1@example.com
        K2,k2@example.com
        """)
    orders = project.write("orders.csv", """
        order_id,customer_id,ordered_at,amount
        O1,K1,2025-01-01,10
        O2,GHOST-1,2025-01-02,5
        O3,K2,2025-01-03,7.5
        O4,GHOST-2,2025-01-04,1
        """)
    assert invoke("import", "customers", customers, "-c", project.config).exit_code == 0

    result = invoke("import", "orders", orders, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 3, result.output
    assert "orders: 2 imported, 2 rejected of 4 rows" in result.output
    assert f"{orders}:3: customer_id 'GHOST-1' not found" in result.output
    assert f"{orders}:5: customer_id 'GHOST-2' not found" in result.output
    assert "'K1' not found" not in result.output and "'K2' not found" not in result.output
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(Order.order_id, Order.amount)).all())
    assert stored == {"O1": 10.0, "O3": 7.5}


def test_import_into_an_unreachable_database_is_exit_2(make_project):
    project = make_project("postgresql://postgres@127.0.0.1:1/x")
    file = project.write("customers.csv", CUSTOMERS_CSV)

    result = invoke("import", "customers", file, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 2
    assert "database error" in result.output


def test_cli_import_lists_hostile_rows_by_line_without_traceback_or_personal_data(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from workers.cli.main import app

    database = tmp_path / "cli.db"
    config = write(tmp_path, "config.toml", f'[database]\nurl = "sqlite:///{database}"\n')
    lines = [UNSTORABLE_CUSTOMERS[0], UNSTORABLE_CUSTOMERS[1], UNSTORABLE_CUSTOMERS[5],
             '{"customer_id": "h14", "email": "h14@example.com", "phone": "+8613812345678", "name": "\\ud800"}',
             UNSTORABLE_CUSTOMERS[12]]
    jsonl = write(tmp_path, "c.jsonl", "\n".join(lines) + "\n")
    csv_file = write(tmp_path, "c.csv", 'customer_id,email,name\nX0029,x29@example.com,Ann\n'
                                        'X0030,x30@example.com,"unterminated\nX0031,x31@example.com,never\n')

    for path, bad_lines, imported in ((jsonl, [2, 3, 4], 2), (csv_file, [3], 1)):
        result = CliRunner().invoke(app, ["import", "customers", str(path), "-c", str(config)])
        assert result.exit_code == 3, result.output
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert f"{imported} imported, {len(bad_lines)} rejected" in result.output
        listed = [int(line.strip()[len(f"{path}:"):].split(":", 1)[0])
                  for line in result.output.splitlines() if line.strip().startswith(f"{path}:")]
        assert listed == bad_lines
        assert "example.com" not in result.output and "13812345678" not in result.output
    engine = make_engine(f"sqlite:///{database}")
    try:
        assert sorted(c.external_id for c in (customer(engine, i) for i in ("h1", "h13", "X0029"))) == [
            "X0029", "h1", "h13"]
        assert count(engine, Customer) == 3
    finally:
        engine.dispose()
