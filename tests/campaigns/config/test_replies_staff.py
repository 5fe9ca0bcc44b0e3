"""``[replies]`` rules and ``[staff_channels.NAME]`` (campaigns/config/replies.py, staff.py):
what loads, the defaults, and each mistake located by file, line and key."""

from __future__ import annotations

import textwrap

import pytest

from campaigns.config.replies import DEFAULT_RULES, normalise_text
from campaigns.config.staff import StaffWebhookConfig, StaffWeComRobotConfig
from campaigns.errors import ConfigError
from campaigns.project.loading import parse_config
from tests.conftest import line_of

STAFF = textwrap.dedent("""\
    [staff_channels.care]
    kind = "wecom_robot"
    key_env = "CARE_ROBOT_KEY"

    [staff_channels.desk]
    kind = "webhook"
    url = "https://desk.example/hook"
    secret_env = "DESK_SECRET"
    max_attempts = 3
    """)


def issues_of(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return [(issue.line, issue.key_path, issue.message) for issue in caught.value.issues]


def test_defaults_and_staff_channels_load() -> None:
    config = parse_config(STAFF + '\n[replies]\nalert_channel = "care"\n')
    assert config.replies.alert_channel == "care"
    assert [rule.label for rule in config.replies.rules] == ["complaint", "question", "positive"]
    assert config.replies.rules == list(DEFAULT_RULES)
    care, desk = config.staff_channels["care"], config.staff_channels["desk"]
    assert isinstance(care, StaffWeComRobotConfig) and care.msgtype == "markdown" and care.max_attempts == 8
    assert isinstance(desk, StaffWebhookConfig) and desk.max_attempts == 3
    assert parse_config("").replies.alert_channel is None


def test_rules_given_replace_the_defaults_in_their_order() -> None:
    config = parse_config(textwrap.dedent("""\
        [[replies.rules]]
        name = "late"
        label = "complaint"
        keywords = ["还没到", "where is my order"]

        [[replies.rules]]
        name = "ask"
        label = "question"
        keywords = ["?"]
        """))
    assert [(rule.name, rule.label) for rule in config.replies.rules] == [("late", "complaint"), ("ask", "question")]


def test_rule_mistakes_are_located() -> None:
    text = STAFF + textwrap.dedent("""\

        [replies]
        alert_channel = "nobody"

        [[replies.rules]]
        name = "a"
        label = "complaint"
        keywords = ["退款"]

        [[replies.rules]]
        name = "a"
        label = "angry"
        keywords = []

        [[replies.rules]]
        name = "c"
        label = "question"
        keywords = ["  ", "ok"]
        """)
    found = issues_of(text)
    assert (line_of(text, 'alert_channel = "nobody"'), "replies.alert_channel",
            "unknown staff channel 'nobody' (defined in [staff_channels.NAME]: care, desk)") in found
    assert (line_of(text, 'name = "a"', 2), "replies.rules[1].name",
            "duplicate rule name 'a' (first defined as replies.rules[0])") in found
    located = {(line, key) for line, key, _ in found}
    assert (line_of(text, 'label = "angry"'), "replies.rules[1].label") in located
    assert (line_of(text, "keywords = []"), "replies.rules[1].keywords") in located
    assert any(key == "replies.rules[2].keywords" and line == line_of(text, 'keywords = ["  ", "ok"]')
               and "keyword 0 is empty" in message for line, key, message in found)
    assert len(found) == 5


def test_staff_channel_mistakes_are_located() -> None:
    text = textwrap.dedent("""\
        [staff_channels.care]
        kind = "wecom_robot"
        msgtype = "news"
        key_env = "K"

        [staff_channels.desk]
        kind = "webhook"
        url = "ftp://desk.example"

        [staff_channels.other]
        kind = "slack"
        """)
    found = issues_of(text)
    located = {(line, key) for line, key, _ in found}
    assert (line_of(text, 'msgtype = "news"'), "staff_channels.care.msgtype") in located
    assert (line_of(text, 'url = "ftp'), "staff_channels.desk.url") in located
    assert any(key == "staff_channels.other" and line == line_of(text, "[staff_channels.other]") and "slack" in message
               for line, key, message in found), found


def test_text_is_compared_normalised() -> None:
    assert normalise_text("ＲＥＦＵＮＤ  please？") == "refund please?"


def test_check_fails_an_unusable_staff_webhook_secret_and_warns_of_an_unset_robot_key(tmp_path, monkeypatch) -> None:
    from campaigns.project.check import check_config_file

    monkeypatch.delenv("CARE_ROBOT_KEY", raising=False)
    monkeypatch.setenv("DESK_SECRET", "a-plain-passphrase-of-some-length")
    path = tmp_path / "config.toml"
    path.write_text(STAFF, encoding="utf-8")
    result = check_config_file(path)
    [issue] = result.issues
    assert (issue.line, issue.key_path) == (line_of(STAFF, 'secret_env = "DESK_SECRET"'), "staff_channels.desk.secret_env")
    assert "DESK_SECRET" in issue.message and "passphrase" not in issue.message
    assert any(w.startswith("staff_channels.care.key_env: environment variable CARE_ROBOT_KEY is not set")
               for w in result.warnings)
    assert not any("DESK_SECRET" in w for w in result.warnings)
