"""Configs that passed ``nurture check`` and then stopped the scheduler (or gave check a
traceback) are refused by check itself: ``file:line: key.path: message``, exit 1, no
traceback. Each case is one of issue #12's findings."""

from __future__ import annotations

import base64
import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from campaigns.audience.compiler import compile_expression
from campaigns.audience.language import MAX_EXPANDED_NODES, MAX_SEGMENT_NESTING, ExpressionError
from campaigns.audience.parser import parse_expression
from campaigns.config.tomlpos import KeyLines
from campaigns.errors import ConfigError
from campaigns.project.loading import parse_config
from campaigns.sending.cron import latest_cron_slot
from campaigns.store.jsonattr import typed_attribute
from workers.cli.main import app

HOOK_ENV = "NURTURE_TEST_HARDENING_HOOK_SECRET"
WHSEC = "whsec_" + base64.b64encode(bytes(range(32))).decode()

BASE = textwrap.dedent(
    """\
    [channels.email]
    kind = "outbox"
    {channels}
    [segments]
    {segments}
    [[campaigns]]
    name = "c"
    purpose = "transactional"
    trigger = {{ cron = "{cron}" }}
    channels = ["email"]
      [campaigns.audience]
      {audience}
      [[campaigns.steps]]
      template = "t/a"
      delay = "{delay}"
    """
)


def config_text(**parts: str) -> str:
    values = {"channels": "", "segments": "", "cron": "0 10 * * *", "audience": "", "delay": "0s", **parts}
    return BASE.format(**values)


def line_with(text: str, marker: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if marker in line)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("NURTURE_CONFIG", "NURTURE_DATABASE_URL", "NURTURE_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NURTURE_SECRET", "an-installation-secret")
    (tmp_path / "templates" / "t").mkdir(parents=True)
    (tmp_path / "templates" / "t" / "a.txt.j2").write_text("Hi\n")
    return tmp_path


def check(text: str) -> tuple[int, str, str]:
    """Run ``nurture check`` on ``text``: (exit code, stderr flattened, stdout)."""
    Path("config.toml").write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["check", "-c", "config.toml"])
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, " ".join(result.stderr.split()), result.stdout


def test_the_base_config_passes(in_tmp):
    code, err, out = check(config_text())
    assert code == 0, err


@pytest.mark.parametrize(
    ("parts", "key", "marker", "words"),
    [
        ({"cron": "0 0 31 2 *"}, "campaigns[0].trigger.cron", "0 0 31 2 *", "never fires"),
        ({"cron": "0 0 30 2 *"}, "campaigns[0].trigger.cron", "0 0 30 2 *", "never fires"),
        ({"cron": "0 0 * * * * 2099"}, "campaigns[0].trigger.cron", "2099", "expected 5 fields"),
        ({"channels": '[rate_limits]\nemail = { limit = 5, per = "0s" }'}, "rate_limits.email.per",
         "limit = 5", "at least 1ms"),
        ({"segments": 'big = "orders_count >= 9223372036854775808"'}, "segments.big", "big =",
         "integer out of range"),
        ({"segments": 'neg = "count_of(\\"x\\") > -9223372036854775809"'}, "segments.neg", "neg =",
         "integer out of range"),
        ({"audience": "attributes = { 'a\"b' = 1 }"}, 'campaigns[0].audience.attributes.a"b', "attributes =",
         "attribute names may hold"),
        ({"audience": "attributes = { 'a\\\\b' = 1 }"}, "campaigns[0].audience.attributes.a\\\\b",
         "attributes =", "attribute names may hold"),
        ({"delay": "99999999999d"}, "campaigns[0].steps[0].delay", "99999999999d", "longer than the maximum"),
        ({"segments": 'old = "days_since_signup >= 1000000"'}, "segments.old", "old =", "counts days"),
        ({"audience": 'where = "did(\\"x\\", within=\\"99999999999d\\")"'}, "campaigns[0].audience.where",
         "where =", "longer than the maximum"),
        ({"audience": "min_orders = 99999999999999999999"}, "campaigns[0].audience.min_orders", "min_orders",
         "less than or equal"),
        ({"audience": "last_order_more_than_days = 1000000"}, "campaigns[0].audience.last_order_more_than_days",
         "last_order_more_than_days", "less than or equal"),
        ({"audience": "min_total_spent = inf"}, "campaigns[0].audience.min_total_spent", "inf", "finite"),
        ({"channels": '[profiles]\ntimezone = "Mars/Base"'}, "profiles.timezone", "Mars/Base", "unknown time zone"),
        ({"channels": '[profiles]\ncron = "0 0 31 2 *"'}, "profiles.cron", '"0 0 31 2 *"', "never fires"),
        ({"channels": "[lifecycle]\nchurned_after = 99999999999"}, "lifecycle.churned_after", "churned_after",
         "less than or equal"),
    ],
)
def test_check_refuses_configs_that_stopped_the_scheduler(in_tmp, parts, key, marker, words):
    text = config_text(**parts)
    code, err, _ = check(text)
    assert code == 1, err
    assert f"config.toml:{line_with(text, marker)}: {key}: " in err, err
    assert words in err, err


