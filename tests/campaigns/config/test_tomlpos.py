"""Tests for campaigns.config.tomlpos.KeyLines: the line of each key path in a TOML document."""

from __future__ import annotations

import textwrap
import tomllib

import pytest

from campaigns.config.tomlpos import KeyLines
from tests.conftest import line_of

DOC = textwrap.dedent(
    """\
    # a comment with [brackets] and a fake header below
    # [broker]

    [database]
    url = "sqlite:///var/nurture.db"     # comment

    [channels.email]
    kind = "outbox"
    headers = { "X-Tag" = "a", other = "[not a table]" }

    [channels."quoted name"]
    kind = "webhook"

    [[campaigns]]
    name = "first"
    description = \"\"\"
    [[campaigns]]
    [channels.fake]
    name = "fake"
    \"\"\"
    trigger = { cron = "0 10 * * *" }
    channels = [
      "email",
      "sms",          # trailing comment
    ]
    after_array = 1

      [campaigns.audience]
      min_orders = 1

      [[campaigns.steps]]
      template = "first/a"

      [[campaigns.steps]]
      template = "first/b"

    [[campaigns]]
    name = "second"
    notes = '''
    [scheduler]
    interval = "1s"
    '''
    trigger = { cron = "0 9 * * MON" }
    channels = ["email"]  # pick one
    audience.min_orders = 5
    audience.max_orders = 9

      [[campaigns.steps]]
      template = "second/a"

      [[campaigns.steps]]
      template = "second/b"
      delay = "2d"

    [[campaigns]]
    name = "third"

      [[campaigns.steps]]
      template = "third/a"
    """
)


def test_doc_is_valid_toml_with_what_the_test_expects() -> None:
    data = tomllib.loads(DOC)
    assert [c["name"] for c in data["campaigns"]] == ["first", "second", "third"]
    assert data["campaigns"][0]["channels"] == ["email", "sms"]
    assert "broker" not in data and "scheduler" not in data
    assert set(data["channels"]) == {"email", "quoted name"}


def test_plain_tables_and_keys() -> None:
    lines = KeyLines(DOC)
    assert lines.line_of(("database",)) == line_of(DOC, "[database]")
    assert lines.line_of(("database", "url")) == line_of(DOC, "url = ")
    assert lines.line_of(("channels", "email")) == line_of(DOC, "[channels.email]")
    assert lines.line_of(("channels", "email", "kind")) == line_of(DOC, 'kind = "outbox"')


def test_quoted_table_name() -> None:
    lines = KeyLines(DOC)
    assert lines.line_of(("channels", "quoted name", "kind")) == line_of(DOC, 'kind = "webhook"')


def test_fake_headers_in_comments_are_ignored() -> None:
    lines = KeyLines(DOC)
    assert lines.line_of(("broker",)) is None


def test_inline_table_keys_report_the_parent_line() -> None:
    lines = KeyLines(DOC)
    headers = line_of(DOC, "headers = {")
    assert lines.line_of(("channels", "email", "headers")) == headers
    assert lines.line_of(("channels", "email", "headers", "other")) == headers
    trigger = line_of(DOC, 'cron = "0 10')
    assert lines.line_of(("campaigns", 0, "trigger", "cron")) == trigger


def test_arrays_of_tables_are_indexed() -> None:
    lines = KeyLines(DOC)
    assert lines.line_of(("campaigns", 0)) == line_of(DOC, "[[campaigns]]", 1)
    assert lines.line_of(("campaigns", 1)) == line_of(DOC, "[[campaigns]]", 3)  # 2nd is in a string
    assert lines.line_of(("campaigns", 2)) == line_of(DOC, "[[campaigns]]", 4)
    assert lines.line_of(("campaigns", 0, "name")) == line_of(DOC, 'name = "first"')
    assert lines.line_of(("campaigns", 1, "name")) == line_of(DOC, 'name = "second"')
    assert lines.line_of(("campaigns", 2, "name")) == line_of(DOC, 'name = "third"')


def test_multiline_strings_hide_fake_headers_and_keys() -> None:
    lines = KeyLines(DOC)
    assert lines.line_of(("campaigns", 0, "description")) == line_of(DOC, 'description = """')
    assert lines.line_of(("channels", "fake")) is None  # no [channels] header either
    assert lines.line_of(("channels", "fake", "kind")) is None
    assert lines.line_of(("scheduler",)) is None
    assert lines.line_of(("scheduler", "interval")) is None
    assert lines.line_of(("campaigns", 1, "notes")) == line_of(DOC, "notes = '''")
    # The key after the string is found on its own line, not swallowed.
    assert lines.line_of(("campaigns", 1, "trigger")) == line_of(DOC, 'cron = "0 9')


