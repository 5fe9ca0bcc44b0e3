"""``nurture check`` renders survey templates with ``survey`` defined (its scores, score
links and reply hint); a step that asks no question and uses ``survey`` is an error that
says so; a detractor follow-up campaign checks like any other."""

from __future__ import annotations

from pathlib import Path

from campaigns.project.check import CheckResult, check_config_file

CONFIG = """\
[channels.mail]
kind = "outbox"
recipient = "email"

[[campaigns]]
name = "ask"
trigger = {{ manual = true }}
channels = ["mail"]
  [[campaigns.steps]]
  template = "t/ask"
  {survey}
"""
FOLLOW_UP = """
[[campaigns]]
name = "sorry"
trigger = { feedback = "detractor" }
channels = ["mail"]
  [[campaigns.steps]]
  template = "t/sorry"
"""
ASK = ("{{ survey.reply_hint_zh }} {% for s in survey.scores %}<{{ survey.links[s] }}>{% endfor %} "
       "{{ survey.low }}-{{ survey.high }} {{ survey.question }}")


def check_with(tmp_path: Path, template: str, *, survey: str = 'survey = "nps"', follow_up: bool = True
               ) -> CheckResult:
    (tmp_path / "templates" / "t").mkdir(parents=True, exist_ok=True)
    (tmp_path / "templates" / "t" / "ask.txt.j2").write_text(template)
    (tmp_path / "templates" / "t" / "sorry.txt.j2").write_text("Sorry, {{ customer.first_name }}")
    (tmp_path / "config.toml").write_text(CONFIG.format(survey=survey) + (FOLLOW_UP if follow_up else ""))
    return check_config_file(tmp_path / "config.toml")


def test_a_survey_template_renders_for_every_archetype(tmp_path: Path) -> None:
    result = check_with(tmp_path, ASK)
    assert result.issues == [] and result.templates_rendered == 2


def test_survey_in_a_step_that_asks_nothing_says_so(tmp_path: Path) -> None:
    [issue] = check_with(tmp_path, ASK, survey="", follow_up=False).issues
    assert issue.key_path == "campaigns[0].steps[0].template"
    assert "'survey' is undefined: this step asks no survey question" in issue.message


def test_a_csat_link_beyond_its_scale_fails(tmp_path: Path) -> None:
    [issue] = check_with(tmp_path, "{{ survey.links[9] }}", survey='survey = "csat"').issues
    assert issue.key_path == "campaigns[0].steps[0].template"


def test_score_links_that_would_be_empty_are_a_warning(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NURTURE_LINK_SECRET", raising=False)
    result = check_with(tmp_path, ASK)
    assert result.issues == []
    [warning] = [w for w in result.warnings if "survey.links" in w]
    assert "campaigns[0].steps[0].survey: the score links (survey.links) of this step are empty in every message " \
           "(api.public_url is not set): email recipients can only answer by replying" in warning