def test_segments_inlining_each_other_exponentially_are_refused(in_tmp):
    # Each level uses the one below twice: 2**30 copies of the first condition once inlined.
    levels = ['s0 = "orders_count >= 1"'] + [
        f's{n} = "segment(\\"s{n - 1}\\") or segment(\\"s{n - 1}\\")"' for n in range(1, 31)
    ]
    text = config_text(segments="\n".join(levels), audience='segment = "s30"')
    code, err, _ = check(text)
    assert code == 1
    assert f"config.toml:{line_with(text, 's12 =')}: segments.s12: expression is too large" in err, err
    assert "segments.s5:" not in err  # 2**5 copies are fine


def test_long_chains_of_segments_are_refused(in_tmp):
    levels = ['s0 = "orders_count >= 1"'] + [f's{n} = "segment(\\"s{n - 1}\\")"' for n in range(1, 40)]
    text = config_text(segments="\n".join(levels))
    code, err, _ = check(text)
    assert code == 1
    assert f"segments.s{MAX_SEGMENT_NESTING + 1}: segments use segments more than" in err, err
    assert f"segments.s{MAX_SEGMENT_NESTING}:" not in err


def test_segments_that_inline_each_other_in_a_cycle_are_still_refused(in_tmp):
    text = config_text(segments='a = "segment(\\"b\\")"\nb = "segment(\\"a\\") or has_email"')
    code, err, _ = check(text)
    assert code == 1
    assert "refers to itself" in err


def test_compiling_an_unchecked_exponential_segment_fails_fast_instead_of_eating_memory():
    parsed = {"s0": parse_expression("orders_count >= 1", rfm_names=[], segment_names=[])}
    for n in range(1, 40):
        parsed[f"s{n}"] = parse_expression(f'segment("s{n - 1}") or segment("s{n - 1}")', rfm_names=[],
                                           segment_names=list(parsed))
    with pytest.raises(ExpressionError, match=f"larger than {MAX_EXPANDED_NODES}"):
        compile_expression(parsed["s15"], now=datetime(2026, 1, 1, tzinfo=UTC), segments=parsed)


def test_a_quote_in_an_attribute_name_never_reaches_a_json_path():
    column = sa.table("customer", sa.column("attributes", sa.JSON)).c.attributes
    with pytest.raises(ValueError, match="double quote"):
        typed_attribute(column, 'a"b', "int")


def test_a_cron_that_never_fires_has_no_slot_instead_of_raising():
    assert latest_cron_slot("0 0 31 2 *", ZoneInfo("UTC"), datetime(2026, 3, 1, tzinfo=UTC)) is None
    assert latest_cron_slot("0 10 * * *", ZoneInfo("UTC"), datetime(2026, 3, 1, 11, tzinfo=UTC)) == datetime(
        2026, 3, 1, 10, tzinfo=UTC)


# -- the document's shape, before tomllib ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        # 100 KB with one 50,000-part dotted key: tomllib took a minute and 15 GB.
        ("[broker]\nqueue = \"q\"\n" + "a" + ".a" * 50_000 + " = 1\n", 3, "more than 32 parts"),
        ("[" + ".".join(["t"] * 50_000) + "]\n", 1, "more than 32 parts"),
        # 100,000 nested '[' ended in RecursionError.
        ("x = " + "[" * 100_000 + "]" * 100_000 + "\n", 1, "nested more than 32 levels"),
        ("\n\nx = " + "{a=" * 5_000 + "1" + "}" * 5_000 + "\n", 3, "nested more than 32 levels"),
    ],
)
def test_check_refuses_documents_too_deep_for_tomllib(in_tmp, text, line, words):
    code, err, _ = check(text)
    assert code == 1
    assert f"config.toml:{line}: {words}" in err or (f"config.toml:{line}:" in err and words in err), err


def test_brackets_and_dots_inside_strings_and_comments_do_not_count(in_tmp):
    text = config_text(
        segments='deep = "has_email # ' + "[" * 40 + '"\n# ' + "." * 40 + " " + "{" * 40,
        channels='[channels.other]\nkind = "outbox"\ndir = """' + "a." * 40 + "[" * 40 + '"""',
    )
    code, err, _ = check(text)
    assert code == 0, err


def test_a_huge_file_is_refused_without_reading_it_as_toml(in_tmp):
    code, err, _ = check("# " + "x" * 1_100_000 + "\n")
    assert code == 1
    assert "larger than 1,000,000 characters" in err


