"""Builds the configured channels: the composition root for providers."""

from __future__ import annotations

from campaigns.config import AppConfig, OutboxChannelConfig, WebhookChannelConfig
from workers.channels.base import Channel
from workers.channels.outbox import OutboxChannel
from workers.channels.webhook import WebhookChannel


def build_channels(config: AppConfig) -> dict[str, Channel]:
    """One channel instance per ``[channels.NAME]`` entry."""
    channels: dict[str, Channel] = {}
    for name, options in config.channels.items():
        if isinstance(options, OutboxChannelConfig):
            channels[name] = OutboxChannel(name=name, options=options, sender=options.sender)
        elif isinstance(options, WebhookChannelConfig):
            channels[name] = WebhookChannel(name=name, options=options)
        else:  # pragma: no cover - the config's discriminated union admits nothing else
            raise TypeError(f"unsupported channel kind for {name!r}")
    return channels
