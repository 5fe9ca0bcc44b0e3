"""Named segments and the check of a config's audience expressions
(campaigns.audience.segments): cycles, and every expression located by key path and line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from campaigns.audience.compiler import compile_expression
from campaigns.audience.language import ExpressionError
from campaigns.audience.segments import validate_segments
from campaigns.config.schema import AppConfig
from campaigns.errors import ConfigError
from campaigns.project.loading import parse_config
from tests.campaigns.audience.test_parser import parse
from tests.conftest import line_of

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "segments",
    [
        {"a": 'segment("b") or has_email', "b": 'segment("a")'},
        {"a": 'has_email and segment("a")'},
        {"a": 'segment("b")', "b": 'segment("c")', "c": 'stage == "new" or segment("a")'},
    ],
)
def test_segment_cycles_are_errors_when_compiling_and_validating(segments):
    parsed = {name: parse(body, segments) for name, body in segments.items()}
    with pytest.raises(ExpressionError, match="refers to itself"):
        compile_expression(parsed["a"], now=NOW, segments=parsed)
    issues = list(validate_segments({"segments": segments}))
    assert issues and all(path[0] == "segments" and "refers to itself" in message for path, message in issues)


def test_an_acyclic_chain_of_segments_is_fine():
    segments = {"a": 'segment("b") and segment("c")', "b": 'segment("c")', "c": "has_email"}
    assert list(validate_segments({"segments": segments})) == []


# ---------------------------------------------------------------------------------------
# Config


def base_dir(tmp_path: Path) -> Path:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "t.txt.j2").write_text("hi")
    return tmp_path


def config_text(audience: str, *, extra: str = "", trigger: str = '{ cron = "0 10 * * *" }') -> str:
    return f"""
[channels.mail]
kind = "outbox"
recipient = "email"
[channels.text]
kind = "outbox"
recipient = "phone"
{extra}
[[campaigns]]
name = "c"
trigger = {trigger}
channels = ["mail", "text"]
[campaigns.audience]
{audience}
[[campaigns.steps]]
template = "t"
"""


def issues_of(text: str, tmp_path: Path) -> list:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, base=base_dir(tmp_path))
    return caught.value.issues


def test_a_bad_where_is_reported_at_its_line_and_key_path(tmp_path):
    text = config_text("min_orders = 1\nwhere = 'stagee == \"active\"'")
    issues = issues_of(text, tmp_path)
    assert [(i.line, i.key_path, i.message) for i in issues] == [
        (line_of(text, "where ="), "campaigns[0].audience.where",
         "unknown field 'stagee' at column 1 (did you mean 'stage'?)"),
    ]


def test_segments_audience_segment_and_segment_entered_are_checked(tmp_path):
    extra = """
[segments]
lapsing = 'stage == "at_risk"'
broken = 'orders_count >= "two"'
"""
    text = config_text('segment = "lapsng"', extra=extra, trigger='{ segment_entered = "champs" }')
    issues = {(i.key_path, i.line): i.message for i in issues_of(text, tmp_path)}
    assert issues == {
        ("segments.broken", line_of(text, "broken =")):
            'orders_count is a number: compare it with a number, not "two" at column 17',
        ("campaigns[0].audience.segment", line_of(text, "segment = ")):
            "unknown segment 'lapsng' (did you mean 'lapsing'?)",
        ("campaigns[0].trigger.segment_entered", line_of(text, "trigger =")):
            "unknown RFM segment 'champs' (did you mean 'champions'?)",
    }


def test_segment_entered_follows_a_custom_rfm_table(tmp_path):
    extra = """
[[rfm.segments]]
name = "whales"
m = [5, 5]
[[rfm.segments]]
name = "everyone_else"
"""
    assert parse_config(config_text("", extra=extra, trigger='{ segment_entered = "whales" }'), base=base_dir(tmp_path))
    issues = issues_of(config_text("", extra=extra, trigger='{ segment_entered = "champions" }'), tmp_path)
    assert [(i.key_path, i.message) for i in issues] == [
        ("campaigns[0].trigger.segment_entered", "unknown RFM segment 'champions' (known: everyone_else, whales)"),
    ]


def test_expressions_are_checked_even_when_other_keys_are_invalid(tmp_path):
    text = config_text("where = 'stage == \"activ\"'\nmin_orders = -1", extra='[broker]\nurl = "ftp://x"')
    paths = {i.key_path for i in issues_of(text, tmp_path)}
    assert {"broker.url", "campaigns[0].audience.min_orders", "campaigns[0].audience.where"} <= paths


@pytest.mark.parametrize(
    "raw",
    [
        {"segments": 5, "campaigns": "x", "rfm": []},
        {"segments": {"a": 5, "b": ["x"], 3: "has_email"}, "rfm": {"segments": "x"}},
        {"campaigns": [5, {"audience": 3, "trigger": "x"}, {"audience": {"where": 4, "segment": []},
                                                            "trigger": {"segment_entered": 7}}]},
        {"rfm": {"segments": [5, {"name": 3}]}, "campaigns": [{"audience": {"where": 'rfm_segment == "x"'}}]},
    ],
)
def test_garbage_types_do_not_crash_validation(raw):
    issues = list(validate_segments(raw))
    assert all(isinstance(path, tuple) and isinstance(message, str) for path, message in issues)


def test_validate_segments_accepts_an_app_config():
    config = AppConfig.model_validate({"segments": {"a": 'stage == "new"', "b": 'segment("a") and has_email'}})
    assert list(validate_segments(config)) == []
