"""``POST /loyalty/redemptions`` (workers/http/redemptions.py) over Starlette's TestClient, on
SQLite and PostgreSQL: 201 redeemed with the balance left, 200 for the same request again,
409 for its id with other values, 422 refused with the reason and the balance allowed,
400/404 for bad input and unknown customers, the key and the body limit as for /events;
and an event posted to /events earning its points in the handle_events fast path."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.routing import Route

from campaigns.config.schema import AppConfig
from campaigns.customers.loyalty.earning import earn
from campaigns.project.loading import parse_config
from campaigns.sending.event_triggers import plan_for_events
from campaigns.store.db import make_engine
from campaigns.store.models import Event, PointsLot
from tests.campaigns.customers.loyalty.helpers import add_customer, add_event, add_order, entries
from workers.http import redemptions as api
from workers.http.app import create_app
from workers.jobs.broker import make_broker

with warnings.catch_warnings():
    # Starlette 1.x wants httpx2 for its test client and warns at import; httpx works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

NOW = datetime(2026, 4, 1, 4, 0, tzinfo=UTC)
KEY_ENV = "NURTURE_TEST_LOYALTY_API_KEY"
KEY = "loyalty-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
CONFIG = f"""
[api]
key_env = "{KEY_ENV}"
[loyalty]
enabled = {{enabled}}
"""


def config(*, enabled: bool = True, url: str | None = None) -> AppConfig:
    text = CONFIG.format(enabled=str(enabled).lower())
    if url is not None:
        text = f'[database]\nurl = "{url}"\n' + text
    return parse_config(text)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    made = make_engine(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))
    yield made
    made.dispose()


@pytest.fixture
def ann(engine: sa.Engine) -> int:
    """ann: 100 points from an order (every kind) and 10 from a review (goods, coupons)."""
    customer = add_customer(engine, "ann", at=NOW - timedelta(days=30))
    add_order(engine, customer, "O-1", at=NOW - timedelta(days=20), amount=100)
    add_event(engine, customer, "review", "rv-1", at=NOW - timedelta(days=10))
    earn(engine, config().loyalty, now=NOW - timedelta(days=5))
    return customer


def client_for(engine: sa.Engine, cfg: AppConfig) -> TestClient:
    app = Starlette(routes=[Route("/loyalty/redemptions", api.redemptions_endpoint(
        config=cfg, engine=engine, clock=lambda: NOW), methods=["POST"])])
    return TestClient(app)


@pytest.fixture
def client(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv(KEY_ENV, KEY)
    with client_for(engine, config()) as test_client:
        yield test_client


def redemption(**fields: object) -> dict[str, object]:
    return {"customer": "ann", "points": 30, "kind": "goods", "redemption_id": "R-1", **fields}


def test_a_redemption_then_the_same_again_then_its_id_with_other_values(client, engine, ann):
    first = client.post("/loyalty/redemptions", json=redemption(note="mug"), headers=AUTH)
    assert first.status_code == 201, first.text
    assert first.json() == {"status": "redeemed", "redemption_id": "R-1", "customer": "ann", "points": 30,
                            "kind": "goods", "redeemed_at": NOW.isoformat(), "balance": 80}

    again = client.post("/loyalty/redemptions", json=redemption(note="mug"), headers=AUTH)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate" and again.json()["balance"] == 80

    for other in (redemption(points=31), redemption(kind="coupons")):
        conflict = client.post("/loyalty/redemptions", json=other, headers=AUTH)
        assert conflict.status_code == 409, other
        assert conflict.json()["status"] == "conflict" and "R-1" in conflict.json()["error"]
    assert [entry for entry in entries(engine, ann) if entry[0] == "redeem"] == [("redeem", -30, "R-1")]


def test_a_redemption_beyond_the_balance_is_refused_whole(client, engine, ann):
    # Only the order's 100 points may pay for services; the review's 10 may not.
    answer = client.post("/loyalty/redemptions", json=redemption(points=101, kind="services", redemption_id="R-2"),
                         headers=AUTH)
    assert answer.status_code == 422
    assert answer.json()["error"] == "not enough points: 100 redeemable for services, 101 asked"
    assert answer.json()["balance"] == 100
    assert [entry[0] for entry in entries(engine, ann)] == ["earn", "earn"]  # nothing written


def test_the_idempotency_key_header_names_the_redemption(client, engine, ann):
    body = {"customer": "ann", "points": 5, "kind": "coupons", "redeemed_at": "2026-03-30T10:00:00+08:00"}
    answer = client.post("/loyalty/redemptions", json=body, headers={**AUTH, "Idempotency-Key": "K-9"})
    assert answer.status_code == 201
    assert answer.json()["redemption_id"] == "K-9"
    assert answer.json()["redeemed_at"] == "2026-03-30T02:00:00+00:00"
    assert client.post("/loyalty/redemptions", json=body, headers={**AUTH, "Idempotency-Key": "K-9"}).status_code == 200
    mismatch = client.post("/loyalty/redemptions", json={**body, "redemption_id": "K-8"},
                           headers={**AUTH, "Idempotency-Key": "K-9"})
    assert mismatch.status_code == 400 and "differ" in mismatch.json()["error"]


@pytest.mark.parametrize("body, word", [
    (redemption(customer=None), "customer"),
    (redemption(points=0), "points"),
    (redemption(points="lots"), "points"),
    (redemption(points=True), "points"),
    (redemption(kind="spa"), "kinds are goods, coupons, services"),
    (redemption(redemption_id=None), "Idempotency-Key"),
    (redemption(redeemed_at="yesterday"), "redeemed_at"),
    (redemption(customer_id="ann"), "unknown field"),
    ([1, 2], "JSON object"),
])
def test_bad_input_is_a_400_naming_the_field(client, ann, body, word):
    answer = client.post("/loyalty/redemptions", json=body, headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert word in answer.json()["error"]


def test_not_json_an_unknown_customer_and_a_body_too_large(client, ann):
    assert client.post("/loyalty/redemptions", content=b"{nope", headers=AUTH).status_code == 400
    unknown = client.post("/loyalty/redemptions", json=redemption(customer="nobody"), headers=AUTH)
    assert unknown.status_code == 404 and "not found" in unknown.json()["error"]
    huge = client.post("/loyalty/redemptions", json=redemption(note="x" * api.MAX_BODY_BYTES), headers=AUTH)
    assert huge.status_code == 413


def test_the_key_is_required_and_loyalty_must_be_on(engine, ann, monkeypatch):
    with client_for(engine, config()) as unset:
        assert unset.post("/loyalty/redemptions", json=redemption(), headers=AUTH).status_code == 503
    monkeypatch.setenv(KEY_ENV, KEY)
    with client_for(engine, config()) as keyed:
        assert keyed.post("/loyalty/redemptions", json=redemption()).status_code == 401
        assert keyed.post("/loyalty/redemptions", json=redemption(),
                          headers={"Authorization": "Bearer wrong"}).status_code == 401
    with client_for(engine, config(enabled=False)) as off:
        answer = off.post("/loyalty/redemptions", json=redemption(), headers=AUTH)
        assert answer.status_code == 503 and "[loyalty]" in answer.json()["error"]
    assert [entry[0] for entry in entries(engine, ann)] == ["earn", "earn"]


def test_an_unexpected_failure_is_a_json_500_not_a_traceback(client, ann, monkeypatch):
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(api, "answer_redemption", broken)
    answer = client.post("/loyalty/redemptions", json=redemption(), headers=AUTH)
    assert answer.status_code == 500
    assert "send it again" in answer.json()["error"] and "fire" not in answer.text


def test_the_server_app_routes_redemptions_and_events_earn_at_once(engine, monkeypatch):
    # Given the app nurture serve builds, with in-process workers' stub broker
    monkeypatch.setenv(KEY_ENV, KEY)
    cfg = config(url=engine.url.render_as_string(hide_password=False))
    bo = add_customer(engine, "bo", at=NOW - timedelta(days=1))
    broker = make_broker(cfg.broker)
    with TestClient(create_app(cfg, broker=broker)) as server:
        # When bo posts a review through /events and the handle_events job runs
        posted = server.post("/events", json={"events": [{"event_id": "rv-bo", "customer_id": "bo", "name": "review",
                                                          "occurred_at": NOW.isoformat()}]}, headers=AUTH)
        assert posted.status_code == 202, posted.text
        with engine.connect() as conn:
            ids = conn.execute(sa.select(Event.id)).scalars().all()
        plan_for_events(engine, cfg, ids, now=NOW + timedelta(minutes=1))
        # Then the review's points are there, and bo can spend them at once
        with engine.connect() as conn:
            assert conn.execute(sa.select(PointsLot.points).where(PointsLot.customer_id == bo)).scalars().all() == [10]
        spent = server.post("/loyalty/redemptions", headers=AUTH, json=redemption(
            customer="bo", points=10, redeemed_at=(NOW + timedelta(hours=1)).isoformat()))
        assert spent.status_code == 201 and spent.json()["balance"] == 0
    broker.close()
