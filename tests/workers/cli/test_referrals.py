"""The referral commands through the Typer app, on a throwaway project with ``[loyalty]``
on: ``nurture referrals code`` and ``issue``, a sign-up imported with a code, the reward at
the referee's first order, and ``nurture report referrals``. Every command runs with
``--now``."""

from __future__ import annotations

import json

import pytest

from tests.workers.cli.win_back import Project, assert_no_crash, flat, invoke

CUSTOMERS = """
customer_id,name,email,acquisition_channel
ann,Ann,ann@example.com,store
bob,Bob,bob@example.com,ecommerce
cat,Cat,cat@example.com,ecommerce
"""
NOW = "2026-03-02T00:00:00+00:00"


@pytest.fixture
def shop(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    """ann, bob and cat, referrals on with a link, the installation secret set."""
    monkeypatch.setenv("NURTURE_SECRET", "a test installation secret")
    with project.config.open("a", encoding="utf-8") as config:
        config.write('\n[loyalty]\nenabled = true\n\n[loyalty.referrals]\nlink = "https://shop.example/r/{code}"\n')
    result = invoke("import", "customers", project.write("customers.csv", CUSTOMERS), "-c", project.config)
    assert result.exit_code == 0, result.output
    return project


def test_a_code_a_signup_a_first_order_and_the_report(shop):
    first = invoke("referrals", "code", "ann", "-c", shop.config, "--now", NOW, "--json")
    assert first.exit_code == 0, first.output
    data = json.loads(first.output)
    code = data["code"]
    assert data["link"] == f"https://shop.example/r/{code}"
    assert data["referred_by"] is None and data["referrals"]["pending"] == 0
    # Shown again: the same code.
    assert json.loads(invoke("referrals", "code", "ann", "-c", shop.config, "--json").output)["code"] == code

    events = shop.write("events.csv", f"""
event_id,customer_id,name,occurred_at,referral_code,channel
e1,bob,signup,2026-03-02T10:00:00+08:00,{code.lower()},wechat
e2,cat,signup,2026-03-02T11:00:00+08:00,{code[:-1]}{'2' if code[-1] != '2' else '3'},
""")
    result = invoke("import", "events", events, "-c", shop.config, "--now", NOW)
    assert result.exit_code == 0, result.output
    orders = shop.write("orders.csv", "order_id,customer_id,ordered_at,amount\nO-1,bob,2026-03-03T10:00:00+08:00,50\n")
    result = invoke("import", "orders", orders, "-c", shop.config, "--now", "2026-03-04T00:00:00+00:00")
    assert result.exit_code == 0, result.output

    shown = invoke("referrals", "code", "bob", "-c", shop.config, "--json")
    assert json.loads(shown.output)["referred_by"]["customer_id"] == "ann"
    ann = json.loads(invoke("referrals", "code", "ann", "-c", shop.config, "--json").output)
    assert ann["referrals"]["rewarded"] == 1 and ann["points"] == 100

    report = invoke("report", "referrals", "-c", shop.config, "--json")
    assert report.exit_code == 0, report.output
    total = json.loads(report.output)["total"]
    assert (total["signups"], total["rewarded"], total["refused"], total["points_granted"]) == (2, 1, 1, 100)
    assert total["refused_by"] == {"mistyped_code": 1}
    table = flat(invoke("report", "referrals", "-c", shop.config, "--since", "2026-03-01").output)
    assert "wechat" in table and "mistyped_code 1" in table and "1 advocate(s)" in table

    issued = invoke("referrals", "issue", "-c", shop.config, "--now", NOW, "--json")
    assert json.loads(issued.output) == {"issued": 1}  # cat's: ann's and bob's were shown above


def test_mistakes_end_in_a_message(shop, monkeypatch):
    unknown = invoke("referrals", "code", "nobody", "-c", shop.config)
    assert_no_crash(unknown)
    assert unknown.exit_code != 0
    monkeypatch.delenv("NURTURE_SECRET")
    missing = invoke("referrals", "code", "ann", "-c", shop.config)
    assert_no_crash(missing)
    assert missing.exit_code != 0 and "NURTURE_SECRET" in flat(missing.output)


def test_referrals_off_says_which_key_turns_them_on(project):
    result = invoke("referrals", "code", "ann", "-c", project.config)
    assert_no_crash(result)
    assert result.exit_code == 1 and "[loyalty]" in result.output


def test_the_customer_view_shows_the_code_and_the_referrals(shop):
    code = json.loads(invoke("referrals", "code", "ann", "-c", shop.config, "--now", NOW, "--json").output)["code"]
    events = shop.write("events.csv", f"event_id,customer_id,name,occurred_at,referral_code\n"
                                      f"e1,bob,signup,2026-03-02T10:00:00+08:00,{code}\n")
    assert invoke("import", "events", events, "-c", shop.config, "--now", NOW).exit_code == 0
    view = json.loads(invoke("customer", "ann", "-c", shop.config, "--json").output)
    assert view["referrals"]["code"] == code and view["referrals"]["referrals"]["pending"] == 1
    shown = flat(invoke("customer", "bob", "-c", shop.config).output)
    assert "referred by ann (pending" in shown and "not issued yet" in shown
