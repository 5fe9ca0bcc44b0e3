"""``check_config_file`` (campaigns/project/check.py) beyond loading: a send window that
quiet hours leave no time in is reported with its file line and key. (What check refuses
that once stopped the scheduler: test_check_hardening.py, test_check_tick_property.py.)"""

from __future__ import annotations

import pytest

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


# -- templates rendered for every customer archetype (campaigns/project/rendercheck.py) -------

ARCHETYPE_CONFIG = """\
[channels.mail]
kind = "outbox"
recipient = "email"
[channels.text]
kind = "outbox"
recipient = "phone"

[[campaigns]]
name = "birthday"
trigger = {{ cron = "0 10 * * *" }}
channels = ["mail"]
purpose = "transactional"
{audience}
  [[campaigns.steps]]
  template = "t/last_order"
"""
UNGUARDED = 'Your last order: {{ stats.last_order_at.strftime("%d %B %Y") }}'
GUARDED = 'Hello{% if stats.last_order_at %}, last order {{ stats.last_order_at.strftime("%d %B %Y") }}{% endif %}'


def check_with(tmp_path, template: str, audience: str = "", name: str = "t/last_order"):
    from campaigns.project.check import check_config_file

    (tmp_path / "templates" / "t").mkdir(parents=True, exist_ok=True)
    (tmp_path / "templates" / f"{name}.txt.j2").write_text(template)
    text = ARCHETYPE_CONFIG.format(audience=audience)
    (tmp_path / "config.toml").write_text(text)
    return check_config_file(tmp_path / "config.toml"), text


def test_a_template_that_fails_only_for_customers_without_orders_is_an_error(tmp_path):
    # The trial: this passed check against its one sample customer (who had orders) and
    # then every send to a customer without orders failed "render failed".
    result, text = check_with(tmp_path, UNGUARDED)

    [issue] = result.issues
    assert (issue.key_path, issue.line) == ("campaigns[0].steps[0].template",
                                            text.splitlines().index('  template = "t/last_order"') + 1)
    assert "a customer with no orders" in issue.message
    assert "t/last_order.txt.j2:1" in issue.message and "strftime" in issue.message
    assert "{% if stats.last_order_at %}" in issue.message  # how to fix it
    assert result.templates_rendered == 0


def test_a_guarded_template_renders_for_every_archetype(tmp_path):
    result, _ = check_with(tmp_path, GUARDED)
    assert result.issues == [] and result.templates_rendered == 1
    assert not [w for w in result.warnings if "t/last_order" in w]


def test_an_audience_that_rules_out_the_failing_archetype_is_no_error(tmp_path):
    result, _ = check_with(tmp_path, UNGUARDED, audience="audience = { min_orders = 1 }")
    assert result.issues == [] and result.templates_rendered == 1
    # An expression check cannot evaluate may or may not rule them out: a warning, located.
    result, text = check_with(tmp_path, UNGUARDED, audience="audience = { where = 'orders_count >= 1' }")
    assert result.issues == []
    [warning] = [w for w in result.warnings if "t/last_order" in w]
    line = text.splitlines().index('  template = "t/last_order"') + 1
    assert warning.startswith(f"{tmp_path / 'config.toml'}:{line}: campaigns[0].steps[0].template:")
    assert "a customer with no orders" in warning and "where 'orders_count >= 1'" in warning


@pytest.mark.parametrize(("template", "archetype"), [
    ("Hi {{ customer.name.upper() }}", "no name"),
    ("From {{ customer.attributes.city.title() }}", "no attributes"),
    ("{{ customer.phone[-4:] }}", "no phone"),
    ("{{ '%d' % (stats.total_spent / (stats.orders_count - 1)) }}", "one order"),
])
def test_each_archetype_is_rendered(tmp_path, template, archetype):
    result, _ = check_with(tmp_path, template)
    [issue] = result.issues
    assert f"a customer with {archetype}" in issue.message, issue.message


def test_a_missing_recipient_only_matters_on_a_channel_that_still_reaches_the_customer(tmp_path):
    # The mail channel never renders for a customer without an email address.
    result, _ = check_with(tmp_path, "Hi {{ customer.email.split('@')[0] }}")
    assert result.issues == []


# -- unsubscribe and preference links in marketing email -------------------------------------


def test_marketing_email_without_a_link_in_its_body_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("NURTURE_LINK_SECRET", "link-secret-for-tests")
    api = '[api]\npublic_url = "https://t.shop.example"\n'
    marketing = ARCHETYPE_CONFIG.replace('purpose = "transactional"\n', "")

    def warnings_for(template: str, config: str = marketing) -> list[str]:
        (tmp_path / "templates" / "t" / "last_order.txt.j2").write_text(template)
        (tmp_path / "config.toml").write_text(api + config.format(audience=""))
        from campaigns.project.check import check_config_file

        result = check_config_file(tmp_path / "config.toml")
        assert result.issues == []
        return [w for w in result.warnings if "link" in w]

    (tmp_path / "templates" / "t").mkdir(parents=True)
    [warning] = warnings_for("Hello")
    assert "campaigns[0].steps[0].template" in warning and "unsubscribe_url" in warning
    assert warnings_for("Hello\n{% if unsubscribe_url %}Unsubscribe: {{ unsubscribe_url }}{% endif %}") == []
    assert warnings_for("Hello\nChoose what you get: {{ preferences_url }}") == []
    assert len(warnings_for("Hello {# {{ unsubscribe_url }} #}")) == 1  # a comment is no link
    assert warnings_for("Hello", ARCHETYPE_CONFIG) == []  # transactional


def test_links_that_would_be_empty_are_a_warning(tmp_path, monkeypatch):
    monkeypatch.delenv("NURTURE_LINK_SECRET", raising=False)
    result, _ = check_with(tmp_path, "Bye: {{ unsubscribe_url }}")
    assert [w for w in result.warnings if w.startswith("api.public_url is not set")]
    (tmp_path / "config.toml").write_text('[api]\npublic_url = "https://t.shop.example"\n'
                                          + (tmp_path / "config.toml").read_text())
    from campaigns.project.check import check_config_file

    warnings = check_config_file(tmp_path / "config.toml").warnings
    assert [w for w in warnings if w.startswith("api.link_secret_env: environment variable NURTURE_LINK_SECRET")]
