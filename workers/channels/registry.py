"""Builds the configured channels: the composition root for providers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from campaigns.config.channels import OutboxChannelConfig, WebhookChannelConfig
from campaigns.config.keys import installation_secret
from campaigns.config.options.aliyun import AliyunSmsConfig
from campaigns.config.options.smtp import SmtpChannelConfig
from campaigns.config.options.tencent import TencentSmsConfig
from campaigns.config.options.twilio import TwilioConfig
from campaigns.config.options.wechat import WeChatOAChannelConfig, WeComRobotChannelConfig
from campaigns.config.schema import AppConfig
from workers.channels.base import Channel
from workers.channels.limited import RateLimitedChannel
from workers.channels.outbox import OutboxChannel
from workers.channels.ratelimit import make_rate_limiter
from workers.channels.sms.aliyun import AliyunSmsChannel
from workers.channels.sms.tencent import TencentSmsChannel
from workers.channels.sms.twilio import TwilioChannel
from workers.channels.smtp import SmtpChannel
from workers.channels.tokencache import make_token_cache
from workers.channels.webhook import WebhookChannel
from workers.channels.wechat.official_account import WeChatOAChannel
from workers.channels.wechat.wecom_robot import WeComRobotChannel

#: Loggers of the channels' HTTP client that log every request line at INFO.
HTTP_CLIENT_LOGGERS = ("httpx", "httpcore")


def quiet_request_logs() -> None:
    """Keep the HTTP client's per-request INFO lines out of the logs.

    They carry the whole URL: Aliyun's SendSms query string holds the phone number and
    the template parameters (a customer's name), and Dramatiq's worker processes log at
    INFO. Warnings and errors still get through, and a process logging at DEBUG (asked
    for on purpose) keeps them, masked like every line.
    """
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        return
    for name in HTTP_CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


#: Channels whose constructor takes just (name, options).
_SIMPLE = {
    WebhookChannelConfig: WebhookChannel,
    AliyunSmsConfig: AliyunSmsChannel,
    TencentSmsConfig: TencentSmsChannel,
    TwilioConfig: TwilioChannel,
}


def build_channels(config: AppConfig, *, clock: Callable[[], datetime] | None = None) -> dict[str, Channel]:
    """One channel instance per ``[channels.NAME]`` entry; ``clock`` is the runtime's (so
    time-window rules follow simulated time in tests)."""
    timed = {"clock": clock} if clock is not None else {}
    channels: dict[str, Channel] = {}
    for name, options in config.channels.items():
        if isinstance(options, OutboxChannelConfig):
            channels[name] = OutboxChannel(name=name, options=options, sender=options.sender)
        elif isinstance(options, WeComRobotChannelConfig):
            # Shared through Redis when the broker is Redis: the 20/min holds across processes.
            limiter = make_rate_limiter(redis_url=config.broker.url, limit=options.rate_limit_per_minute,
                                        window_s=60.0, prefix=config.broker.namespace)
            channels[name] = WeComRobotChannel(name=name, options=options, rate_limiter=limiter, **timed)
        elif isinstance(options, WeChatOAChannelConfig):
            cache = make_token_cache(redis_url=config.broker.url, prefix=config.broker.namespace)
            channels[name] = WeChatOAChannel(name=name, options=options, token_cache=cache, **timed)
        elif isinstance(options, SmtpChannelConfig):
            # Keys the Message-ID and VERP tag, so POST /bounces can verify a bounce.
            channels[name] = SmtpChannel(name=name, options=options, secret=installation_secret(config))
        elif type(options) in _SIMPLE:
            channels[name] = _SIMPLE[type(options)](name=name, options=options)
        else:  # pragma: no cover - the config's discriminated union admits nothing else
            raise TypeError(f"unsupported channel kind for {name!r}")
    for name, rule in config.rate_limits.items():
        if name in channels:
            limiter = make_rate_limiter(redis_url=config.broker.url, limit=rule.limit,
                                        window_s=rule.per.total_seconds(), prefix=config.broker.namespace)
            channels[name] = RateLimitedChannel(inner=channels[name], limiter=limiter, key=f"channel:{name}",
                                                **timed)
    return channels
