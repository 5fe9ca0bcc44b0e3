"""The callback routes of every SMS provider (issue #7), in one list for the app.

Each provider's receipts and replies are read by its own module, paired by name with its
channel: :mod:`.twilio` (``workers.channels.sms.twilio``), :mod:`.aliyun` and :mod:`.tencent`.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine
from starlette.routing import Route

from campaigns.config.schema import AppConfig
from workers.http.batching import ResponseWriter
from workers.http.callbacks.aliyun import aliyun_routes
from workers.http.callbacks.common import Clock
from workers.http.callbacks.tencent import tencent_routes
from workers.http.callbacks.twilio import twilio_routes


def sms_routes(*, config: AppConfig, engine: Engine, clock: Clock,
               writer: ResponseWriter | None = None) -> list[Route]:
    """The SMS callback routes of Twilio, Aliyun and Tencent for the channels of ``config``;
    responses are recorded through ``engine`` at ``clock()``, which must be aware UTC, by
    ``writer`` (the app's shared one; else a writer of these routes' own)."""
    writer = writer or ResponseWriter(engine=engine, clock=clock)
    return [
        *twilio_routes(config=config, clock=clock, writer=writer),
        *aliyun_routes(config=config, clock=clock, writer=writer),
        *tencent_routes(config=config, clock=clock, writer=writer),
    ]