def test_multiline_arrays_do_not_swallow_what_follows() -> None:
    lines = KeyLines(DOC)
    assert lines.line_of(("campaigns", 0, "channels")) == line_of(DOC, "channels = [")
    assert lines.line_of(("campaigns", 0, "channels", 1)) == line_of(DOC, "channels = [")
    assert lines.line_of(("campaigns", 0, "after_array")) == line_of(DOC, "after_array")
    assert lines.line_of(("campaigns", 0, "audience", "min_orders")) == line_of(DOC, "min_orders = 1")


BRACKETS = textwrap.dedent(
    """\
    [database]
    url = "sqlite:///x.db"   # see [docs
    echo = false

    [[campaigns]]
    name = "a"
    channels = ["email"]     # pick [one
    reentry = "never"
    tags = [
      "vip [gold",           # a ] and a [ in a comment
      "x\\"[y",
    ]
    enabled = true
    description = \"\"\"Buy [now
    and save\"\"\"
    purpose = "marketing"

      [[campaigns.steps]]
      template = "a/b"
    """
)


def test_brackets_doc_is_valid_toml() -> None:
    data = tomllib.loads(BRACKETS)
    assert data["campaigns"][0]["tags"] == ["vip [gold", 'x"[y']
    assert data["campaigns"][0]["description"] == "Buy [now\nand save"


@pytest.mark.parametrize(
    ("path", "marker"),
    [
        (("database", "echo"), "echo = false"),  # after a comment with "["
        (("campaigns", 0, "reentry"), "reentry"),  # after a one-line array with "[" in a comment
        (("campaigns", 0, "enabled"), "enabled = true"),  # after a multi-line array with "[" in strings
        (("campaigns", 0, "purpose"), "purpose"),  # after a multi-line string with "["
        (("campaigns", 0, "steps", 0, "template"), '"a/b"'),
    ],
)
def test_brackets_in_strings_and_comments_do_not_open_arrays(path: tuple[str | int, ...], marker: str) -> None:
    assert KeyLines(BRACKETS).line_of(path) == line_of(BRACKETS, marker)


def test_dotted_keys() -> None:
    lines = KeyLines(DOC)
    assert lines.line_of(("campaigns", 1, "audience", "min_orders")) == line_of(DOC, "audience.min_orders")


def test_nested_arrays_of_tables_restart_under_each_parent() -> None:
    lines = KeyLines(DOC)
    assert lines.line_of(("campaigns", 0, "steps", 0)) == line_of(DOC, "[[campaigns.steps]]", 1)
    assert lines.line_of(("campaigns", 0, "steps", 1, "template")) == line_of(DOC, '"first/b"')
    assert lines.line_of(("campaigns", 1, "steps", 0)) == line_of(DOC, "[[campaigns.steps]]", 3)
    assert lines.line_of(("campaigns", 1, "steps", 0, "template")) == line_of(DOC, '"second/a"')
    assert lines.line_of(("campaigns", 1, "steps", 1, "template")) == line_of(DOC, '"second/b"')
    assert lines.line_of(("campaigns", 1, "steps", 1, "delay")) == line_of(DOC, 'delay = "2d"')
    assert lines.line_of(("campaigns", 2, "steps", 0, "template")) == line_of(DOC, '"third/a"')
    # campaigns[2] has one step only: steps[1] is not in the file, nor is a bare "steps"
    # key, so the nearest ancestor is the [[campaigns]] header.
    assert lines.line_of(("campaigns", 2, "steps", 1, "template")) == line_of(DOC, "[[campaigns]]", 4)


def test_sub_table_after_nth_array_entry() -> None:
    lines = KeyLines(DOC)
    assert lines.line_of(("campaigns", 0, "audience")) == line_of(DOC, "[campaigns.audience]", 1)
    assert lines.line_of(("campaigns", 1, "audience", "max_orders")) == line_of(DOC, "audience.max_orders")


def test_unknown_paths_fall_back_to_the_nearest_ancestor() -> None:
    lines = KeyLines(DOC)
    assert lines.line_of(("campaigns", 0, "nope", "deeper")) == line_of(DOC, "[[campaigns]]", 1)
    assert lines.line_of(("nothing",)) is None
    assert lines.line_of(()) is None


def test_header_with_trailing_comment_and_spaces() -> None:
    text = "[ worker ]   # the workers\nthreads = 3\n[[ campaigns ]] # one\nname = 'x'\n"
    lines = KeyLines(text)
    assert lines.line_of(("worker", "threads")) == 2
    assert lines.line_of(("campaigns", 0, "name")) == 4
