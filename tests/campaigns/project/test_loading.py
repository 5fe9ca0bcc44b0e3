"""Tests for campaigns.project.loading: config.toml validated against the schema and
cross-checked, every problem reported at once, located by line and key path."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from campaigns.config.channels import OutboxChannelConfig, WebhookChannelConfig
from campaigns.config.runtime import BROKER_URL_ENV, DATABASE_URL_ENV
from campaigns.errors import ConfigError, ConfigIssue
from campaigns.project.check import check_config_file
from campaigns.project.loading import format_location, load_config, parse_config
from tests.conftest import line_of

REPO_ROOT = Path(__file__).resolve().parents[3]


def make_templates(root: Path, *names: str) -> Path:
    """Create ``<root>/templates/<name>.txt.j2`` for each name; returns the templates folder."""
    folder = root / "templates"
    for name in names:
        path = folder / f"{name}.txt.j2"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("Hi {{ customer.first_name }}\n", encoding="utf-8")
    return folder


def write_config(root: Path, text: str) -> Path:
    path = root / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


VALID = textwrap.dedent(
    """\
    [database]
    url = "sqlite:///var/nurture.db"

    [channels.email]
    kind = "outbox"
    dir = "var/outbox"

    [[campaigns]]
    name = "welcome"
    timezone = "Asia/Shanghai"
    trigger = { cron = "0 10 * * *" }
    channels = ["email"]

      [[campaigns.steps]]
      template = "welcome/hello"
    """
)


BROKEN = textwrap.dedent(
    """\
    [channels.email]
    kind = "outbox"

    [channels.hook]
    kind = "webhook"
    url = "https://example.com/hook"
    secret = "x"                          # inline secret: must be rejected

    [[campaigns]]
    name = "first"
    timezone = "Mars/Olympus"             # bad timezone
    trigger = { cron = "61 * * *" }       # bad cron
    channels = ["email", "fax"]           # unknown channel
    colour = "red"                        # unknown key

      [[campaigns.steps]]
      template = "t/ok"

    [[campaigns]]
    name = "second"
    trigger = { cron = "not a cron" }     # bad cron in the second campaign
    channels = ["email"]

      [[campaigns.steps]]
      template = "t/ok"

      [[campaigns.steps]]
      template = "t/missing"              # missing template

    [[campaigns]]
    name = "first"                        # duplicate name
    trigger = { cron = "0 10 * * *" }
    channels = ["email"]

      [[campaigns.steps]]
      template = "t/ok"
    """
)


def _by_key(issues: list[ConfigIssue]) -> dict[str, ConfigIssue]:
    by_key: dict[str, ConfigIssue] = {}
    for issue in issues:
        assert issue.key_path not in by_key, f"two issues for {issue.key_path}: {issues}"
        by_key[issue.key_path] = issue
    return by_key


def test_every_error_is_reported_at_once_with_lines_and_key_paths(tmp_path: Path) -> None:
    make_templates(tmp_path, "t/ok")
    path = write_config(tmp_path, BROKEN)

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    issues = caught.value.issues
    assert all(issue.file == str(path) for issue in issues)
    by_key = _by_key(issues)
    expected = {
        "channels.hook.secret": (line_of(BROKEN, 'secret = "x"'), "unknown key"),
        "campaigns[0].timezone": (line_of(BROKEN, "Mars/Olympus"), "Mars/Olympus"),
        "campaigns[0].trigger.cron": (line_of(BROKEN, "61 * * *"), "invalid cron"),
        "campaigns[0].channels[1]": (line_of(BROKEN, '"fax"'), "unknown channel 'fax'"),
        "campaigns[0].colour": (line_of(BROKEN, "colour ="), "unknown key"),
        "campaigns[1].trigger.cron": (line_of(BROKEN, "not a cron"), "invalid cron"),
        "campaigns[1].steps[1].template": (line_of(BROKEN, "t/missing"), "not found"),
        "campaigns[2].name": (line_of(BROKEN, "# duplicate name"), "duplicate campaign name 'first'"),
    }
    assert set(by_key) == set(expected), issues
    for key, (line, fragment) in expected.items():
        assert by_key[key].line == line, (key, by_key[key])
        assert fragment in by_key[key].message, (key, by_key[key])
    # The exception text lists every issue, one per line, as file:line: key: message.
    text = str(caught.value)
    for key, (line, _) in expected.items():
        assert f"{path}:{line}: {key}:" in text


def test_issues_are_sorted_by_line(tmp_path: Path) -> None:
    make_templates(tmp_path, "t/ok")
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, BROKEN))
    lines = [issue.line or 0 for issue in caught.value.issues]
    assert lines == sorted(lines)


def test_inline_secret_on_webhook_is_an_unknown_key() -> None:
    text = textwrap.dedent(
        """\
        [channels.hook]
        kind = "webhook"
        url = "https://example.com/hook"
        secret = "s3cr3t"
        """
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    [issue] = caught.value.issues
    assert issue.key_path == "channels.hook.secret"
    assert issue.line == line_of(text, "secret =")
    assert issue.message.startswith("unknown key; secrets are never written in the file")
    assert "secret_env" in issue.message
    # The secret's value must never be echoed back.
    assert "s3cr3t" not in str(caught.value)


def test_webhook_secret_env_is_accepted_and_names_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    config = parse_config(
        '[channels.hook]\nkind = "webhook"\nurl = "https://example.com/h"\nsecret_env = "HOOK_SECRET"\n'
    )
    hook = config.channels["hook"]
    assert isinstance(hook, WebhookChannelConfig)
    assert hook.secret_env == "HOOK_SECRET"


def test_unknown_channel_kind_is_located_at_that_channel() -> None:
    text = textwrap.dedent(
        """\
        [channels.email]
        kind = "outbox"

        [channels.pager]
        kind = "pigeon"
        """
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    [issue] = caught.value.issues
    assert issue.key_path.startswith("channels.pager"), issue
    assert issue.line in {line_of(text, "[channels.pager]"), line_of(text, '"pigeon"')}, issue
    assert "pigeon" in issue.message


def test_invalid_field_of_a_union_channel_drops_the_tag_from_the_key_path() -> None:
    text = '[channels.hook]\nkind = "webhook"\nurl = "ftp://example.com"\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    [issue] = caught.value.issues
    assert issue.key_path == "channels.hook.url"
    assert issue.line == 3
    assert "http://" in issue.message


def test_missing_required_key_is_located_at_its_table() -> None:
    text = textwrap.dedent(
        """\
        [channels.email]
        kind = "outbox"

        [[campaigns]]
        name = "no_trigger"
        channels = ["email"]
        """
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    by_key = _by_key(caught.value.issues)
    assert by_key["campaigns[0].trigger"].message == "required key is missing"
    assert by_key["campaigns[0].trigger"].line == line_of(text, "[[campaigns]]")
    assert by_key["campaigns[0].steps"].message == "required key is missing"


@pytest.mark.parametrize(
    ("text", "marker"),
    [
        ('[broker]\nurl = "stub://"\nbatch_size = = 3\n', "batch_size"),
        ('[scheduler]\ninterval = "30s"\n\n[scheduler]\nmax_lateness = "1d"\n', "max_lateness"),
        ('[database]\nurl = "sqlite:///x.db\n', "url ="),
    ],
)
def test_toml_syntax_error_reports_its_line(text: str, marker: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="conf.toml")
    [issue] = caught.value.issues
    assert issue.message.startswith("TOML syntax error")
    assert issue.file == "conf.toml"
    expected = line_of(text, marker) if marker != "max_lateness" else line_of(text, "[scheduler]", 2)
    assert issue.line == expected
    assert str(issue).startswith(f"conf.toml:{expected}:")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "config.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    [issue] = caught.value.issues
    assert issue.message == "file not found"
    assert issue.file == str(missing)
    assert issue.line is None


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv(BROKER_URL_ENV, raising=False)
    project = tmp_path / "project"
    project.mkdir()
    make_templates(project, "welcome/hello")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    config = load_config(write_config(project, VALID))

    base = project.resolve()
    assert config.templates.dir == base / "templates"
    assert config.database.url == f"sqlite:///{base / 'var' / 'nurture.db'}"
    email = config.channels["email"]
    assert isinstance(email, OutboxChannelConfig)
    assert email.dir == base / "var" / "outbox"
    assert config.source == base / "config.toml"


def test_relative_template_dir_is_checked_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The template exists beside the config but not beside the working directory.
    project = tmp_path / "project"
    project.mkdir()
    make_templates(project, "welcome/hello")
    monkeypatch.chdir(tmp_path)
    load_config(write_config(project, VALID))  # no "template not found"


def test_absolute_sqlite_and_memory_urls_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    make_templates(tmp_path, "welcome/hello")
    absolute = f"sqlite:///{tmp_path / 'abs.db'}"
    config = load_config(write_config(tmp_path, VALID.replace("sqlite:///var/nurture.db", absolute)))
    assert config.database.url == absolute
    config = load_config(write_config(tmp_path, VALID.replace("sqlite:///var/nurture.db", "sqlite:///:memory:")))
    assert config.database.url == "sqlite:///:memory:"


def test_env_overrides_database_and_broker_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_templates(tmp_path, "welcome/hello")
    path = write_config(tmp_path, VALID)
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv(BROKER_URL_ENV, raising=False)
    plain = load_config(path)
    assert plain.broker.url == "stub://"
    assert plain.database.url.startswith("sqlite:///")

    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql://user@db.example/nurture")
    monkeypatch.setenv(BROKER_URL_ENV, "redis://127.0.0.1:6379/5")
    overridden = load_config(path)
    assert overridden.database.url == "postgresql://user@db.example/nurture"
    assert overridden.broker.url == "redis://127.0.0.1:6379/5"
    # Other broker settings come from the file / defaults, untouched.
    assert overridden.broker.queue == plain.broker.queue


def test_empty_env_override_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_templates(tmp_path, "welcome/hello")
    monkeypatch.setenv(DATABASE_URL_ENV, "")
    monkeypatch.setenv(BROKER_URL_ENV, "")
    config = load_config(write_config(tmp_path, VALID))
    assert config.broker.url == "stub://"
    assert config.database.url == f"sqlite:///{tmp_path.resolve() / 'var' / 'nurture.db'}"


def test_durations_in_config() -> None:
    config = parse_config('[scheduler]\ninterval = "1d12h"\nmax_lateness = 3600\n')
    assert config.scheduler.interval == timedelta(days=1, hours=12)
    assert config.scheduler.max_lateness == timedelta(hours=1)


def test_bad_duration_in_config_is_located() -> None:
    text = '[worker]\nthreads = 4\nlease = "2x"\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    [issue] = caught.value.issues
    assert issue.key_path == "worker.lease"
    assert issue.line == 3
    assert "invalid duration '2x'" in issue.message


def test_repo_config_loads_and_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv(BROKER_URL_ENV, raising=False)
    monkeypatch.chdir(REPO_ROOT)
    config = load_config("config.toml")
    assert config.campaigns, "the repo config defines campaigns"
    assert config.templates.dir == REPO_ROOT / "templates"

    result = check_config_file("config.toml")
    assert result.ok, result.issues
    assert result.issues == []
    assert result.templates_rendered == sum(len(step.templates) for c in config.campaigns for step in c.steps)


def test_a_bad_broker_url_in_the_environment_is_a_config_error_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_templates(tmp_path, "welcome/hello")
    monkeypatch.setenv(BROKER_URL_ENV, "amqp://guest@localhost")
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, VALID))
    assert caught.value.issues[0].file == BROKER_URL_ENV
    assert "stub://" in caught.value.issues[0].message


def test_a_relative_sqlite_path_in_the_environment_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_templates(tmp_path, "welcome/hello")
    path = write_config(tmp_path, VALID)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv(DATABASE_URL_ENV, "sqlite:///run.db")
    assert load_config(path).database.url == f"sqlite:///{elsewhere / 'run.db'}"


def test_a_marketing_campaign_on_a_wechat_template_channel_is_refused(tmp_path: Path) -> None:
    make_templates(tmp_path, "welcome/hello")
    text = textwrap.dedent("""\
        [channels.oa]
        kind = "wechat_oa"
        appid = "wx1"
        secret_env = "OA_SECRET"
        template_id = "t1"

        [[campaigns]]
        name = "promo"
        trigger = { cron = "0 10 * * *" }
        channels = ["oa"]
          [[campaigns.steps]]
          template = "welcome/hello"

        [[campaigns]]
        name = "order_shipped"
        purpose = "transactional"
        trigger = { event = "shipped" }
        channels = ["oa"]
          [[campaigns.steps]]
          template = "welcome/hello"
        """)
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, text))
    [issue] = caught.value.issues
    assert issue.key_path == "campaigns[0].channels[0]" and "service notices only" in issue.message
    assert issue.line == line_of(text, 'channels = ["oa"]')


def test_a_key_path_is_written_as_in_the_file() -> None:
    assert format_location(("campaigns", 0, "steps", 1, "template")) == "campaigns[0].steps[1].template"
    assert format_location(("channels", "email")) == "channels.email"
