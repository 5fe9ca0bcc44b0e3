"""``nurture report loyalty`` through the real CLI, over the hand-computed history of
tests/campaigns/reports/test_loyalty.py: the tables, --json, --csv, --from/--to, and
[loyalty] off; mistakes end in one line, never a traceback."""

from __future__ import annotations

import csv
import json

from tests.campaigns.reports import test_loyalty as hand
from tests.workers.cli.shop import table_rows
from tests.workers.cli.win_back import assert_no_crash, flat, invoke

NOW = "2026-06-10T12:00:00+08:00"


def enable(project, **keys: str) -> None:
    lines = "".join(f"{key} = {value}\n" for key, value in {"enabled": "true", "point_value": "0.05", **keys}.items())
    project.config.write_text(project.config.read_text() + "\n[loyalty]\n" + lines)


def test_the_report_in_tables(project, engine):
    enable(project)
    hand.build_history(engine)
    result = invoke("report", "loyalty", "--now", NOW, "-c", project.config)
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "outstanding points 1,163 (3 customers)" in text
    assert "liability 58.15 at 0.05 a point" in text
    assert "debts (owed, apart) 300 (1 customer)" in text
    assert "15 within 30 days · 25 within 60 days · 30 within 90 days" in text
    months = table_rows(result.output, "points per month (Asia/Shanghai), 2025-07 to 2026-06",
                        "points per month and source")
    assert months["2026-03"] == ["1,000", "12", "0", "0", "0", "+988", "1", "0"]
    assert months["2026-04"] == ["20", "0", "10", "1,200", "30", "-1,160", "0", "0"]
    assert months["2026-05"] == ["100", "0", "0", "0", "0", "+100", "0", "1"]
    assert months["total"] == ["2,355", "312", "10", "1,200", "30", "+863", "2", "1"]
    tiers = table_rows(result.output, "customers per tier now (of 4)", "tier moves per month")
    assert tiers == {"member": ["3", "75.0%"], "silver": ["1", "25.0%"],
                     "gold": ["0", "0.0%"]}
    assert "│ 2026-05 │ silver │ member │ down │" in result.output


def test_json_csv_and_a_range(project, engine, tmp_path):
    enable(project)
    hand.build_history(engine)
    result = invoke("report", "loyalty", "--now", NOW, "--from", "2026-03", "--to", "2026-04", "--json",
                    "-c", project.config)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["months"] == ["2026-03", "2026-04"]
    assert (data["outstanding"], data["liability"], data["debts"]) == (1163, 58.15, 300)
    assert data["now"] == "2026-06-10T12:00:00+08:00"
    assert {"month": "2026-03", "source": "purchase", "earned": 1000, "redeemed": 0, "expired": 0, "reversed": 0,
            "adjusted": 0} in data["by_source"]
    assert data["tiers"][1] == {"tier": "silver", "customers": 1, "share": 0.25}

    out = tmp_path / "loyalty.csv"
    written = invoke("report", "loyalty", "--now", NOW, "--csv", out, "-c", project.config)
    assert written.exit_code == 0, written.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert f"wrote {len(rows)} rows to {out}" in flat(written.output)
    outstanding = {row["name"]: row for row in rows if row["section"] == "outstanding"}
    assert outstanding["outstanding"]["points"] == "1163" and outstanding["liability"]["value"] == "58.15"
    assert outstanding["expiring_90d"]["points"] == "30"
    march = next(row for row in rows if (row["section"], row["month"], row["name"]) == ("source", "2026-03", "purchase"))
    assert march["earned"] == "1000"


def test_mistakes_and_loyalty_off(project, engine):
    off = invoke("report", "loyalty", "--now", NOW, "-c", project.config)
    assert off.exit_code == 0
    assert "loyalty is off: set enabled = true under [loyalty] in config.toml" in flat(off.output)
    assert json.loads(invoke("report", "loyalty", "--json", "-c", project.config).output)["enabled"] is False

    enable(project)
    for args, message in ((("--from", "2026-13"), "'2026-13' is not a month: write it as YYYY-MM"),
                          (("--from", "2026-05", "--to", "2026-04"), "--from 2026-05 is after --to 2026-04"),
                          (("--from", "1990-01"), "a report covers 240 months at most")):
        result = invoke("report", "loyalty", "--now", NOW, *args, "-c", project.config)
        assert_no_crash(result)
        assert result.exit_code == 1 and message in flat(result.output), result.output
    bad_now = invoke("report", "loyalty", "--now", "soon", "-c", project.config)
    assert_no_crash(bad_now)
    assert bad_now.exit_code == 2
