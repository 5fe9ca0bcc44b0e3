"""Builds the configured channels: the composition root for providers."""

from __future__ import annotations

from campaigns.channel_options.sms import AliyunSmsConfig, TencentSmsConfig, TwilioConfig
from campaigns.config import AppConfig, OutboxChannelConfig, WebhookChannelConfig
from workers.channels.base import Channel
from workers.channels.outbox import OutboxChannel
from workers.channels.sms import AliyunSmsChannel, TencentSmsChannel, TwilioChannel
from workers.channels.webhook import WebhookChannel

#: Channels whose constructor takes just (name, options).
_SIMPLE = {
    WebhookChannelConfig: WebhookChannel,
    AliyunSmsConfig: AliyunSmsChannel,
    TencentSmsConfig: TencentSmsChannel,
    TwilioConfig: TwilioChannel,
}


def build_channels(config: AppConfig) -> dict[str, Channel]:
    """One channel instance per ``[channels.NAME]`` entry."""
    channels: dict[str, Channel] = {}
    for name, options in config.channels.items():
        if isinstance(options, OutboxChannelConfig):
            channels[name] = OutboxChannel(name=name, options=options, sender=options.sender)
        elif type(options) in _SIMPLE:
            channels[name] = _SIMPLE[type(options)](name=name, options=options)
        else:  # pragma: no cover - the config's discriminated union admits nothing else
            raise TypeError(f"unsupported channel kind for {name!r}")
    return channels
