"""Commands that act on one customer take any identifier (issue #15), on SQLite and
PostgreSQL: after `nurture customer merge`, `nurture consent`, `preview --customer`,
`test-send --customer` and `forget` by the merged record's id, a phone or an email reach
the survivor, read by the configured [identity] rules; a bare value naming two customers
is refused as ambiguous and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.store.models import Consent, Customer, CustomerIdentifier, Event
from tests.workers.cli.win_back import Project, assert_no_crash, invoke

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
NOW = "2026-11-24T10:00:00+08:00"


@pytest.fixture(params=["sqlite", "postgresql"])
def project(request: pytest.FixtureRequest, make_project: Callable[..., Project]) -> Project:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    made = make_project(url)
    # This installation keeps dots in Gmail addresses: only the configured rules find Ann's.
    made.config.write_text(made.config.read_text() + "\n[identity]\nemail_dotless_domains = []\n")
    return made


@pytest.fixture
def merged(project: Project, engine: sa.Engine) -> dict[str, int]:
    """store-ann (earlier, a phone) with shop-ann (a dotted Gmail address) merged into it;
    "13800138000", a customer whose id is store-ann's phone."""
    with engine.begin() as conn:
        conn.execute(sa.insert(Customer.__table__), [
            {"external_id": name, "name": full, "email": email, "created_at": T0 + timedelta(days=day),
             "updated_at": T0, "attributes": {}}
            for name, full, email, day in (("shop-ann", "Ann", "ann.lee@gmail.com", 5),
                                           ("store-ann", None, None, 1), ("13800138000", "Bob", None, 2))])
        ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
        conn.execute(sa.insert(CustomerIdentifier.__table__), [
            {"customer_id": ids[owner], "kind": kind, "value": value, "source": None, "verified": False,
             "first_seen_at": T0, "last_seen_at": T0}
            for owner, kind, value in (("store-ann", "id", "store-ann"), ("store-ann", "phone", "+8613800138000"),
                                       ("shop-ann", "id", "shop-ann"), ("shop-ann", "email", "ann.lee@gmail.com"),
                                       ("13800138000", "id", "13800138000"))])
    result = invoke("customer", "merge", "shop-ann", "store-ann", "--yes", "--now", NOW, "-c", project.config)
    assert result.exit_code == 0, result.output
    return ids


def consents(engine: sa.Engine) -> set[tuple[int, str, str]]:
    with engine.connect() as conn:
        return {tuple(row) for row in conn.execute(sa.select(Consent.customer_id, Consent.channel, Consent.status))}


def test_consent_by_the_merged_records_id_phone_or_email_reaches_the_survivor(project, engine, merged):
    survivor = merged["store-ann"]
    for reference, family, flag in (("shop-ann", "email", "--grant"), ("phone:+86 138 0013 8000", "sms", "--grant"),
                                    ("email:Ann.Lee@gmail.com", "wechat", "--withdraw")):
        result = invoke("consent", reference, "--channel", family, flag, "-c", project.config)
        assert result.exit_code == 0, result.output
        assert f"{reference}: {family} consent" in result.output
    assert consents(engine) == {(survivor, "email", "granted"), (survivor, "sms", "granted"),
                                (survivor, "wechat", "withdrawn")}


def test_consent_by_an_ambiguous_or_unknown_reference_changes_nothing(project, engine, merged):
    ambiguous = invoke("consent", "13800138000", "--channel", "email", "--grant", "-c", project.config)
    assert_no_crash(ambiguous)
    assert ambiguous.exit_code == 1
    assert ("customer '13800138000' is ambiguous: it matches 2 customers (id:13800138000, "
            "phone:+8613800138000)") in " ".join(ambiguous.output.split())
    unknown = invoke("consent", "phone:+8613900000000", "--channel", "email", "--grant", "-c", project.config)
    assert_no_crash(unknown)
    assert unknown.exit_code == 1
    assert "customer 'phone:+8613900000000' not found" in unknown.output
    assert consents(engine) == set()
    # Written out, either is one customer.
    assert invoke("consent", "id:13800138000", "--channel", "email", "--grant", "-c", project.config).exit_code == 0
    assert consents(engine) == {(merged["13800138000"], "email", "granted")}


def test_preview_and_test_send_find_the_survivor_by_any_identifier(project, engine, merged):
    preview = invoke("preview", "win_back", "--customer", "email:Ann.Lee@gmail.com", "--now", NOW, "--json",
                     "-c", project.config)
    assert preview.exit_code == 0, preview.output
    assert json.loads(preview.output)["customer"] == "store-ann"
    sent = invoke("test-send", "win_back", "--to", "me@example.com", "--channel", "email", "--customer", "shop-ann",
                  "--now", NOW, "--json", "-c", project.config)
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.output)["customer"] == "store-ann"
    ambiguous = invoke("preview", "win_back", "--customer", "13800138000", "-c", project.config)
    assert_no_crash(ambiguous)
    assert ambiguous.exit_code == 1 and "is ambiguous" in ambiguous.output


def test_forget_by_the_merged_records_id_erases_the_survivor(project, engine, merged, monkeypatch):
    monkeypatch.setenv("NURTURE_SECRET", "installation-secret-for-tests")
    ambiguous = invoke("forget", "13800138000", "--yes", "-c", project.config)
    assert_no_crash(ambiguous)
    assert ambiguous.exit_code == 1 and "is ambiguous" in ambiguous.output
    result = invoke("forget", "shop-ann", "--yes", "-c", project.config)
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        names = dict(conn.execute(sa.select(Customer.id, Customer.name)).all())
        held = conn.execute(sa.select(sa.func.count()).select_from(CustomerIdentifier)
                            .where(CustomerIdentifier.customer_id == merged["store-ann"])).scalar_one()
    assert names == {merged["store-ann"]: None, merged["13800138000"]: "Bob"}  # Ann's name came with the merge
    assert held == 0


def test_track_and_forget_read_references_by_the_configured_rules(project, engine, merged, monkeypatch):
    # This installation keeps Gmail's dots (email_dotless_domains = []): with the default
    # rules "email:Ann.Lee@gmail.com" would be read as annlee@gmail.com and found nobody.
    tracked = invoke("track", "email:Ann.Lee@gmail.com", "visit", "--event-id", "v-1", "--json", "-c", project.config)
    assert tracked.exit_code == 0, tracked.output
    assert json.loads(tracked.output)["status"] == "accepted"
    with engine.connect() as conn:
        events = conn.execute(sa.select(Event.customer_id, Event.name)).all()
    assert events == [(merged["store-ann"], "visit")]
    monkeypatch.setenv("NURTURE_SECRET", "installation-secret-for-tests")
    result = invoke("forget", "email:Ann.Lee@gmail.com", "--yes", "-c", project.config)
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(Customer.name).where(Customer.id == merged["store-ann"])).scalar() is None
