"""``nurture check`` renders ``recommendations()`` for its sample customers
(campaigns/project/rendercheck.py): sample products of any category asked for, so a
typo'd product attribute is a located error; a template that assumes products fails for
a customer without any unless the step requires them; ``min_recommendations`` is
validated with its line."""

from __future__ import annotations

CONFIG = """\
[channels.mail]
kind = "outbox"
recipient = "email"

[[campaigns]]
name = "recs"
trigger = {{ cron = "0 10 * * *" }}
channels = ["mail"]
  [[campaigns.steps]]
  template = "t/recs"
{step}
"""
LOOP = ("{% for p in recommendations(3, category='books') %}{{ p.name }} {{ p.price }} {{ p.url }} "
        "{{ p.image_url }} {{ p.sku }} {{ p.reason }}{% endfor %}")


def check_with(tmp_path, template: str, *, step: str = "", top: str = ""):
    from campaigns.project.check import check_config_file

    (tmp_path / "templates" / "t").mkdir(parents=True, exist_ok=True)
    (tmp_path / "templates" / "t" / "recs.html.j2").write_text(template)
    (tmp_path / "config.toml").write_text(top + CONFIG.format(step=step))
    return check_config_file(tmp_path / "config.toml")


def test_a_template_showing_recommendations_is_rendered_and_passes(tmp_path):
    result = check_with(tmp_path, LOOP, top="[recommendations]\nenabled = true\n")
    assert result.issues == [] and result.templates_rendered == 1
    assert not any("recommendations()" in warning for warning in result.warnings)


def test_showing_recommendations_that_nothing_refreshes_is_a_warning(tmp_path):
    result = check_with(tmp_path, LOOP)
    assert result.issues == []
    assert ("1 template(s) show recommendations() but [recommendations] enabled is false: nothing refreshes "
            "them on a schedule, so customers have only what `nurture recommend refresh` last wrote (none before "
            "it first runs)") in result.warnings


def test_a_typod_product_attribute_is_an_error_naming_the_file_line_and_the_attributes(tmp_path):
    # Inside a category's loop: check's sample products answer any category.
    [issue] = check_with(tmp_path, "Hello\n{% for p in recommendations(2, category='toys') %}{{ p.nmae }}"
                                   "{% endfor %}").issues
    assert issue.key_path == "campaigns[0].steps[0].template" and issue.line == 10
    assert "t/recs.html.j2:2:" in issue.message
    assert "has no attribute 'nmae'" in issue.message
    assert "a recommended product has sku, name, category, price, url, image_url" in issue.message


def test_a_wrong_argument_is_an_error(tmp_path):
    [issue] = check_with(tmp_path, "{% for p in recommendations(n='three') %}{{ p.name }}{% endfor %}").issues
    assert "recommendations(n=...) takes a whole number" in issue.message


def test_assuming_a_product_fails_for_a_customer_without_any_unless_the_step_requires_them(tmp_path):
    first = "Our pick for you: {{ recommendations(1)[0].name }}"
    [issue] = check_with(tmp_path, first).issues
    assert "does not render for a customer without recommended products" in issue.message
    assert "min_recommendations = 1" in issue.message
    assert check_with(tmp_path, first, step="  min_recommendations = 1").issues == []
    assert check_with(tmp_path, "{% if recommendations(1) %}{{ recommendations(1)[0].name }}{% endif %}"
                      ).issues == []


def test_min_recommendations_is_validated_with_its_line(tmp_path):
    [issue] = check_with(tmp_path, LOOP, step="  min_recommendations = -1").issues
    assert issue.key_path == "campaigns[0].steps[0].min_recommendations" and issue.line == 11
    assert "config.toml" in issue.file
    assert "greater than or equal to 0" in issue.message
