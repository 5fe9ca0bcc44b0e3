"""Why a previewed message would not go (:mod:`campaigns.sending.preview`): each channel's
problem, in the order planning's :class:`~campaigns.audience.selection.Reach` checks them,
and the send-time policy's verdict with a stable code for scripts and tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from campaigns.config.campaigns import CampaignConfig
from campaigns.config.schema import AppConfig
from campaigns.customers.timezones import customer_zone
from campaigns.sending.policy import Skip, next_opening


@dataclass(frozen=True)
class ChannelCheck:
    """One channel of the campaign's preference list, for this customer."""

    channel: str
    #: The customer field it sends to (``email``, ``phone``, ``wechat_openid``).
    recipient: str
    address: str | None
    #: None when the channel can be used, else ``no_address``, ``no_consent``,
    #: ``consent_withdrawn`` or ``suppressed``.
    problem: str | None


@dataclass(frozen=True)
class Blocker:
    """Why the message would not go now: for good (``until`` None) or until a time."""

    #: A stable code: ``disabled``, ``paused``, ``not_in_audience``, ``held_out``,
    #: ``already_enrolled``, ``no_channel``, ``quiet_hours``, ``send_window``, ``capped``,
    #: ``step_condition``, ``no_recommendations``, ``suppressed``, ``consent_withdrawn``,
    #: ``no_consent``, and for a message already waiting in the ledger ``series_ended`` or
    #: ``goal_reached``; else ``policy``.
    code: str
    message: str
    until: datetime | None = None


def channel_checks(config: AppConfig, campaign: CampaignConfig, person: dict[str, Any],
                   facts: dict[str, Any]) -> list[ChannelCheck]:
    """Each channel of the preference list with the first reason it cannot be used;
    ``facts`` holds the ``consented_<i>``, ``withdrawn_<i>`` and ``suppressed_<i>`` flags of
    channel ``i``, as planning's Reach computes them."""
    checks = []
    for index, name in enumerate(campaign.channels):
        recipient = config.channels[name].recipient
        address = person.get(recipient) or None
        if not address:
            problem: str | None = "no_address"
        elif facts[f"withdrawn_{index}"] and not facts[f"consented_{index}"]:
            problem = "consent_withdrawn"
        elif not facts[f"consented_{index}"]:
            problem = "no_consent"
        elif facts[f"suppressed_{index}"]:
            problem = "suppressed"
        else:
            problem = None
        checks.append(ChannelCheck(channel=name, recipient=recipient, address=address, problem=problem))
    return checks


_CAP = re.compile(r"\bcap", re.IGNORECASE)


def policy_blocker(config: AppConfig, campaign: CampaignConfig, person: dict[str, Any], skip: Skip, *,
                    now: datetime) -> Blocker:
    """The send-time policy's verdict as a blocker, with a code for scripts and tests."""
    reason = skip.reason
    lowered = reason.lower()
    quiet = config.compliance.marketing_window
    # The checks that come before timing in policy.send_time_skips first, then timing:
    # quiet hours are told apart from send windows by the config, not by the wording.
    if lowered.startswith("series ended"):
        code = "series_ended"
    elif lowered.startswith("goal reached"):
        code = "goal_reached"
    elif _CAP.search(reason):
        code = "capped"
    elif "condition" in lowered:
        code = "step_condition"
    elif "suppressed" in lowered:
        code = "suppressed"
    elif "withdrawn" in lowered:
        code = "consent_withdrawn"
    elif "consent" in lowered:
        code = "no_consent"
    elif (skip.defer_until is not None and campaign.purpose == "marketing" and quiet is not None
          and next_opening(now, customer_zone(person, campaign.zone), *quiet) is not None):
        code = "quiet_hours"
    elif "window" in lowered:
        code = "send_window"
    else:
        code = "policy"
    return Blocker(code, reason, skip.defer_until)
