"""Channel behaviour without services: the webhook's answer classification (through
httpx's MockTransport) and the outbox's files."""

from __future__ import annotations

import email
import json
from email.utils import format_datetime
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from campaigns.config.channels import OutboxChannelConfig, WebhookChannelConfig
from campaigns.sending.messages import OutboundMessage, Outcome
from workers.channels.outbox import OutboxChannel
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


def test_a_retry_after_date_in_minus_0000_is_read_as_gmt_whatever_the_machines_zone(monkeypatch):
    import time

    # Given a machine in Shanghai (a naive date would be read as local time, 8 h off)
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        later = (datetime.now(UTC) + timedelta(seconds=120)).strftime("%a, %d %b %Y %H:%M:%S -0000")
        # Then a Retry-After date "-0000" still means two minutes from now
        assert 100 < parse_retry_after(later) <= 120
    finally:
        monkeypatch.undo()
        time.tzset()


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


def test_outbox_writes_a_multipart_email_named_after_the_send_key(tmp_path):
    channel = OutboxChannel(name="mail", options=OutboxChannelConfig(kind="outbox", dir=tmp_path))
    result = channel.send(message(subject="Welcome, 李", txt="plain", html="<b>rich</b>"))
    assert result.outcome is Outcome.OK
    written = tmp_path / "win_back" / "win_back_0_42_once.eml"
    parsed = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    assert parsed["To"] == "li@example.com" and parsed["Subject"] == "Welcome, 李"
    assert parsed.get_body(("plain",)).get_content().strip() == "plain"
    assert parsed.get_body(("html",)).get_content().strip() == "<b>rich</b>"
    # Writing the same send key again replaces the file: one message, not two.
    channel.send(message(subject="Welcome", txt="plain"))
    assert len(list((tmp_path / "win_back").iterdir())) == 1


def test_outbox_write_failure_is_retryable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    channel = OutboxChannel(name="mail", options=OutboxChannelConfig(kind="outbox", dir=blocker))
    assert channel.send(message()).outcome is Outcome.RETRY


def test_a_rate_limited_channel_defers_what_exceeds_the_limit_until_a_slot_frees(tmp_path):
    from datetime import UTC, datetime

    from campaigns.project.loading import parse_config
    from workers.channels.registry import build_channels

    config = parse_config(f"""
[channels.mail]
kind = "outbox"
dir = "{tmp_path}"
[rate_limits]
mail = {{ limit = 2, per = "1m" }}
""")
    fixed = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    channel = build_channels(config, clock=lambda: fixed)["mail"]

    results = [channel.send(message(txt=f"n{n}")) for n in range(3)]

    assert [r.outcome for r in results] == [Outcome.OK, Outcome.OK, Outcome.DEFER]
    assert 0 < (results[2].defer_until - fixed).total_seconds() <= 60


def test_a_rate_limit_for_an_unknown_channel_is_a_config_error():
    from campaigns.project.loading import parse_config
    from campaigns.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config('[rate_limits]\nsms = { limit = 5 }\n')
    assert "rate_limits.sms" in str(caught.value)
