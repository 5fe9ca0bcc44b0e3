"""AppConfig, the root of config.toml (campaigns/config/schema.py)."""

from __future__ import annotations

import pytest

from campaigns.config.campaigns import CampaignConfig
from campaigns.config.schema import AppConfig
from campaigns.errors import NurtureError, UnknownCampaignError


def a_campaign(name: str) -> CampaignConfig:
    return CampaignConfig.model_validate({"name": name, "trigger": {"manual": True}, "channels": ["mail"],
                                          "steps": [{"template": "t"}]})


def test_a_campaign_is_found_by_name_and_an_unknown_one_lists_those_there_are():
    config = AppConfig.model_construct(campaigns=[a_campaign("win_back"), a_campaign("welcome")])

    assert config.campaign("welcome").name == "welcome"
    with pytest.raises(UnknownCampaignError) as raised:
        config.campaign("promo")
    # One message for the CLI (a NurtureError) and a KeyError for look-ups (the dashboard's 404).
    assert isinstance(raised.value, NurtureError) and isinstance(raised.value, KeyError)
    assert str(raised.value) == "no campaign named 'promo' (campaigns: win_back, welcome)"
    assert str(UnknownCampaignError("x", known=[])) == "no campaign named 'x' (campaigns: none)"
