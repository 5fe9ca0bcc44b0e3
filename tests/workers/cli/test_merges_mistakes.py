"""``nurture customer merge | merges`` mistakes (issue #15): an empty ``--reason`` is refused
before anything is read or asked, and a customer not found points at the help page that
lists the identifier forms (the merges themselves: test_merges.py)."""

from __future__ import annotations

import pytest

from tests.workers.cli.test_merges import merge_rows, seed
from tests.workers.cli.win_back import assert_no_crash, flat, invoke


@pytest.mark.parametrize("reason", ["", "   "], ids=["empty", "blank"])
def test_merge_refuses_an_empty_reason_in_one_line(project, engine, reason):
    seed(engine)

    result = invoke("customer", "merge", "store-ann", "shop-ann", "--yes", "--reason", reason, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: --reason is empty")
    assert merge_rows(engine) == []


def test_merge_stores_the_reason_trimmed(project, engine):
    ids = seed(engine)

    result = invoke("customer", "merge", "store-ann", "shop-ann", "--yes", "--reason", "  same phone ", "--by", "ana",
                    "-c", project.config)

    assert result.exit_code == 0, result.output
    assert merge_rows(engine) == [(ids["store-ann"], ids["shop-ann"], "same phone", "ana", None)]


@pytest.mark.parametrize("args", [("merge", "nobody", "bob", "--yes"), ("merges", "nobody")], ids=["merge", "merges"])
def test_customer_not_found_points_at_the_page_listing_identifier_forms(project, engine, args):
    seed(engine)

    result = invoke("customer", *args, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 1
    assert "customer 'nobody' not found (the identifier forms: `nurture customer show --help`)" in result.stderr
    # ... and that page does list them
    page = flat(invoke("customer", "show", "--help").output)
    assert "phone:+8613800138000" in page and "email:a@b.cn" in page and "unionid:" in page
