"""``[staff_channels.NAME]``: where alerts for staff go (a detractor's score, a complaint).

A staff channel reaches the team, never a customer: a WeCom (企业微信) group robot
(``kind = "wecom_robot"``, CHANNELS.md §1) or any HTTP endpoint (``kind = "webhook"``,
signed with Standard Webhooks like the customer-facing webhook channel). The options are
those of the channel of the same kind (:mod:`campaigns.config.options.wechat`,
:mod:`campaigns.config.channels`), secrets by environment variable name as everywhere::

    [staff_channels.care]
    kind = "wecom_robot"
    key_env = "CARE_ROBOT_KEY"          # the key=... of the robot's webhook URL

    [staff_channels.helpdesk]
    kind = "webhook"
    url = "https://helpdesk.example/hooks/nurture"
    secret_env = "HELPDESK_WEBHOOK_SECRET"   # whsec_...

Alerts are queued in ``staff_alert`` and sent by the worker (docs/feedback.md, "Staff
alerts"); ``max_attempts`` bounds the retries of one alert before it is ``failed``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from campaigns.config.channels import WebhookChannelConfig
from campaigns.config.options.wechat import WeComRobotChannelConfig

#: Attempts of one alert before it is marked failed (retries back off from 30 s to 1 h).
DEFAULT_MAX_ATTEMPTS = 8
#: The most attempts an operator may set.
MAX_ATTEMPTS_LIMIT = 100


class StaffWeComRobotConfig(WeComRobotChannelConfig):
    """A WeCom group robot for staff alerts: markdown by default (bold labels, quoted text)."""

    #: ``markdown`` (default) or ``text``; ``news`` needs a template and is refused.
    msgtype: Literal["text", "markdown"] = "markdown"  # type: ignore[assignment]
    max_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1, le=MAX_ATTEMPTS_LIMIT)


class StaffWebhookConfig(WebhookChannelConfig):
    """An HTTP endpoint for staff alerts: the alert as JSON, signed (Standard Webhooks)."""

    max_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1, le=MAX_ATTEMPTS_LIMIT)


#: One ``[staff_channels.NAME]`` table: the model its ``kind`` names.
StaffChannelConfig = Annotated[StaffWeComRobotConfig | StaffWebhookConfig, Field(discriminator="kind")]


def staff_channel_references(raw: dict[str, Any], paths: list[tuple[tuple[str | int, ...], Any]]
                             ) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """``(key_path, message)`` for each of ``paths`` (a key path and the raw value found
    there) that names no ``[staff_channels.NAME]`` of the raw TOML data ``raw``."""
    defined = raw.get("staff_channels") if isinstance(raw.get("staff_channels"), dict) else {}
    for path, value in paths:
        if isinstance(value, str) and value not in defined:
            known = ", ".join(sorted(defined)) or "none defined"
            yield path, f"unknown staff channel {value!r} (defined in [staff_channels.NAME]: {known})"


__all__ = ["DEFAULT_MAX_ATTEMPTS", "StaffChannelConfig", "StaffWeComRobotConfig", "StaffWebhookConfig",
           "staff_channel_references"]
