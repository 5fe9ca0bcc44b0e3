"""Delivery channels, one module per provider family, built from config by :mod:`.registry`."""

from workers.channels.base import Channel
from workers.channels.registry import build_channels

__all__ = ["Channel", "build_channels"]
