"""``nurture customer ID`` shows the customer's events and enrolments (campaign, state, holdout,
A/B variant, entered and exited), in the tables and in --json (issue #14), after a real
scheduler tick of this folder's win_back project with a holdout and an A/B step."""

from __future__ import annotations

import json
from datetime import UTC

import sqlalchemy as sa

from campaigns.reports.customers import customer_view
from campaigns.store.models import Customer, Enrollment
from tests.conftest import TICK_NOW, seed_customers
from tests.workers.cli.shop import round_trip, table_rows
from tests.workers.cli.win_back import NOW_ARG, assert_no_crash, flat, invoke


def dated_rows(output: str, title: str, end: str) -> list[tuple[str, list[str]]]:
    """The rows of the table titled ``title`` (up to the title ``end``), without its header."""
    return [(first, cells) for first, cells in table_rows(output, title, end).items() if first[:1].isdigit()]


def with_holdout_and_variants(project) -> None:
    """win_back holds out half its audience and tests two subject lines at step 0."""
    templates = project.root / "templates" / "win_back"
    (templates / "miss_you_b.subject.j2").write_text("Come back, {{ customer.name }}\n")
    (templates / "miss_you_b.txt.j2").write_text("Hi {{ customer.name }}, 20% off this week.\n")
    (templates / "miss_you_b.sms.j2").write_text("{{ customer.name }}: 20% off this week\n")
    text = project.config.read_text()
    text = text.replace('  [[campaigns.steps]]\n  template = "win_back/miss_you"\n',
                        '  [[campaigns.steps]]\n'
                        '    [[campaigns.steps.variants]]\n    template = "win_back/miss_you"\n'
                        '    [[campaigns.steps.variants]]\n    template = "win_back/miss_you_b"\n')
    text = text.replace('channels = ["email", "sms"]\n', 'channels = ["email", "sms"]\nholdout = 0.5\n', 1)
    assert "variants" in text and "holdout = 0.5" in text
    project.config.write_text(text)


def test_customer_shows_events_and_enrolments_with_holdout_and_variant(project, engine):
    with_holdout_and_variants(project)
    # 20 lapsed customers: a 50 % holdout leaves both groups non-empty but once in 2^19.
    lapsed = seed_customers(engine, count=20, now=TICK_NOW, lapsed_share=1.0)["lapsed"]
    tracked = invoke("track", lapsed[0], "page_view", "--event-id", "pv-1", "--property", "page=/tea",
                     "--at", NOW_ARG, "-c", project.config)
    assert tracked.exit_code == 0, tracked.output
    tick = invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config)
    assert tick.exit_code == 0, tick.output
    with engine.connect() as conn:
        enrolled = {external_id: bool(holdout) for external_id, holdout in conn.execute(
            sa.select(Customer.external_id, Enrollment.holdout).join(Customer, Customer.id == Enrollment.customer_id))}
    assert sorted(enrolled) == lapsed
    # Which customers the hash holds out is its business; both groups must be shown right.
    held, treated = ([c for c in lapsed if enrolled[c] is flag] for flag in (True, False))
    assert held and treated, enrolled

    for external_id in (held[0], treated[0]):
        result = invoke("customer", external_id, "-c", project.config)
        assert_no_crash(result)
        assert result.exit_code == 0, result.output
        [(enrolled_at, row)] = dated_rows(result.output, "enrolments:", "deliveries:")
        # The run's slot, 10:00 Shanghai (the tick came at 10:05).
        assert enrolled_at == f"{TICK_NOW.astimezone(UTC).replace(minute=0):%Y-%m-%d %H:%M}"
        campaign, occurrence, state, holdout, variants, exited = row
        assert (campaign, occurrence) == ("win_back", "once")
        with engine.connect() as conn:
            stored_state, exited_at = conn.execute(
                sa.select(Enrollment.state, Enrollment.exited_at).join(Customer, Customer.id == Enrollment.customer_id)
                .where(Customer.external_id == external_id)).one()
        assert (state, exited) == (stored_state, f"{exited_at:%Y-%m-%d %H:%M}" if exited_at else "-")
        if enrolled[external_id]:
            assert (state, holdout, variants) == ("held_out", "yes", "-")
        else:
            assert (state, holdout) == ("completed", "no")  # its one step was sent
            assert variants in ("step 0: A", "step 0: B")

        data = json.loads(invoke("customer", external_id, "-c", project.config, "--json").stdout)
        # seed_customers writes no identifiers (a row from before issue #15) and no merge formed it.
        assert data == round_trip(customer_view(engine, external_id) | {"identifiers": [], "merges": []})
        [enrolment] = data["enrollments"]
        assert enrolment["holdout"] is enrolled[external_id] and data["enrollments_total"] == 1
        if not enrolled[external_id]:
            [variant] = enrolment["variants"]
            assert variant["step"] == 0
            assert variant["template"] == ["win_back/miss_you", "win_back/miss_you_b"][variant["variant"]]
            assert variants == f"step 0: {'AB'[variant['variant']]}"

    first = invoke("customer", lapsed[0], "-c", project.config)
    assert "events: 1" in first.output
    assert dated_rows(first.output, "events:", "enrolments:") == [
        (f"{TICK_NOW.astimezone(UTC):%Y-%m-%d %H:%M}", ["page_view", "page=/tea"])]
    seed_customers(engine, count=1, now=TICK_NOW, prefix="Q")
    quiet = invoke("customer", "Q00000", "-c", project.config)
    assert "enrolments" not in flat(quiet.output) and "events:" not in quiet.output
