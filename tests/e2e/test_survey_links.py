"""Survey score links end to end: a survey message rendered by the worker carries one
signed link per score; ``GET /s/{token}`` records the score once, and a forged, edited or
foreign token records nothing; the thank-you page keeps a comment. Over Starlette's
TestClient, a migrated SQLite database and the outbox channel."""

from __future__ import annotations

import base64
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

from campaigns.sending import sealing
from campaigns.sending.tokens import make_click_token, make_survey_token, verify_survey_token
from campaigns.store.models import Delivery
from tests.campaigns.feedback.survey_world import SurveyWorld
from workers.http.app import web_routes
from workers.http.links import LINK_SECRET_ENV
from workers.jobs.delivery import deliver_batch
from workers.jobs.runtime import Runtime

with warnings.catch_warnings():
    # Starlette 1.x wants httpx2 for its test client and warns at import; httpx works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

SECRET = "link-secret-for-survey-tests"
PUBLIC = "https://t.shop.example"


@pytest.fixture
def world(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> SurveyWorld:
    monkeypatch.setenv(LINK_SECRET_ENV, SECRET)
    return SurveyWorld(tmp_path, sqlite_url, extra=f'\n[api]\npublic_url = "{PUBLIC}"\n')


@pytest.fixture
def client(world: SurveyWorld) -> Iterator[TestClient]:
    app = Starlette(routes=web_routes(config=world.config, engine=world.engine, clock=lambda: world.now))
    with TestClient(app, base_url=PUBLIC, follow_redirects=False) as test_client:
        yield test_client


def test_the_worker_renders_one_signed_link_per_score(world: SurveyWorld, tmp_path: Path) -> None:
    delivery_id, send_key = world.send("C1")
    with world.engine.begin() as conn:  # the message is due, not sent yet
        conn.execute(sa.update(Delivery).where(Delivery.id == delivery_id)
                     .values(status="queued", sent_at=None, due_at=world.now, dispatch_after=world.now))
    runtime = Runtime.from_config(world.config, clock=lambda: world.now)
    deliver_batch(runtime, [delivery_id])
    [written] = [path for path in (tmp_path / "out").rglob("*") if path.is_file()]
    text = written.read_text()
    assert "Reply with a number from 0 (not likely) to 10 (very likely)" in text
    links = dict(re.findall(r" (\d+)=(\S+)", text))
    assert sorted(map(int, links)) == list(range(11))
    for score, url in links.items():
        assert url.startswith(f"{PUBLIC}/s/")
        assert verify_survey_token(url.rsplit("/", 1)[1], SECRET) == (send_key, int(score))


def test_a_link_records_its_score_once(world: SurveyWorld, client: TestClient) -> None:
    _, send_key = world.send("C1")
    first = client.get(f"/s/{make_survey_token(send_key, 9, SECRET)}")
    second = client.get(f"/s/{make_survey_token(send_key, 2, SECRET)}")
    assert first.status_code == 200 and "You answered <strong>9</strong> out of 10" in first.text
    assert second.status_code == 200 and "the first one counts" in second.text
    assert first.headers["cache-control"].startswith("no-store")
    [answer] = world.answers()
    assert (answer.score, answer.band, answer.source) == (9, "promoter", "click")
    saved = client.post(f"/s/{make_survey_token(send_key, 9, SECRET)}", data={"comment": "Quick delivery <b>!</b>"})
    assert saved.status_code == 200 and "Your comment is saved" in saved.text
    assert world.answers()[0].text == "Quick delivery <b>!</b>"


def test_forged_edited_and_foreign_tokens_record_nothing(world: SurveyWorld, client: TestClient) -> None:
    _, send_key = world.send("C1")
    token = make_survey_token(send_key, 2, SECRET)
    data = sealing.decode(token, 1024)
    assert data is not None
    # every byte flipped in turn: none opens, none is another score
    edited = [base64.urlsafe_b64encode(data[:i] + bytes([data[i] ^ 1]) + data[i + 1:]).decode().rstrip("=")
              for i in range(len(data))]
    assert all(verify_survey_token(other, SECRET) is None for other in edited)
    for bad in (edited[len(edited) // 2], make_survey_token(send_key, 10, "another-secret-of-the-same-len"),
                make_click_token(send_key, "https://shop.example/", SECRET), "garbage", "A" * 600):
        answer = client.get(f"/s/{bad}")
        assert answer.status_code == 404 and "Link not valid" in answer.text
    # a link of a message that asks nothing, of a message that does not exist
    _, other_key = world.send("C2", step=0)
    assert client.get(f"/s/{make_survey_token(other_key, 9, SECRET)}").status_code == 404
    assert client.get(f"/s/{make_survey_token('nps:1:9999:once', 9, SECRET)}").status_code == 404
    assert client.post(f"/s/{bad}", data={"comment": "hi"}).status_code == 404
    assert world.answers() == []


def test_a_comment_without_an_answer_or_without_the_field(world: SurveyWorld, client: TestClient) -> None:
    _, send_key = world.send("C1")
    token = make_survey_token(send_key, 7, SECRET)
    assert client.post(f"/s/{token}", data={"comment": "hello"}).status_code == 404  # never answered
    assert client.post(f"/s/{token}", data={"other": "x"}).status_code == 400
