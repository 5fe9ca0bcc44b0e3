"""The interface every channel implements.

A channel sends one rendered message to one recipient and classifies the provider's
answer into a :class:`~campaigns.sending.messages.SendResult` (ok / retry / defer / permanent /
suppress / halt). It never raises for a provider's answer: exceptions are for bugs.
Channels are called from several worker threads at once and must be thread-safe.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from campaigns.sending.messages import OutboundMessage, SendResult


@runtime_checkable
class Channel(Protocol):
    """One configured channel (``[channels.NAME]`` in config.toml)."""

    #: The channel's name in config.
    name: str

    def send(self, message: OutboundMessage) -> SendResult:
        """Send one message; classify the answer. Must not raise for provider errors."""
        ...

    def close(self) -> None:
        """Release connections held by this channel."""
        ...
