"""`nurture serve`'s app serves the provider callbacks and customer links next to /events."""

from __future__ import annotations

import warnings

from dramatiq.brokers.stub import StubBroker

from campaigns.project.loading import parse_config
from workers.http.app import create_app

with warnings.catch_warnings():
    # Starlette 1.x warns once at import when its TestClient falls back to httpx.
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


def test_the_receiver_mounts_callbacks_and_links(sqlite_url, monkeypatch):
    monkeypatch.delenv("NURTURE_CALLBACK_TOKEN", raising=False)
    config = parse_config(f'[database]\nurl = "{sqlite_url}"\n')
    broker = StubBroker()
    with TestClient(create_app(config, broker=broker)) as client:
        pixel = client.get("/o/not-a-token.gif")
        assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
        # Unsigned provider pushes are refused until a callback token is configured.
        assert client.post("/callbacks/aliyun/sms/report", json=[]).status_code == 503
        assert client.post("/bounces", content=b"x", headers={"content-type": "message/rfc822"}).status_code in (401, 503)
        assert client.get("/health").json() == {"status": "ok"}
    broker.close()


def test_the_trailing_slash_redirect_never_names_the_requests_host(sqlite_url):
    config = parse_config(f'[database]\nurl = "{sqlite_url}"\n')
    broker = StubBroker()
    with TestClient(create_app(config, broker=broker), follow_redirects=False) as client:
        for path, location in (("/dashboard/", "/dashboard"), ("/health/?x=1", "/health?x=1")):
            answer = client.get(path, headers={"Host": "evil.example"})
            assert answer.status_code == 307, path
            # A relative reference: the browser stays on the host it asked.
            assert answer.headers["location"] == location
        assert client.get("//evil.example/", headers={"Host": "evil.example"}).status_code == 404
        assert client.get("/nothing-here/").status_code == 404
    broker.close()