def test_key_lines_reset_nested_array_counts_under_a_new_parent():
    text = "[[a]]\n[[a.b]]\n[[a.b]]\n[[a]]\n[[a.b]]\n[[c]]\n[[a.b]]\n"
    lines = KeyLines(text)
    assert lines.line_of(("a", 0, "b", 1)) == 3
    assert lines.line_of(("a", 1, "b", 0)) == 5
    assert lines.line_of(("a", 1, "b", 1)) == 7


# -- webhook secrets -------------------------------------------------------------------------


def hook_config(secret_env: str | None) -> str:
    line = f'secret_env = "{secret_env}"\n' if secret_env is not None else ""
    return config_text(channels=f'[channels.hook]\nkind = "webhook"\nurl = "https://example.com/h"\n{line}')


def test_a_webhook_without_secret_env_is_an_error(in_tmp):
    text = hook_config(None)
    code, err, _ = check(text)
    assert code == 1
    assert f"config.toml:{line_with(text, '[channels.hook]')}: channels.hook: webhook requests are always signed" in err
    assert "whsec_" in err and "secrets.token_bytes(32)" in err  # says how to make one


@pytest.mark.parametrize("value", [None, ""])
def test_a_webhook_whose_secret_variable_is_unset_or_empty_is_an_error(in_tmp, monkeypatch, value):
    if value is None:
        monkeypatch.delenv(HOOK_ENV, raising=False)
    else:
        monkeypatch.setenv(HOOK_ENV, value)
    text = hook_config(HOOK_ENV)
    code, err, _ = check(text)
    assert code == 1
    assert f"config.toml:{line_with(text, 'secret_env')}: channels.hook.secret_env: environment variable {HOOK_ENV} is not set" in err


def test_a_plain_webhook_secret_is_an_error_that_never_shows_it(in_tmp, monkeypatch):
    secret = "my-plain-passphrase-7f3a9c"
    monkeypatch.setenv(HOOK_ENV, secret)
    code, err, out = check(hook_config(HOOK_ENV))
    assert code == 1
    assert "channels.hook.secret_env:" in err and "whsec_" in err
    assert secret not in err + out


def test_a_whsec_webhook_secret_passes(in_tmp, monkeypatch):
    monkeypatch.setenv(HOOK_ENV, WHSEC)
    code, err, _ = check(hook_config(HOOK_ENV))
    assert code == 0, err


@pytest.mark.parametrize(
    ("channels", "key"),
    [
        ('[channels.hook]\nkind = "webhook"\nurl = "https://example.com/h"\nsecret_env = "{value}"\n',
         "channels.hook.secret_env"),
        ('[api]\nkey_env = "{value}"\n', "api.key_env"),
        ('[channels.ali]\nkind = "aliyun_sms"\nsign_name = "S"\ntemplate_code = "SMS_1"\naccess_key_id_env = "ALI_ID"\n'
         'access_key_secret_env = "{value}"\n', "channels.ali.access_key_secret_env"),
    ],
)
@pytest.mark.parametrize("value", [WHSEC, "sk_live_51H8abcdEFGhijkLMNopq", "a1b2c3d4e5f6a7b8c9d0e1f2a3b4"])
def test_a_secret_pasted_into_an_env_key_is_refused_and_never_printed(in_tmp, monkeypatch, channels, key, value):
    text = config_text(channels=channels.format(value=value))
    for as_json in (False, True):
        Path("config.toml").write_text(text, encoding="utf-8")
        result = CliRunner().invoke(app, ["check", "-c", "config.toml", *(["--json"] if as_json else [])])
        output = result.stdout + result.stderr
        assert result.exit_code == 1
        assert "Traceback" not in output
        assert value not in output
        for fragment in (value[6:18], value[-10:]):  # nor any recognisable piece of it
            assert fragment not in output
        if as_json:
            errors = {error["key"]: error for error in json.loads(result.stdout)["errors"]}
            assert "looks like a secret" in errors[key]["message"]
            assert errors[key]["line"] == line_with(text, value)
        else:
            assert f"config.toml:{line_with(text, value)}: {key}: " in " ".join(result.stderr.split())


def test_ordinary_variable_names_are_not_mistaken_for_secrets(in_tmp):
    config = parse_config(config_text(channels='[api]\nkey_env = "ACME_NURTURE_API_KEY_2024"\n'
                                      '[channels.h]\nkind = "webhook"\nurl = "https://e.com"\n'
                                      'secret_env = "hook_secret"\n'), base=in_tmp)
    assert config.api.key_env == "ACME_NURTURE_API_KEY_2024"


def test_parse_config_reports_every_finding_as_a_config_error_not_an_exception(in_tmp):
    # The library entry point, not just the CLI: each bad value is a ConfigError.
    for parts in ({"delay": "99999999999d"}, {"segments": 'a = "days_since_signup >= 1000000"'},
                  {"cron": "0 0 31 2 *"}):
        with pytest.raises(ConfigError):
            parse_config(config_text(**parts), base=in_tmp)
