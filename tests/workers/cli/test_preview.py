"""``nurture preview`` (workers/cli/preview.py) through the Typer app, on the throwaway
win_back project of tests/workers/cli/win_back.py: what a customer would get, sending and
writing nothing; and a clear message and exit code for every mistake."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from campaigns.store.models import Delivery, Enrollment
from tests.workers.cli.win_back import (
    NOW_ARG,
    assert_no_crash,
    flat,
    invoke,
    outbox_files,
    seed_lapsed,
)


def ledger_rows(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return (conn.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar_one()
                + conn.execute(sa.select(sa.func.count()).select_from(Enrollment)).scalar_one())


def test_preview_json_has_every_part_the_channel_and_the_sms_length(project, engine):
    seed_lapsed(engine)

    result = invoke("preview", "win_back", "--customer", "C00000", "--now", NOW_ARG, "-c", project.config, "--json")

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["verdict"], data["channel"], data["recipient"]) == ("send", "email", "p0@example.com")
    assert data["parts"]["subject"] == "We miss you, Test Person0"
    assert data["parts"]["txt"] == "Hi Test Person0, you ordered 1 time(s)."
    assert data["sms"] == {"text": "Test Person0: 15% off, code WELCOMEBACK", "encoding": "GSM-7", "units": 39,
                           "characters": 39, "segments": 1}
    assert ledger_rows(engine) == 0
    assert outbox_files(project) == ([], [])


def test_preview_table_shows_the_verdict_the_channels_and_the_parts(project, engine):
    seed_lapsed(engine)

    result = invoke("preview", "win_back", "--customer", "C00003", "--now", NOW_ARG, "-c", project.config)

    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "would send now on sms to +8613800000003" in out  # C00003 has no email
    assert "email email - no address" in out
    assert "sms phone +8613800000003 yes" in out
    assert "SMS: 39 characters (39 septets), GSM-7, 1 segment" in out
    assert "We miss you, Test Person3" in out


def test_preview_shows_a_local_now_in_utc_and_in_the_customers_time(project, engine):
    seed_lapsed(engine)

    result = invoke("preview", "win_back", "--customer", "C00000", "--now", "2026-03-02T10:05+08:00",
                    "-c", project.config)

    assert result.exit_code == 0, result.output
    assert "for customer C00000 at 2026-03-02 02:05 UTC (10:05 Asia/Shanghai, their time)" in flat(result.output)


def test_preview_says_why_a_customer_would_not_get_it(project, engine):
    seed_lapsed(engine)  # C00004 bought within 30 days: not lapsed

    result = invoke("preview", "win_back", "--customer", "C00004", "--now", NOW_ARG, "-c", project.config)

    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "would not send" in out
    assert "not_in_audience: the customer is not in the campaign's audience now" in out


def test_preview_writes_the_html_part_to_a_file(project, engine):
    seed_lapsed(engine)
    project.write("templates/win_back/miss_you.html.j2", "<h1>{{ customer.name }}</h1>")
    target = project.root / "preview.html"

    result = invoke("preview", "win_back", "--customer", "C00001", "--now", NOW_ARG, "-c", project.config,
                    "--html", target)

    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == "<h1>Test Person1</h1>"
    assert f"HTML part written to {target}" in flat(result.output)


def test_html_without_an_html_part_is_a_clear_error(project, engine):
    seed_lapsed(engine)

    result = invoke("preview", "win_back", "--customer", "C00001", "--now", NOW_ARG, "-c", project.config,
                    "--html", project.root / "x.html")

    assert_no_crash(result)
    assert result.exit_code == 1
    assert "template win_back/miss_you has no HTML part" in flat(result.output)
    assert not (project.root / "x.html").exists()


def test_a_template_that_fails_for_the_customer_exits_1_with_the_error(project, engine):
    seed_lapsed(engine)
    project.write("templates/win_back/miss_you.txt.j2", "{{ customer.attributes.n.nope() }}")

    result = invoke("preview", "win_back", "--customer", "C00001", "--now", NOW_ARG, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 1
    assert "would fail: render failed: win_back/miss_you.txt.j2" in flat(result.output)


@pytest.mark.parametrize(("args", "code", "message"), [
    (["nope", "--customer", "C00000"], 1, "no campaign named 'nope' (campaigns: win_back)"),
    (["win_back", "--customer", "ghost"], 1, "no customer with customer_id 'ghost'"),
    (["win_back", "--customer", "C00000", "--step", "3"], 1,
     "campaign 'win_back' has 1 step(s), numbered 0 to 0: no step 3"),
    (["win_back", "--customer", "C00000", "--variant", "1"], 1, "step 0 of 'win_back' has no A/B variants"),
    (["win_back", "--customer", "C00000", "--now", "yesterday"], 2, "is not an ISO 8601 time"),
    (["win_back"], 2, "Missing option '--customer'"),
])
def test_mistakes_are_clear_errors_with_an_exit_code(project, engine, args, code, message):
    seed_lapsed(engine)

    result = invoke("preview", *args, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == code, result.output
    assert message in flat(result.output)


CHANNELS_THAT_BUILD_THEIR_BODY = """
[channels.hook]
kind = "webhook"
url = "http://127.0.0.1:9/none"

