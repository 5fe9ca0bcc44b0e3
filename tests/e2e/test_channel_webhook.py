"""The webhook channel signs every request the way the official ``standardwebhooks``
library verifies it, and sends nothing unsigned: without a usable secret it halts."""

from __future__ import annotations

import base64

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from campaigns.config.channels import WebhookChannelConfig
from campaigns.config.secretvalues import webhook_signing_key
from campaigns.sending.messages import OutboundMessage, Outcome
from workers.channels.webhook import WebhookChannel

SECRET_ENV = "NURTURE_TEST_WEBHOOK_CHANNEL_SECRET"
#: A Standard Webhooks secret (32 random-looking bytes), as ``nurture check`` tells users to make.
WHSEC = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def message() -> OutboundMessage:
    return OutboundMessage(
        send_key="win_back:0:42:once", delivery_id=1, campaign="win_back", step=0, channel="hook",
        recipient="C42", customer_external_id="C42", parts={"json": '{"to": "C42", "n": 1}'},
    )


def channel(url: str, secret_env: str | None = SECRET_ENV) -> WebhookChannel:
    return WebhookChannel(name="hook", options=WebhookChannelConfig(kind="webhook", url=url, secret_env=secret_env))


def test_the_standardwebhooks_library_verifies_what_the_channel_sends(http_sink, monkeypatch):
    # Given a whsec_ secret, in both padded and unpadded base64 (the library accepts both)
    for secret in (WHSEC, WHSEC.rstrip("=")):
        monkeypatch.setenv(SECRET_ENV, secret)
        hook = channel(http_sink.url)
        # When the channel posts a message to the loopback sink
        result = hook.send(message())
        hook.close()
        # Then the official library, keyed with the same secret, accepts the request as sent
        assert result.outcome is Outcome.OK
        request = http_sink.requests[-1]
        assert Webhook(secret).verify(request.body, request.headers) == {"to": "C42", "n": 1}
        # ... and rejects it under another secret (the check is real)
        other = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()
        with pytest.raises(WebhookVerificationError):
            Webhook(other).verify(request.body, request.headers)


def test_the_signing_key_is_the_librarys_key():
    assert webhook_signing_key(WHSEC) == bytes(range(32))
    assert webhook_signing_key(WHSEC.rstrip("=")) == bytes(range(32))


@pytest.mark.parametrize(
    "secret",
    [
        "a-plain-passphrase-of-some-length",  # keyed as raw bytes before: the library rejected every request
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"too short").decode(),
    ],
)
def test_a_secret_the_library_cannot_use_halts_sends_and_never_reaches_the_receiver(http_sink, monkeypatch, secret):
    monkeypatch.setenv(SECRET_ENV, secret)
    hook = channel(http_sink.url)
    result = hook.send(message())
    hook.close()
    assert result.outcome is Outcome.HALT
    assert http_sink.requests == []
    assert secret not in (result.error or "")
    assert "whsec_" in (result.error or "")  # says what a usable secret looks like


@pytest.mark.parametrize("value", [None, ""])
def test_an_unset_or_empty_secret_variable_halts_sends_instead_of_posting_unsigned(http_sink, monkeypatch, value):
    if value is None:
        monkeypatch.delenv(SECRET_ENV, raising=False)
    else:
        monkeypatch.setenv(SECRET_ENV, value)
    hook = channel(http_sink.url)
    result = hook.send(message())
    hook.close()
    assert result.outcome is Outcome.HALT
    assert SECRET_ENV in (result.error or "")
    assert http_sink.requests == []


def test_a_channel_without_secret_env_halts_sends(http_sink):
    hook = channel(http_sink.url, secret_env=None)
    result = hook.send(message())
    hook.close()
    assert result.outcome is Outcome.HALT
    assert http_sink.requests == []
