"""``check_config_file`` (campaigns/project/check.py) beyond loading: a send window that
quiet hours leave no time in is reported with its file line and key. (What check refuses
that once stopped the scheduler: test_check_hardening.py, test_check_tick_property.py.)"""

from __future__ import annotations

from tests.campaigns.sending.policy_world import CONFIG, campaign


def test_check_reports_a_window_that_can_never_open_with_file_line_and_key(tmp_path):
    from campaigns.project.check import check_config_file

    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "m.txt.j2").write_text("hi")
    text = CONFIG.format(url="sqlite:///x.db", compliance="", campaigns=(
        campaign("night_owls", extra='window = "22:00-23:30"')
        + campaign("late_notice", extra='purpose = "transactional"\nwindow = "22:00-23:30"')))
    (tmp_path / "config.toml").write_text(text)

    result = check_config_file(tmp_path / "config.toml")

    assert [(issue.key_path, issue.line) for issue in result.issues] == [
        ("campaigns[0].window", text.splitlines().index('window = "22:00-23:30"') + 1)]
    assert "quiet hours 21:00-08:00" in result.issues[0].message
