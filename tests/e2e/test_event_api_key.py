"""The `/events` API key, beyond the basic 401/503 cases of test_event_receiver: only
`Authorization: Bearer <key>` opens it, a refused request stores nothing, answers never
echo a key, odd headers are a 401 rather than a crash, and the key is compared in
constant time."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from campaigns.store.models import Event
from tests.conftest import ServerThread
from tests.e2e.test_event_receiver import KEY, add_customers, runtime, served  # noqa: F401
from workers.http import errors as receiver_http
from workers.http.app import create_app
from workers.jobs.inprocess import InProcessWorkers

BODY = {"events": [{"event_id": "e-1", "customer_id": "ann", "name": "pageview"}]}


def events_stored(rt) -> int:  # type: ignore[no-untyped-def]
    with rt.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(Event)).scalar_one()


def post_raw(url: str, headers: dict[str, str] | list[tuple[bytes, bytes]], *, path: str = "/events") -> httpx.Response:
    with httpx.Client(base_url=url) as client:
        return client.post(path, json=BODY, headers=headers)


@pytest.mark.parametrize(
    "authorization",
    [
        f"Basic {KEY}",
        f"Token {KEY}",
        KEY,
        "Bearer",
        f"Bearer {KEY} extra",
        f"Bearer {KEY}x",
        f"Bearer {KEY.upper()}",
    ],
)
def test_only_a_bearer_header_with_the_exact_key_opens_the_endpoint(served, runtime, authorization):  # noqa: F811
    url, _ = served
    add_customers(runtime.engine, "ann")
    answer = post_raw(url, {"Authorization": authorization})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert KEY not in answer.text
    assert events_stored(runtime) == 0  # refused before anything is read or recorded


def test_the_key_in_the_query_string_or_another_header_is_not_accepted(served, runtime):  # noqa: F811
    url, _ = served
    add_customers(runtime.engine, "ann")
    assert post_raw(url, {}, path=f"/events?key={KEY}").status_code == 401
    assert post_raw(url, {"X-API-Key": KEY}).status_code == 401
    assert events_stored(runtime) == 0


def test_the_scheme_is_case_insensitive_and_the_key_is_not(served, runtime):  # noqa: F811
    url, workers = served
    add_customers(runtime.engine, "ann")
    answer = post_raw(url, {"Authorization": f"bearer {KEY}"})
    workers.join()
    assert answer.status_code == 202, answer.text
    assert events_stored(runtime) == 1


def test_non_ascii_bytes_in_the_header_are_a_401_not_a_crash(served, runtime):  # noqa: F811
    url, _ = served
    answer = post_raw(url, [(b"Authorization", b"Bearer \xff\xfe" + KEY.encode())])
    assert answer.status_code == 401


def test_without_a_key_configured_the_answer_names_the_variable_but_no_value(runtime, monkeypatch):  # noqa: F811
    monkeypatch.delenv("NURTURE_TEST_API_KEY", raising=False)
    workers = InProcessWorkers(runtime=runtime)
    with workers.running(), ServerThread(create_app(runtime, broker=workers.broker)) as url:
        # Even the key a client guesses right is refused while the server has none.
        answer = post_raw(url, {"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 503
    assert "NURTURE_TEST_API_KEY" in answer.json()["error"]
    assert events_stored(runtime) == 0


def test_the_key_is_compared_in_constant_time(served, runtime, monkeypatch):  # noqa: F811
    url, _ = served
    compared = []
    real = receiver_http.hmac.compare_digest  # the check every bearer-key API shares

    def spy(given: bytes, expected: bytes) -> bool:
        compared.append((given, expected))
        return real(given, expected)

    monkeypatch.setattr(receiver_http.hmac, "compare_digest", spy)
    assert post_raw(url, {"Authorization": "Bearer wrong-key"}).status_code == 401
    assert compared == [(b"wrong-key", KEY.encode())]
