"""The README (English and Chinese) and docs/ stay true (issue #14: the trial found the README's
``check`` output three campaigns behind, a tour snippet using a channel it never defines, and
a link to a file outside the repository).

* ``nurture check`` on the repository's config.toml prints the counts both READMEs show;
* every TOML snippet in them defines the channels its campaigns use;
* every relative link in README*.md and docs/*.md points at a file inside the repository;
* each README links to the other, and every ``nurture`` command the Chinese one shows exists,
  with every option it uses.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from workers.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", ROOT / "README.zh-CN.md"]
DOCS = [*READMES, *sorted((ROOT / "docs").glob("*.md"))]
SUMMARY = re.compile(r"✓ config\.toml: (\d+) campaign\(s\), (\d+) channel\(s\), (\d+) template\(s\)")


def fenced(path: Path, language: str) -> list[str]:
    """The bodies of the ``` fenced blocks of ``language`` in ``path``."""
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.M | re.S)


@pytest.fixture
def repository_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("NURTURE_DATABASE_URL", "NURTURE_BROKER_URL", "NURTURE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    monkeypatch.chdir(tmp_path)  # the summary names the file as given: config.toml, as in the READMEs
    return Path("config.toml")


def test_the_readmes_show_the_counts_nurture_check_prints_for_config_toml(repository_project):
    result = CliRunner().invoke(app, ["check", "-c", str(repository_project)])
    assert result.exit_code == 0, result.output
    [printed] = SUMMARY.findall(result.output)

    for readme in READMES:
        assert SUMMARY.findall(readme.read_text(encoding="utf-8")) == [printed], readme.name


@pytest.mark.parametrize("readme", READMES, ids=lambda path: path.name)
def test_every_toml_snippet_defines_the_channels_its_campaigns_use(readme):
    checked = 0
    for body in fenced(readme, "toml"):
        data = tomllib.loads(body)
        if "channels" not in data:  # a campaign alone, channels defined elsewhere
            continue
        for campaign in data.get("campaigns", []):
            assert set(campaign.get("channels", [])) <= set(data["channels"]), (readme.name, campaign["name"])
            checked += 1
    assert checked, f"no snippet of {readme.name} defines channels and a campaign"


@pytest.mark.parametrize("document", DOCS, ids=lambda path: path.name)
def test_relative_links_point_inside_the_repository(document):
    text = document.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    targets += re.findall(r"`(\.\./[^`\s]+)`", text)  # a path in code, e.g. `../shared/X.md`
    for target in targets:
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (document.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT) and path.exists(), f"{document.name}: {target}"


def test_each_readme_links_to_the_other():
    english, chinese = (path.read_text(encoding="utf-8") for path in READMES)
    assert "](README.zh-CN.md)" in english and "](README.md)" in chinese


def commands() -> dict[str, click.Command]:
    """Every ``nurture`` command, by its words (``report campaign`` for a subcommand)."""
    found: dict[str, click.Command] = {}

    def walk(prefix: str, command: click.Command) -> None:
        found[prefix] = command
        for name, sub in getattr(command, "commands", {}).items():  # a group's subcommands
            walk(f"{prefix} {name}".strip(), sub)

    walk("", typer.main.get_command(app))
    return found


def test_every_command_and_option_the_chinese_readme_shows_exists():
    known = commands()
    shown = 0
    for body in fenced(ROOT / "README.zh-CN.md", "sh") + fenced(ROOT / "README.zh-CN.md", "console"):
        for line in body.splitlines():
            words = line.split("#")[0].replace("[", " ").replace("]", " ").split()
            if "nurture" not in words and not any(w.endswith("/nurture") for w in words):
                continue
            start = next(i for i, w in enumerate(words) if w == "nurture" or w.endswith("/nurture")) + 1
            name = " ".join(words[start:start + 2]) if " ".join(words[start:start + 2]) in known else words[start]
            assert name in known, line
            options = {opt for param in known[name].params for opt in getattr(param, "opts", [])}
            for word in words[start:]:
                if word.startswith("-"):
                    assert word.split("=")[0] in options, f"{line}: {word}"
            shown += 1
    assert shown >= 20


def test_operations_lists_every_server_limit_with_its_key():
    """Issue #12's done-when: docs/operations.md lists the server's limits. Every limit
    ``nurture serve`` enforces from ``[api]`` must be in its table, by key."""
    from campaigns.config.runtime import ApiConfig
    from workers.http.server_limits import ServerLimits

    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("## Server limits", 1)[1].split("\n## ", 1)[0]
    keys = {name for name in ServerLimits.__dataclass_fields__}
    keys |= {name for name in ApiConfig.model_fields
             if name.endswith(("_timeout_s", "_bytes")) or name.startswith(("max_", "dashboard_max", "dashboard_lockout"))}
    missing = sorted(key for key in keys if f"`{key}`" not in section)
    assert not missing, f"docs/operations.md 'Server limits' does not list: {missing}"
