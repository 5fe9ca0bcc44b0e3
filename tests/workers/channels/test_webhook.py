"""The webhook channel without services: its answer classification (through httpx's
MockTransport) and its bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from campaigns.config.channels import WebhookChannelConfig
from campaigns.sending.messages import OutboundMessage, Outcome
from workers.channels.httpclients import parse_retry_after
from workers.channels.webhook import WebhookChannel


def message(**parts: str) -> OutboundMessage:
    return OutboundMessage(
        send_key="win_back:0:42:once", delivery_id=1, campaign="win_back", step=0, channel="x",
        recipient="li@example.com", customer_external_id="C42", parts=parts or {"txt": "hello"},
    )


#: The webhook channel sends nothing unsigned: every test here gets a whsec_ secret.
HOOK_SECRET_ENV = "NURTURE_TEST_UNIT_HOOK_SECRET"


@pytest.fixture(autouse=True)
def _hook_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOOK_SECRET_ENV, "whsec_dW5pdC10ZXN0LXdlYmhvb2stc2lnbmluZy1rZXktMDEy")


def webhook(handler) -> WebhookChannel:
    options = WebhookChannelConfig(kind="webhook", url="http://sink.test/hook", secret_env=HOOK_SECRET_ENV)
    return WebhookChannel(name="hook", options=options, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, b'{"id": "abc"}', Outcome.OK),
        (202, b"<html>accepted</html>", Outcome.OK),  # garbage body on success is still success
        (408, b"", Outcome.RETRY),
        (429, b"slow down", Outcome.RETRY),
        (500, b"\x00\xff", Outcome.RETRY),
        (503, b"", Outcome.RETRY),
        (401, b"who are you", Outcome.HALT),
        (403, b"", Outcome.HALT),
        (410, b"gone", Outcome.SUPPRESS),
        (400, b"bad", Outcome.PERMANENT),
        (422, b"{}", Outcome.PERMANENT),
    ],
)
def test_webhook_answers_map_to_outcomes(status, body, outcome):
    result = webhook(lambda request: httpx.Response(status, content=body)).send(message())
    assert result.outcome is outcome
    assert result.code == str(status)
    if outcome is Outcome.OK and body.startswith(b"{"):
        assert result.provider_message_id == "abc"


def test_network_errors_and_timeouts_are_retryable():
    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    def slow(request):
        raise httpx.ReadTimeout("slow", request=request)

    assert webhook(refuse).send(message()).outcome is Outcome.RETRY
    timed_out = webhook(slow).send(message())
    assert timed_out.outcome is Outcome.RETRY and timed_out.code == "timeout"


def test_retry_after_is_honoured_in_seconds_and_as_an_http_date():
    result = webhook(lambda r: httpx.Response(429, headers={"Retry-After": "17"})).send(message())
    assert result.retry_after_s == 17
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < parse_retry_after(later) <= 120
    assert parse_retry_after("soon") is None


def test_the_json_part_is_sent_as_the_body_and_without_it_the_parts_are():
    seen = []

    def record(request):
        seen.append(json.loads(request.content))
        return httpx.Response(200)

    channel = webhook(record)
    channel.send(message(json='{"custom": [1, 2]}'))
    channel.send(message(subject="Hi", txt="Body"))
    assert seen[0] == {"custom": [1, 2]}
    assert seen[1]["subject"] == "Hi" and seen[1]["txt"] == "Body" and seen[1]["customer_id"] == "C42"
