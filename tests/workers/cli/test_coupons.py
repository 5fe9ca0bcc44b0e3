"""Coupons through the Typer app (workers/cli/coupons.py) on the throwaway win_back project:
``nurture import coupons`` and ``coupon-redemptions`` (rows listed by line, exit 3), ``nurture
coupons`` (table and --json), ``nurture check`` on templates showing ``coupon.code``, and a
dry pool's pause in ``nurture status`` and ``nurture campaigns``."""

from __future__ import annotations

import json

from tests.workers.cli.win_back import NOW_ARG, assert_no_crash, flat, invoke, outbox_files, seed_lapsed


def with_coupon(project, coupon: str = 'coupon = { pool = "wb10" }') -> None:
    text = project.config.read_text()
    project.config.write_text(text.replace('channels = ["email", "sms"]\n',
                                           f'channels = ["email", "sms"]\n{coupon}\n', 1))
    template = project.root / "templates" / "win_back" / "miss_you.txt.j2"
    template.write_text(template.read_text() + "Your code: {{ coupon.code }}\n")
    sms = project.root / "templates" / "win_back" / "miss_you.sms.j2"
    sms.write_text("{{ customer.name }}: 15% off, code {{ coupon.code }}\n")


def test_import_coupons_lists_a_duplicate_and_a_bad_row_by_line_and_exits_3(project):
    codes = project.write("codes.csv", """
        code
        A1
        A2
        A1
        BAD CODE
        A3
        """)

    result = invoke("import", "coupons", codes, "--pool", "wb10", "--now", NOW_ARG, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 3, result.output
    text = flat(result.output)
    assert "coupons into wb10: 3 imported, 1 duplicate(s), 1 rejected of 5 rows" in text
    assert f"{codes}:4: code already on line 2" in text
    assert f"{codes}:5: code: printable ASCII characters only, without spaces" in text

    again = invoke("import", "coupons", codes, "--pool", "wb10", "--json", "-c", project.config)
    assert again.exit_code == 3
    data = json.loads(again.stdout)
    assert (data["imported"], data["duplicate_count"], data["rejected_count"]) == (0, 4, 1)
    assert [row["line"] for row in data["duplicates"]] == [2, 3, 4, 6]

    clean = project.write("more.csv", "code\nB1\nB2\n")
    ok = invoke("import", "coupons", clean, "--pool", "wb10", "-c", project.config)
    assert ok.exit_code == 0 and "2 imported, 0 duplicate(s), 0 rejected of 2 rows" in flat(ok.output)


def test_a_bad_pool_name_is_exit_2_and_a_missing_file_exit_1(project):
    codes = project.write("codes.csv", "code\nA1\n")
    bad = invoke("import", "coupons", codes, "--pool", "no spaces", "-c", project.config)
    assert_no_crash(bad)
    assert bad.exit_code == 2 and "is not valid" in flat(bad.output) and "(--pool)" in bad.output
    missing = invoke("import", "coupons", project.root / "nope.csv", "--pool", "wb10", "-c", project.config)
    assert_no_crash(missing)
    assert missing.exit_code == 1 and "file not found" in missing.output
    no_pool = invoke("import", "coupons", codes, "-c", project.config)
    assert_no_crash(no_pool)
    assert no_pool.exit_code == 2 and "--pool" in no_pool.output


def test_coupons_shows_each_pool_and_a_dry_one(project):
    with_coupon(project)
    empty = invoke("coupons", "--json", "-c", project.config)
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.stdout) == {"pools": [{
        "pool": "wb10", "available": 0, "assigned": 0, "redeemed": 0, "total": 0, "campaigns": ["win_back"],
        "generated": False, "dry": True}]}
    table = flat(invoke("coupons", "-c", project.config).output)
    assert "wb10 imported 0 0 0 win_back dry" in table
    assert "pool wb10 is dry: win_back pause(s) at the next message" in table

    invoke("import", "coupons", project.write("c.csv", "code\nA1\nA2\n"), "--pool", "spring", "-c", project.config)
    data = json.loads(invoke("coupons", "--json", "-c", project.config).stdout)
    assert [(p["pool"], p["available"], p["campaigns"], p["dry"]) for p in data["pools"]] == [
        ("spring", 2, [], False), ("wb10", 0, ["win_back"], True)]