[channels.twilio]
kind = "twilio"
account_sid_env = "NURTURE_TEST_TWILIO_SID"
auth_token_env = "NURTURE_TEST_TWILIO_TOKEN"
from = "+15005550006"
marketing_prefix = "Shop: "

[[campaigns]]
name = "ping"
trigger = { manual = true }
channels = ["hook"]
  [[campaigns.steps]]
  template = "win_back/miss_you"

[[campaigns]]
name = "texts"
trigger = { manual = true }
channels = ["twilio"]
  [[campaigns.steps]]
  template = "win_back/miss_you"
"""


def test_preview_shows_what_webhook_and_twilio_channels_make_of_the_parts(project, engine):
    seed_lapsed(engine)
    project.config.write_text(project.config.read_text() + CHANNELS_THAT_BUILD_THEIR_BODY)

    hook = invoke("preview", "ping", "--customer", "C00001", "--now", NOW_ARG, "-c", project.config, "--json")
    texts = invoke("preview", "texts", "--customer", "C00001", "--now", NOW_ARG, "-c", project.config)

    assert hook.exit_code == 0, hook.output
    assert json.loads(hook.stdout)["as_sent"] == {"kind": "webhook", "body": {
        "recipient": "C00001", "customer_id": "C00001", "campaign": "ping", "step": 0,
        "subject": "We miss you, Test Person1", "txt": "Hi Test Person1, you ordered 1 time(s).",
        "sms": "Test Person1: 15% off, code WELCOMEBACK"}}
    assert texts.exit_code == 0, texts.output
    out = flat(texts.output)
    # The brand prefix and the opt-out line Twilio adds to marketing count in its length.
    assert "as twilio sends it (Twilio): 67 characters (67 septets), GSM-7, 1 segment" in out
    assert "Shop: Test Person1: 15% off, code WELCOMEBACK Reply STOP to opt out" in out


def test_preview_is_listed_in_help():
    result = invoke("--help")

    assert "preview" in flat(result.output)


def test_preview_wraps_a_long_line_instead_of_cropping_it(project, engine):
    # The console soft-wraps (tables print at their natural width), which cropped a part's
    # long line at the panel's edge: the demo's HTML lost its discount code.
    seed_lapsed(engine)
    template = project.config.parent / "templates" / "win_back" / "miss_you.txt.j2"
    words = " ".join(f"word{n}" for n in range(60))
    template.write_text(words + " END-OF-LINE\n")

    result = invoke("preview", "win_back", "--customer", "C00000", "--now", NOW_ARG, "-c", project.config)

    assert result.exit_code == 0, result.output
    assert f"{words} END-OF-LINE" in flat(result.output)


def test_preview_lists_the_recommended_products_the_message_shows(project, engine):
    from campaigns.store.models import Customer, Product, Recommendation
    from tests.conftest import TICK_NOW

    seed_lapsed(engine)
    project.write("templates/win_back/miss_you.txt.j2",
                  "{% for p in recommendations(2) %}{{ p.name }} {{ p.url }}\n{% endfor %}")
    with engine.begin() as conn:
        customer = conn.execute(sa.select(Customer.id).where(Customer.external_id == "C00000")).scalar_one()
        conn.execute(sa.insert(Product.__table__), [
            {"sku": sku, "name": f"Tea {sku}", "category": "tea", "price": 10, "url": f"https://shop.example/{sku}",
             "in_stock": sku != "T2", "attributes": {}, "created_at": TICK_NOW, "updated_at": TICK_NOW}
            for sku in ("T1", "T2", "T3")])
        conn.execute(sa.insert(Recommendation.__table__), [
            {"customer_id": customer, "rank": rank, "sku": sku, "category": "tea", "score": 1.0,
             "reason": "popular", "computed_at": TICK_NOW} for rank, sku in enumerate(("T1", "T2", "T3"), start=1)])

    result = invoke("preview", "win_back", "--customer", "C00000", "--now", NOW_ARG, "-c", project.config)

    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "recommended products shown (recorded when sent)" in out
    assert "1 T1 tea popular" in out and "2 T3 tea popular" in out and "T2" not in out  # T2 is out of stock
    assert "Tea T1 https://shop.example/T1" in out
    data = json.loads(invoke("preview", "win_back", "--customer", "C00000", "--now", NOW_ARG, "-c", project.config,
                             "--json").stdout)
    assert [p["sku"] for p in data["recommendations"]] == ["T1", "T3"]
