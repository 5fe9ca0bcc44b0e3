"""Log lines from real delivery paths carry no full email, phone number or secret once
masking is installed (as `nurture` and `dramatiq workers.app` install it): a provider
answer that pauses a campaign, and a channel that raises with the recipient in its
message. The worker-process variant is tests/integration/test_log_masking_worker.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.customers.masking import install_masking, secrets_from_config, uninstall_masking
from campaigns.project.loading import load_config
from campaigns.sending.ledger import run_batches
from campaigns.sending.planning import claim_run, plan_run
from campaigns.store.models import CampaignState, Delivery
from tests.conftest import TICK_NOW, seed_customers
from workers.jobs.delivery import deliver_batch
from workers.jobs.runtime import Runtime

HOOK_SECRET = "whsec_aG9vay1zZWNyZXQtZm9yLW1hc2tpbmctdGVzdC0wMTIz"  # a whsec_ secret: the channel signs with nothing else
#: Customer 0 of seed_customers: p0@example.com, +8613800000000.
EMAIL, PHONE = "p0@example.com", "+8613800000000"


def write_config(tmp_path: Path, database_url: str, *, channel: str) -> Path:
    (tmp_path / "templates" / "c").mkdir(parents=True, exist_ok=True)
    (tmp_path / "templates" / "c" / "m.txt.j2").write_text("Hi {{ customer.first_name }}")
    (tmp_path / "templates" / "c" / "m.json.j2").write_text('{"to": {{ customer.email|tojson }}}')
    path = tmp_path / "config.toml"
    path.write_text(f"""
[database]
url = "{database_url}"
[worker]
max_attempts = 1
[channels.hook]
kind = "webhook"
url = "{{url}}"
secret_env = "NURTURE_TEST_MASK_HOOK_SECRET"
[channels.mail]
kind = "outbox"
dir = "out"
[[campaigns]]
name = "c"
purpose = "transactional"
trigger = {{ cron = "0 10 * * *" }}
channels = ["{channel}"]
  [campaigns.audience]
  min_orders = 1
  last_order_more_than_days = 90