def test_a_dry_pool_pauses_the_campaign_and_status_and_campaigns_say_why(project, engine):
    with_coupon(project)
    seed_lapsed(engine)  # four lapsed customers: three emails, one SMS
    invoke("import", "coupons", project.write("c.csv", "code\nA1\nA2\n"), "--pool", "wb10", "-c", project.config)

    assert invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config).exit_code == 0

    emails, texts = outbox_files(project)
    sent = [path.read_text() for path in emails + texts]
    assert len(sent) == 2 and sorted(code for code in ("A1", "A2") if any(code in text for text in sent)) == ["A1", "A2"]
    status = invoke("status", "--json", "-c", project.config)
    [paused] = json.loads(status.stdout)["paused"]
    assert paused["campaign"] == "win_back"
    assert paused["reason"].startswith("coupon pool 'wb10' has no codes left")
    assert "paused win_back: coupon pool 'wb10' has no codes left" in flat(invoke("status", "-c", project.config).output)
    row = json.loads(invoke("campaigns", "--now", NOW_ARG, "--json", "-c", project.config).stdout)["campaigns"][0]
    assert row["state"] == "paused" and row["queued"] == 2
    pools = json.loads(invoke("coupons", "--json", "-c", project.config).stdout)["pools"]
    assert [(p["available"], p["assigned"], p["dry"]) for p in pools] == [(0, 2, True)]

    # More codes and a resume: the two waiting messages go, with the new codes.
    invoke("import", "coupons", project.write("d.csv", "code\nB1\nB2\n"), "--pool", "wb10", "-c", project.config)
    assert invoke("resume", "win_back", "--now", NOW_ARG, "-c", project.config).exit_code == 0
    assert invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config).exit_code == 0
    emails, texts = outbox_files(project)
    everything = "".join(path.read_text() for path in emails + texts)
    assert len(emails) + len(texts) == 4 and all(code in everything for code in ("A1", "A2", "B1", "B2"))


def test_import_coupon_redemptions_is_replay_safe(project, engine):
    with_coupon(project)
    seed_lapsed(engine)
    invoke("import", "coupons", project.write("c.csv", "code\nA1\nA2\nA3\nA4\n"), "--pool", "wb10",
           "-c", project.config)
    assert invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config).exit_code == 0
    redeemed = project.write("r.csv", """
        code,redeemed_at,order_id
        A1,2026-03-03T12:00:00+08:00,O-77
        NOPE,2026-03-03,
        """)

    first = invoke("import", "coupon-redemptions", redeemed, "-c", project.config)

    assert_no_crash(first)
    assert first.exit_code == 3, first.output
    assert "coupon redemptions: 1 imported, 0 duplicate(s), 1 rejected of 2 rows" in flat(first.output)
    assert f"{redeemed}:3: code: no such code in any pool" in flat(first.output)
    replay = invoke("import", "coupon-redemptions", redeemed, "--json", "-c", project.config)
    data = json.loads(replay.stdout)
    assert (data["imported"], data["unchanged"], data["rejected_count"]) == (0, 1, 1)
    pools = json.loads(invoke("coupons", "--json", "-c", project.config).stdout)["pools"]
    assert [(p["available"], p["assigned"], p["redeemed"]) for p in pools] == [(0, 3, 1)]


def test_check_renders_coupon_templates_with_a_sample_and_refuses_them_without_a_coupon(project):
    template = project.root / "templates" / "win_back" / "miss_you.txt.j2"
    template.write_text(template.read_text() + "Your code: {{ coupon.code }}\n")

    without = invoke("check", "-c", project.config)

    assert_no_crash(without)
    assert without.exit_code == 1, without.output
    assert "miss_you.txt.j2" in without.output and "coupon" in without.output

    with_coupon(project, 'coupon = { generate = "WB" }')
    checked = invoke("check", "-c", project.config)
    assert checked.exit_code == 0, checked.output
