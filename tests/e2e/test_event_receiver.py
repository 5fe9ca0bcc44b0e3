"""Event campaigns end to end: POST /events on a real uvicorn server (and `nurture track`)
record events, the handle_events actor plans and enqueues, in-process workers send."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from campaigns.project.loading import load_config
from campaigns.store.models import Customer, Delivery, Event, utcnow
from tests.conftest import ServerThread, grant_consent
from workers.cli.main import app as cli_app
from workers.http.app import create_app
from workers.jobs.inprocess import InProcessWorkers
from workers.jobs.runtime import Runtime

KEY = "test-key-123"


def write_project(tmp_path: Path, database_url: str) -> Path:
    (tmp_path / "templates" / "welcome").mkdir(parents=True, exist_ok=True)
    (tmp_path / "templates" / "welcome" / "hello.subject.j2").write_text("Welcome!")
    (tmp_path / "templates" / "welcome" / "hello.txt.j2").write_text("Hi {{ customer.external_id }}")
    (tmp_path / "templates" / "welcome" / "tips.txt.j2").write_text("Tips for {{ customer.external_id }}")
    path = tmp_path / "config.toml"
    path.write_text(f"""
[database]
url = "{database_url}"
[profiles]
cron = ""
[api]
key_env = "NURTURE_TEST_API_KEY"
# A real server on the wall clock: quiet hours (tested on their own in tests/campaigns/sending/test_policy.py)
# would make the outcome depend on the hour the suite runs.
[compliance]
quiet_hours = ""
[channels.mail]
kind = "outbox"
dir = "out"
[[campaigns]]
name = "welcome"
trigger = {{ event = "signup" }}
channels = ["mail"]
[[campaigns.steps]]
template = "welcome/hello"
[[campaigns.steps]]
template = "welcome/tips"
delay = "2d"
""")
    return path


def add_customers(engine, *external_ids: str) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(sa.insert(Customer.__table__), [
            {"external_id": e, "email": f"{e}@example.com", "created_at": now, "updated_at": now, "attributes": {}}
            for e in external_ids])
    grant_consent(engine, now=now, external_ids=list(external_ids))


def outbox(tmp_path: Path) -> list[str]:
    folder = tmp_path / "out" / "welcome"
    return sorted(p.name for p in folder.glob("*.eml")) if folder.exists() else []


@pytest.fixture
def runtime(tmp_path, sqlite_url) -> Iterator[Runtime]:
    rt = Runtime.from_config(load_config(write_project(tmp_path, sqlite_url)))
    yield rt
    rt.close()


@pytest.fixture
def served(runtime, monkeypatch) -> Iterator[tuple[str, InProcessWorkers]]:
    monkeypatch.setenv("NURTURE_TEST_API_KEY", KEY)
    workers = InProcessWorkers(runtime=runtime)
    with workers.running(), ServerThread(create_app(runtime, broker=workers.broker)) as url:
        yield url, workers


def post(url: str, body, key: str | None = KEY) -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    with httpx.Client(base_url=url) as client:
        if isinstance(body, bytes):
            return client.post("/events", content=body, headers=headers)
        return client.post("/events", json=body, headers=headers)


def test_signup_batch_sends_one_welcome_per_new_customer_and_a_repost_sends_nothing(served, runtime, tmp_path):
    url, workers = served
    add_customers(runtime.engine, "ann", "bob", "cat")
    batch = {"events": [
        {"event_id": f"signup-{name}", "customer_id": name, "name": "signup", "properties": {"plan": "free"}}
        for name in ("ann", "bob", "cat")
    ] + [{"event_id": "view-ann", "customer_id": "ann", "name": "page_view"},
         {"event_id": "signup-ghost", "customer_id": "ghost", "name": "signup"}]}
    with httpx.Client(base_url=url) as client:
        assert client.get("/health").status_code == 200
    answer = post(url, batch)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (4, 0, 1)
    assert "customer_id 'ghost' not found" in body["events"][4]["reason"]
    workers.join()
    # Named after the customers' own ids, not the internal row ids (issue #14).
    assert outbox(tmp_path) == sorted(f"welcome_0_{n}_once.eml" for n in ("ann", "bob", "cat"))
    # The later step waits for its due time (two days), for the scheduler.
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Delivery)
                            .where(Delivery.step == 1, Delivery.status == "queued")).scalar_one() == 3

    again = post(url, batch)
    assert again.status_code == 202
    assert [e["status"] for e in again.json()["events"]] == ["duplicate"] * 4 + ["rejected"]
    workers.join()
    assert len(outbox(tmp_path)) == 3
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Event)).scalar_one() == 4
        assert conn.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar_one() == 6


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"{not json", 400, "invalid JSON"),
    (b'["a"]', 400, '{"events": [...]}'),
    (b'{"events": {}}', 400, "expected a JSON array"),
    (b'{"events": []}', 400, "empty"),
])
def test_bad_bodies_are_400_with_the_reason(served, body, status, message):
    url, _ = served
    answer = post(url, body)
    assert answer.status_code == status
    assert message in answer.json()["error"]


def test_more_than_1000_events_is_413(served):
    url, _ = served
    answer = post(url, {"events": [{"customer_id": "x", "name": "signup"}] * 1001})
    assert answer.status_code == 413
    assert "at most 1000" in answer.json()["error"]


@pytest.mark.parametrize("key", [None, "wrong", KEY[:-1]])
def test_missing_or_wrong_key_is_401(served, key):
    url, _ = served
    answer = post(url, {"events": [{"customer_id": "x", "name": "signup"}]}, key=key)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"


def test_without_a_configured_key_the_endpoint_refuses_with_503(runtime, monkeypatch):
    monkeypatch.delenv("NURTURE_TEST_API_KEY", raising=False)
    workers = InProcessWorkers(runtime=runtime)
    with workers.running(), ServerThread(create_app(runtime, broker=workers.broker)) as url:
        answer = post(url, {"events": [{"customer_id": "x", "name": "signup"}]})
        with httpx.Client(base_url=url) as client:
            assert client.get("/health").status_code == 200
    assert answer.status_code == 503
    assert "NURTURE_TEST_API_KEY" in answer.json()["error"]


def test_nurture_track_sends_before_the_command_exits(tmp_path, sqlite_url):
    config = write_project(tmp_path, sqlite_url)
    from campaigns.store.db import make_engine

    engine = make_engine(sqlite_url)
    add_customers(engine, "ann")
    engine.dispose()
    runner = CliRunner()
    args = ["track", "ann", "signup", "-c", str(config), "--event-id", "s-1", "--property", "plan=pro",
            "--property", "seats=3"]
    result = runner.invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    assert "accepted signup for ann" in result.output
    assert "1 sent, 0 deferred, 0 skipped, 0 failed" in result.output
    assert outbox(tmp_path) == ["welcome_0_ann_once.eml"]
    repeat = runner.invoke(cli_app, args)
    assert repeat.exit_code == 0
    assert "duplicate" in repeat.output
    assert outbox(tmp_path) == ["welcome_0_ann_once.eml"]
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(Event.properties)).scalar_one() == {"plan": "pro", "seats": 3}
    engine.dispose()
    unknown = runner.invoke(cli_app, ["track", "ghost", "signup", "-c", str(config)])
    assert unknown.exit_code == 3
    assert "customer_id 'ghost' not found" in unknown.output
    bad = runner.invoke(cli_app, ["track", "ann", "signup", "-c", str(config), "--property", "oops"])
    assert bad.exit_code == 2


# --------------------------------------------------------------------------- hostile input
# A body the parser cannot take is a 400 naming the problem; an event holding a value that
# cannot be stored is rejected by index and the others are stored (a 422 when no event is
# left). Never a 500.

HOSTILE_EVENTS = [
    '{"event_id": "ok-1", "customer_id": "ann", "name": "visit"}',
    '{"event_id": "nan", "customer_id": "ann", "name": "visit", "properties": {"x": NaN}}',
    '{"event_id": "inf", "customer_id": "ann", "name": "visit", "score": Infinity}',
    '{"event_id": "digits", "customer_id": "ann", "name": "visit", "properties": {"n": ' + "9" * 5000 + "}}",
    '{"event_id": "year1", "customer_id": "ann", "name": "visit", "occurred_at": "0001-01-01T00:00:00+08:00"}',
    '{"event_id": "surrogate", "customer_id": "ann", "name": "visit\\ud800"}',
    '{"event_id": "nul", "customer_id": "ann", "name": "vis\\u0000it"}',
    '{"event_id": "deep", "customer_id": "ann", "name": "visit", "properties": {"d": ' + "[" * 40 + "]" * 40 + "}}",
    '{"event_id": "ok-2", "customer_id": "ann", "name": "visit", "properties": {"n": 9223372036854775807}}',
]
HOSTILE_FIELDS = {1: "properties.x", 2: "score", 3: "properties.n", 4: "occurred_at", 5: "name", 6: "name",
                  7: "properties.d"}


def hostile_body() -> bytes:
    return ('{"events": [' + ", ".join(HOSTILE_EVENTS) + "]}").encode("utf-8")


def assert_hostile_answer(answer: httpx.Response, engine) -> None:  # type: ignore[no-untyped-def]
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (2, 7)
    rejected = {e["index"]: e["reason"] for e in body["events"] if e["status"] == "rejected"}
    assert sorted(rejected) == sorted(HOSTILE_FIELDS)
    for index, field in HOSTILE_FIELDS.items():
        assert rejected[index].startswith(f"{field}:"), (index, rejected[index])
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.select(Event.dedupe_key)).scalars()) == ["ok-1", "ok-2"]


def test_unstorable_values_in_events_are_rejected_by_index_and_the_rest_stored(served, runtime):
    url, workers = served
    add_customers(runtime.engine, "ann")

    answer = post(url, hostile_body())

    assert_hostile_answer(answer, runtime.engine)
    workers.join()


@pytest.mark.parametrize("index", sorted(HOSTILE_FIELDS))
def test_a_request_whose_every_event_is_unstorable_is_a_422_naming_the_field(served, runtime, index):
    url, workers = served
    add_customers(runtime.engine, "ann")

    # When the request holds nothing but one hostile event
    answer = post(url, ('{"events": [' + HOSTILE_EVENTS[index] + "]}").encode("utf-8"))
    workers.join()

    # Then it is refused as a whole, with the field named, and nothing is stored
    assert answer.status_code == 422, answer.text
    (event,) = answer.json()["events"]
    assert event["status"] == "rejected" and event["reason"].startswith(f"{HOSTILE_FIELDS[index]}:"), event
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Event)).scalar_one() == 0


@pytest.mark.parametrize(("body", "message"), [
    (b'{"events": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper than 32"),
    (b'{"events": ' + b"1" * 5000 + b"}", "events: expected a JSON array"),
    (b'{"events": NaN}', "events: expected a JSON array"),
    (b'\xff\xfe{"events": []}', "invalid JSON"),
])
def test_bodies_the_parser_cannot_take_are_400_naming_the_problem(served, body, message):
    url, _ = served
    answer = post(url, body)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]


@pytest.fixture
def pg_runtime(tmp_path, postgres_url) -> Iterator[Runtime]:
    rt = Runtime.from_config(load_config(write_project(tmp_path, postgres_url)))
    yield rt
    rt.close()


def test_on_postgres_one_bad_event_does_not_lose_the_others(pg_runtime, monkeypatch):
    monkeypatch.setenv("NURTURE_TEST_API_KEY", KEY)
    add_customers(pg_runtime.engine, "ann")
    workers = InProcessWorkers(runtime=pg_runtime)
    with workers.running(), ServerThread(create_app(pg_runtime, broker=workers.broker)) as url:
        answer = post(url, hostile_body())
        workers.join()
    assert_hostile_answer(answer, pg_runtime.engine)


def test_on_postgres_an_event_the_database_refuses_is_rejected_alone(pg_runtime, monkeypatch):
    """Validation bypassed: PostgreSQL itself refuses the NUL; the others are still stored."""
    from campaigns.customers.events import record_events
    from campaigns.customers.importing import rows as importing_rows

    monkeypatch.setattr(importing_rows, "check_row", lambda row: None)
    add_customers(pg_runtime.engine, "ann")
    events = [{"event_id": f"e{i}", "customer_id": "ann", "name": "visit"} for i in range(5)]
    events[2]["name"] = "vis\x00it"

    result = record_events(pg_runtime.engine, events)

    assert [s.status for s in result.statuses] == ["accepted", "accepted", "rejected", "accepted", "accepted"]
    assert result.statuses[2].reason == "the database refused this event (DataError)"
    assert len(result.accepted_ids) == 4


# --------------------------------------------------------------------------- any identifier
# An event names its customer by any identifier (issue #15): after a merge, the merged
# record's id, phone and email reach the survivor, read by the configured [identity] rules.

@pytest.fixture(params=["sqlite", "postgresql"])
def merged_project(request, tmp_path) -> Iterator[tuple[Path, sa.Engine]]:
    """The welcome project keeping dots in Gmail addresses, with S1 (phone) and W1 (a
    dotted Gmail address, another email) merged into S1."""
    from campaigns.customers.identity.merging import merge_customers
    from campaigns.store.db import make_engine
    from campaigns.store.models import CustomerIdentifier

    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    config = write_project(tmp_path, url)
    config.write_text(config.read_text() + "[identity]\nemail_dotless_domains = []\n")
    engine = make_engine(url)
    add_customers(engine, "S1", "W1")
    now = utcnow()
    with engine.begin() as conn:
        ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
        conn.execute(sa.update(Customer).where(Customer.external_id == "S1").values(created_at=now.replace(year=2020)))
        conn.execute(sa.insert(CustomerIdentifier.__table__), [
            {"customer_id": ids[owner], "kind": kind, "value": value, "first_seen_at": now, "last_seen_at": now}
            for owner, kind, value in (("S1", "id", "S1"), ("S1", "phone", "+8613800138000"),
                                       ("W1", "id", "W1"), ("W1", "email", "ann.lee@gmail.com"),
                                       ("W1", "email", "ann@example.cn"))])
        merge_customers(conn, survivor_id=ids["S1"], merged_id=ids["W1"], reason="same person", actor="test",
                        now=now)
    yield config, engine
    engine.dispose()


def event_owners(engine) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(Event.dedupe_key, Customer.external_id)
                                 .join(Customer, Customer.id == Event.customer_id)).all())


def test_post_events_by_the_merged_records_identifiers_reach_the_survivor(merged_project, monkeypatch):
    config, engine = merged_project
    monkeypatch.setenv("NURTURE_TEST_API_KEY", KEY)
    runtime = Runtime.from_config(load_config(config))
    workers = InProcessWorkers(runtime=runtime)
    try:
        with workers.running(), ServerThread(create_app(runtime, broker=workers.broker)) as url:
            answer = post(url, {"events": [
                {"event_id": "e-1", "customer_id": "W1", "name": "signup"},
                {"event_id": "e-2", "customer_id": "phone:+86 138 0013 8000", "name": "visit"},
                {"event_id": "e-3", "customer_id": "ghost", "name": "visit"},
                # Found only with the configured rules: the defaults would drop the dots.
                {"event_id": "e-4", "customer_id": "email:Ann.Lee@gmail.com", "name": "visit"},
            ]})
            workers.join()
    finally:
        runtime.close()
    assert answer.status_code == 202, answer.text
    assert [e["status"] for e in answer.json()["events"]] == ["accepted", "accepted", "rejected", "accepted"]
    assert answer.json()["events"][2] == {"index": 2, "status": "rejected", "event_id": "e-3",
                                          "reason": "customer_id 'ghost' not found: import customers first"}
    assert event_owners(engine) == {"e-1": "S1", "e-2": "S1", "e-4": "S1"}
    assert outbox(config.parent) == ["welcome_0_S1_once.eml"]  # the person's one welcome


def test_nurture_track_by_the_merged_records_id_or_phone_reaches_the_survivor(merged_project):
    config, engine = merged_project
    runner = CliRunner()
    signup = runner.invoke(cli_app, ["track", "W1", "signup", "-c", str(config), "--event-id", "s-1"])
    assert signup.exit_code == 0, signup.output
    assert "accepted signup for W1" in signup.output
    assert "1 sent, 0 deferred, 0 skipped, 0 failed" in signup.output  # the survivor's welcome
    assert outbox(config.parent) == ["welcome_0_S1_once.eml"]
    for event_id, reference in (("v-1", "phone:13800138000"), ("v-2", "email:Ann@Example.cn")):
        visit = runner.invoke(cli_app, ["track", reference, "visit", "-c", str(config), "--event-id", event_id])
        assert visit.exit_code == 0, visit.output
    unknown = runner.invoke(cli_app, ["track", "phone:+8613900000000", "visit", "-c", str(config)])
    assert unknown.exit_code == 3
    assert "customer_id 'phone:+8613900000000' not found: import customers first" in unknown.output
    assert event_owners(engine) == {"s-1": "S1", "v-1": "S1", "v-2": "S1"}
