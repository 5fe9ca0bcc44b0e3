"""The outbox channel: each message a file named after its send key."""

from __future__ import annotations

import email

from campaigns.config.channels import OutboxChannelConfig
from campaigns.sending.messages import OutboundMessage, Outcome
from workers.channels.outbox import OutboxChannel


def message(**parts: str) -> OutboundMessage:
    return OutboundMessage(
        send_key="win_back:0:42:once", delivery_id=1, campaign="win_back", step=0, channel="x",
        recipient="li@example.com", customer_external_id="C42", parts=parts or {"txt": "hello"},
    )


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
