"""``nurture check`` renders templates with ``loyalty.*`` defined (campaigns/project/archetypes.py,
rendercheck.py): a typical member, one with no points and one in the top tier, shaped by a
``tier_entered`` or ``points_expiring`` trigger; with the programme off, a template using
``loyalty`` is an error that says so."""

from __future__ import annotations

import pytest

from campaigns.project.archetypes import loyalty_samples, reachable
from campaigns.project.loading import parse_config

CONFIG = """\
{loyalty}
[channels.mail]
kind = "outbox"
recipient = "email"

[[campaigns]]
name = "points"
trigger = {trigger}
channels = ["mail"]
  [[campaigns.steps]]
  template = "t/points"
"""
ON = "[loyalty]\nenabled = true"
EXPIRING = "{{ loyalty.expiring.points }} points expire on {{ loyalty.expiring.date }}"
NEXT_TIER = "{{ loyalty.to_next_tier | int }} points to {{ loyalty.next_tier.upper() }}"


def check_with(tmp_path, template: str, *, trigger: str = '{ cron = "0 10 * * *" }', loyalty: str = ON):
    from campaigns.project.check import check_config_file

    (tmp_path / "templates" / "t").mkdir(parents=True, exist_ok=True)
    (tmp_path / "templates" / "t" / "points.txt.j2").write_text(template)
    (tmp_path / "config.toml").write_text(CONFIG.format(loyalty=loyalty, trigger=trigger))
    return check_config_file(tmp_path / "config.toml")


def test_loyalty_is_defined_for_every_archetype(tmp_path):
    template = ("{{ loyalty.balance }} points ({{ loyalty.by_kind.goods }} for goods), {{ loyalty.tier }}"
                "{% if loyalty.next_tier %}, {{ loyalty.to_next_tier }} to {{ loyalty.next_tier }}{% endif %}"
                "{% if loyalty.expiring %}, {{ loyalty.expiring.points }} by {{ loyalty.expiring.date }}{% endif %}"
                "{{ loyalty.tier_benefits | join(', ') }}")
    result = check_with(tmp_path, template)
    assert result.issues == [] and result.templates_rendered == 1


def test_a_template_assuming_points_expire_fails_for_a_member_with_none(tmp_path):
    [issue] = check_with(tmp_path, EXPIRING).issues
    assert issue.key_path == "campaigns[0].steps[0].template"
    assert "a customer with no points" in issue.message and "has no attribute 'points'" in issue.message
    # An expiry reminder only reaches members with points expiring.
    result = check_with(tmp_path, EXPIRING, trigger='{ points_expiring = "30d" }')
    assert result.issues == [] and result.templates_rendered == 1


def test_a_template_assuming_a_next_tier_fails_for_the_top_tier(tmp_path):
    [issue] = check_with(tmp_path, NEXT_TIER).issues
    assert "a customer with the top tier (gold)" in issue.message
    # Entering silver, everyone reached is silver, with gold above.
    assert check_with(tmp_path, NEXT_TIER, trigger='{ tier_entered = "silver" }').issues == []
    # Entering gold, nobody has a tier above: the typical member fails, always an error.
    [issue] = check_with(tmp_path, NEXT_TIER, trigger='{ tier_entered = "gold" }').issues
    assert "a typical customer" in issue.message


def test_with_the_programme_off_a_template_using_loyalty_says_so(tmp_path):
    [issue] = check_with(tmp_path, "{{ loyalty.balance }} points", loyalty="").issues
    assert "'loyalty' is undefined: the loyalty programme is off ([loyalty] enabled = false" in issue.message
    # A template may test for it.
    result = check_with(tmp_path, "{% if loyalty is defined %}{{ loyalty.balance }}{% endif %}", loyalty="")
    assert result.issues == []


@pytest.mark.parametrize(("trigger", "names", "tiers"), [
    ('{ cron = "0 10 * * *" }', ["typical", "no points", "the top tier (gold)"], ["silver", "member", "gold"]),
    ('{ points_expiring = "7d" }', ["typical", "the top tier (gold)"], ["silver", "gold"]),
    ('{ tier_entered = "gold" }', ["typical", "no points"], ["gold", "gold"]),
])
def test_the_loyalty_samples_follow_the_trigger(tmp_path, trigger, names, tiers):
    (tmp_path / "templates" / "t").mkdir(parents=True)
    (tmp_path / "templates" / "t" / "points.txt.j2").write_text("hi")
    config = parse_config(CONFIG.format(loyalty=ON, trigger=trigger), base=tmp_path)
    samples = loyalty_samples(config, config.campaigns[0])
    assert [name for name, _ in samples] == names
    assert [sample["tier"] for _, sample in samples] == tiers
    typical = samples[0][1]
    assert typical["balance"] == 1280 and typical["expiring"]["points"] == 120
    # Every archetype carries the typical member's standing; the loyalty ones are added.
    archetypes = reachable(config, config.campaigns[0])
    assert [a.name for a in archetypes][-len(names) + 1:] == names[1:]
    assert all(a.loyalty is not None for a in archetypes)
