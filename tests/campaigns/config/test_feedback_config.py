"""``[feedback]``, survey steps and the ``feedback`` trigger: defaults, bands, and every
error located by file, line and key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from campaigns.config.feedback import FeedbackConfig
from campaigns.errors import ConfigError
from campaigns.project.loading import parse_config
from tests.conftest import line_of

BASE = """
[channels.m]
kind = "outbox"
"""


def issues(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="config.toml")
    return [(issue.line, issue.key_path, issue.message) for issue in caught.value.issues]


def test_defaults_are_the_usual_bands() -> None:
    config = FeedbackConfig()
    assert [config.band("nps", score) for score in range(11)] == ["detractor"] * 7 + ["passive"] * 2 + ["promoter"] * 2
    assert [config.band("csat", score) for score in range(1, 6)] == [
        "detractor", "detractor", "passive", "promoter", "promoter"]
    assert config.answer_within == timedelta(hours=24) and config.alert_channel is None


def test_a_valid_section_loads() -> None:
    config = parse_config(BASE + """
[feedback]
answer_within = "4h"
alert_channel = "ops"
[feedback.csat]
detractor_max = 3
passive_max = 3
[staff_channels.ops]
kind = "webhook"
url = "http://127.0.0.1:9/x"
secret_env = "X_SECRET"
""")
    assert config.feedback.answer_within == timedelta(hours=4)
    assert config.feedback.band("csat", 3) == "detractor" and config.feedback.band("csat", 4) == "promoter"


def test_errors_name_file_line_and_key() -> None:
    text = BASE + """
[feedback]
answer_within = "0s"
alert_channel = "nobody"
colour = "red"
[feedback.nps]
detractor_max = 10
[feedback.csat]
detractor_max = 2
passive_max = 1
[[campaigns]]
name = "follow"
trigger = { feedback = "angry" }
channels = ["m"]
[[campaigns.steps]]
template = "x"
survey = "ces"
"""
    found = issues(text)
    by_key = {key: (line, message) for line, key, message in found}
    assert by_key["feedback.answer_within"][0] == line_of(text, "answer_within")
    assert "longer than zero" in by_key["feedback.answer_within"][1]
    assert by_key["feedback.alert_channel"] == (
        line_of(text, "alert_channel"),
        "unknown staff channel 'nobody' (defined: none defined); add a [staff_channels.nobody] section")
    assert by_key["feedback.colour"] == (line_of(text, "colour"), "unknown key")
    assert by_key["feedback.nps"][0] == line_of(text, "[feedback.nps]")
    assert "detractor_max must be from 0 to 9 for nps" in by_key["feedback.nps"][1]
    assert "passive_max must be from detractor_max (2) to 4 for csat" in by_key["feedback.csat"][1]
    assert by_key["campaigns[0].trigger.feedback"][0] == line_of(text, "trigger =")
    assert "'detractor', 'passive' or 'promoter'" in by_key["campaigns[0].trigger.feedback"][1]
    assert by_key["campaigns[0].steps[0].survey"][0] == line_of(text, "survey =")
    assert "'nps' or 'csat'" in by_key["campaigns[0].steps[0].survey"][1]


def test_a_feedback_trigger_needs_a_survey_to_follow() -> None:
    text = BASE + """
[[campaigns]]
name = "follow"
trigger = { feedback = "detractor" }
channels = ["m"]
[[campaigns.steps]]
template = "x"
"""
    found = [(line, key, message) for line, key, message in issues(text) if key.endswith("trigger.feedback")]
    assert found == [(line_of(text, "trigger ="), "campaigns[0].trigger.feedback",
                      "no campaign asks a survey question: add survey = \"nps\" or \"csat\" to a "
                      "[[campaigns.steps]] of the campaign whose answers this follows up")]