[[campaigns.steps]]
template = "c/m"
""")
    return path


def planned_runtime(path: Path, url: str) -> tuple[Runtime, list[int]]:
    path.write_text(path.read_text().replace("{url}", url))
    config = load_config(path)
    runtime = Runtime.from_config(config, clock=lambda: TICK_NOW)
    seed_customers(runtime.engine, count=2, now=TICK_NOW, lapsed_share=0.5)  # customer 0 only is lapsed
    run_id = claim_run(runtime.engine, "c", TICK_NOW, lease=timedelta(minutes=5))
    plan_run(runtime.engine, config, config.campaigns[0], run_id=run_id, scheduled_at=TICK_NOW, now=TICK_NOW)
    ids = [i for batch in run_batches(runtime.engine, run_id, now=TICK_NOW, batch_size=100) for i in batch]
    assert len(ids) == 1
    return runtime, ids


@pytest.fixture
def masked_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NURTURE_TEST_MASK_HOOK_SECRET", HOOK_SECRET)
    before = logging.getLogRecordFactory()
    yield
    uninstall_masking()
    logging.setLogRecordFactory(before)


@pytest.mark.usefixtures("masked_logs")
def test_a_provider_answer_that_pauses_the_campaign_is_logged_masked(tmp_path, sqlite_url, http_sink, caplog):
    runtime, ids = planned_runtime(write_config(tmp_path, sqlite_url, channel="hook"), http_sink.url)
    install_masking(secrets=secrets_from_config(runtime.config))
    # The receiver echoes the recipient, a phone number and (misconfigured) our own secret.
    http_sink.answer(401, f"unauthorised: signature {HOOK_SECRET} invalid for {EMAIL}, call {PHONE}")
    with caplog.at_level(logging.INFO):
        recorded = deliver_batch(runtime, ids)
    runtime.close()

    assert recorded.halted, "the 401 must pause the campaign (the path that logs the provider's answer)"
    [line] = [r.getMessage() for r in caplog.records if "paused" in r.getMessage()]
    assert line.startswith("campaign c paused: HTTP 401: unauthorised: signature *** invalid for p***@example.com")
    assert "+86*******0000" in line
    for text in (caplog.text, line):
        assert EMAIL not in text and PHONE not in text and HOOK_SECRET not in text
    # The webhook channel masks the answer at the source too, as SMTP and SMS do.
    with runtime.engine.connect() as conn:
        stored = conn.execute(sa.select(Delivery.last_error)).scalar_one()
        reason = conn.execute(sa.select(CampaignState.paused_reason)).scalar_one()
    assert "p***@example.com" in stored and EMAIL not in stored and PHONE not in stored
    assert EMAIL not in reason


class ExplodingChannel:
    """A channel with a bug that puts the recipient into its exception."""

    def send(self, message):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"cannot encode recipient {message.recipient} (phone {PHONE})")

    def close(self) -> None:
        pass


@pytest.mark.usefixtures("masked_logs")
def test_a_channel_exception_is_logged_with_its_traceback_masked(tmp_path, sqlite_url, caplog):
    runtime, ids = planned_runtime(write_config(tmp_path, sqlite_url, channel="mail"), "http://127.0.0.1:9/none")
    install_masking(secrets=secrets_from_config(runtime.config))
    runtime.channels["mail"] = ExplodingChannel()  # type: ignore[assignment]
    with caplog.at_level(logging.INFO):
        deliver_batch(runtime, ids)
    runtime.close()

    [entry] = [r for r in caplog.records if r.name == "nurture.delivery"]
    assert entry.exc_info is not None  # logged with its traceback...
    formatted = logging.Formatter("%(message)s").format(entry)
    assert "Traceback" in formatted
    assert "RuntimeError: cannot encode recipient p***@example.com (phone +86*******0000)" in formatted
    assert EMAIL not in formatted and PHONE not in formatted  # ...which is masked
    assert EMAIL not in caplog.text and PHONE not in caplog.text
    with runtime.engine.connect() as conn:  # and the ledger keeps the error masked too
        stored = conn.execute(sa.select(Delivery.last_error)).scalar_one()
    assert stored.endswith("internal error: RuntimeError: cannot encode recipient p***@example.com (phone +86*******0000)")


@pytest.fixture
def http_client_log_levels() -> Iterator[None]:
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    saved_root = root.level
    yield
    root.setLevel(saved_root)
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("http_client_log_levels")
def test_request_lines_of_the_http_client_are_kept_out_unless_debugging() -> None:
    from workers.channels.registry import quiet_request_logs

    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.getLogger().setLevel(logging.DEBUG)
    quiet_request_logs()  # asked for DEBUG on purpose: left alone
    assert logging.getLogger("httpx").level == logging.NOTSET

    logging.getLogger().setLevel(logging.INFO)  # as Dramatiq's worker processes run
    quiet_request_logs()
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert not logging.getLogger("httpcore").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)


class EchoingChannel:
    """A provider that halts with an error quoting the recipient (WeChat's errmsg can)."""

    name = "mail"

    def send(self, message):  # noqa: ANN001, ANN201
        from campaigns.sending.messages import Outcome, SendResult

        return SendResult(Outcome.HALT, error=f"invalid openid or user {message.recipient} blocked", code="40003")

    def close(self) -> None:
        pass


def test_errors_a_channel_did_not_mask_are_masked_before_the_ledger_stores_them(tmp_path, sqlite_url):
    runtime, ids = planned_runtime(write_config(tmp_path, sqlite_url, channel="mail"), "http://127.0.0.1:9/none")
    runtime.channels["mail"] = EchoingChannel()  # type: ignore[assignment]
    deliver_batch(runtime, ids)
    with runtime.engine.connect() as conn:
        stored = conn.execute(sa.select(Delivery.last_error)).scalar_one()
        reason = conn.execute(sa.select(CampaignState.paused_reason)).scalar_one()
    runtime.close()
    assert stored == reason == "invalid openid or user p***@example.com blocked"


def test_masked_access_lines_keep_the_arguments_uvicorns_access_formatter_unpacks(capfd):
    # uvicorn's own logging config (AccessFormatter unpacks record.args as a 5-tuple) and a
    # real request through a real server: a callback URL carrying ?token= must come out as
    # one masked access line, not as "--- Logging error ---" with a traceback.
    import copy
    import io
    import threading
    import time

    import httpx
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def ok(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/callbacks/aliyun/sms/report", ok, methods=["POST"])])
    token, before = "callback-token-for-access-test", logging.getLogRecordFactory()
    # uvicorn's dictConfig rewires its loggers: put them back as they were afterwards.
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate,
                    logging.getLogger(name).level) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")}
    install_masking(secrets=[token])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=copy.deepcopy(uvicorn.config.LOGGING_CONFIG),
                            log_level="info", access_log=True, lifespan="off", ws="none", use_colors=False)
    access = logging.getLogger("uvicorn.access")
    stream = io.StringIO()
    access.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    try:
        thread.start()
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        answer = httpx.post(f"http://127.0.0.1:{port}/callbacks/aliyun/sms/report?token={token}&to=bob@example.com",
                            content=b"[]")
        assert answer.status_code == 200
    finally:
        server.should_exit = True
        thread.join()
        uninstall_masking()
        logging.setLogRecordFactory(before)
        for name, (handlers, propagate, level) in saved.items():
            restored = logging.getLogger(name)
            restored.handlers[:], restored.propagate = handlers, propagate
            restored.setLevel(level)
    lines = stream.getvalue().splitlines()
    stderr = capfd.readouterr().err
    assert "Logging error" not in stderr
    request_lines = [line for line in lines if "/callbacks/aliyun/sms/report" in line]
    assert len(request_lines) == 1, lines
    assert request_lines[0].endswith(
        '"POST /callbacks/aliyun/sms/report?token=***&to=b***@example.com HTTP/1.1" 200 OK'), request_lines
    assert token not in stream.getvalue() + stderr and "bob@example.com" not in stream.getvalue() + stderr
