"""The whole tracking loop: a worker sends an HTML email whose links and pixel point at
`nurture serve`; following them through the receiver records a click and an open on
that very delivery."""

from __future__ import annotations

import re
import warnings
from datetime import timedelta

import sqlalchemy as sa

from campaigns.project.loading import load_config
from campaigns.sending.ledger import run_batches
from campaigns.sending.planning import claim_run, plan_run
from campaigns.store.models import Response
from tests.conftest import TICK_NOW, seed_customers
from workers.http.app import create_app
from workers.jobs.delivery import deliver_batch
from workers.jobs.runtime import Runtime

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


def test_a_click_and_an_open_in_a_sent_email_land_on_its_delivery(tmp_path, sqlite_url, monkeypatch):
    monkeypatch.setenv("NURTURE_LINK_SECRET", "a-long-link-secret")
    (tmp_path / "templates" / "c").mkdir(parents=True)
    (tmp_path / "templates" / "c" / "m.subject.j2").write_text("Sale")
    (tmp_path / "templates" / "c" / "m.txt.j2").write_text("Sale at https://shop.example.com/sale")
    (tmp_path / "templates" / "c" / "m.html.j2").write_text(
        '<html><body><a href="https://shop.example.com/sale">Sale</a></body></html>')
    (tmp_path / "config.toml").write_text(f"""
[database]
url = "{sqlite_url}"
[api]
public_url = "https://t.example.com"
[channels.mail]
kind = "outbox"
dir = "out"
[[campaigns]]
name = "c"
timezone = "Asia/Shanghai"
trigger = {{ cron = "0 10 * * *" }}
channels = ["mail"]
[[campaigns.steps]]
template = "c/m"
""")
    config = load_config(tmp_path / "config.toml")
    runtime = Runtime.from_config(config, clock=lambda: TICK_NOW)
    seed_customers(runtime.engine, count=1, now=TICK_NOW)
    sent = []
    outbox = runtime.channels["mail"]

    class Recording:
        name = "mail"

        def send(self, message):
            sent.append(message)
            return outbox.send(message)

        def close(self):
            outbox.close()

    runtime.channels["mail"] = Recording()
    run_id = claim_run(runtime.engine, "c", TICK_NOW, lease=timedelta(minutes=5))
    plan_run(runtime.engine, config, config.campaigns[0], run_id=run_id, scheduled_at=TICK_NOW, now=TICK_NOW)
    deliver_batch(runtime, [i for batch in run_batches(runtime.engine, run_id, now=TICK_NOW, batch_size=10)
                            for i in batch])

    [message] = sent
    assert message.parts["txt"] == "Sale at https://shop.example.com/sale"  # text parts are left alone
    click = re.search(r'href="https://t\.example\.com(/c/[^"]+)"', message.parts["html"]).group(1)
    pixel = re.search(r'src="https://t\.example\.com(/o/[^"]+)"', message.parts["html"]).group(1)
    with TestClient(create_app(runtime, broker=None)) as client:  # type: ignore[arg-type]
        followed = client.get(click, follow_redirects=False)
        client.get(pixel)
    assert (followed.status_code, followed.headers["location"]) == (302, "https://shop.example.com/sale")
    with runtime.engine.connect() as conn:
        recorded = conn.execute(sa.select(Response.kind, Response.delivery_id)).all()
    runtime.close()
    assert sorted(kind for kind, _ in recorded) == ["clicked", "opened"]
    assert {delivery_id for _, delivery_id in recorded} == {1}
