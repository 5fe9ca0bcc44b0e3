"""A campaign's ``coupon`` and the ``coupon_redeemed`` goal (campaigns/config/coupons.py,
campaigns/config/campaigns.py): what loads, and each mistake located by file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from campaigns.errors import ConfigError
from campaigns.project.loading import parse_config
from tests.conftest import line_of


def campaign(tmp_path: Path, lines: str) -> str:
    (tmp_path / "templates" / "wb").mkdir(parents=True, exist_ok=True)
    (tmp_path / "templates" / "wb" / "m.txt.j2").write_text("{{ coupon.code }}")
    return textwrap.dedent("""\
        [channels.mail]
        kind = "outbox"

        [[campaigns]]
        name = "win_back"
        trigger = { cron = "0 10 * * *" }
        channels = ["mail"]
        """) + textwrap.dedent(lines) + '\n[[campaigns.steps]]\ntemplate = "wb/m"\n'


def test_a_pool_a_generator_and_the_coupon_goal_load(tmp_path):
    config = parse_config(campaign(tmp_path, """\
        coupon = { generate = "WB", length = 12 }
        goal = { coupon_redeemed = true, within = "7d" }
        """), base=tmp_path)
    [loaded] = config.campaigns
    assert loaded.coupon is not None and loaded.coupon.generated
    assert (loaded.coupon.generate, loaded.coupon.length, loaded.coupon.pool_name("win_back")) == ("WB", 12, "win_back")
    assert loaded.goal is not None and loaded.goal.coupon_redeemed and loaded.goal.label == "coupon redeemed"

    pooled = parse_config(campaign(tmp_path, 'coupon = { pool = "winback10" }\n'), base=tmp_path).campaigns[0]
    assert pooled.coupon is not None and not pooled.coupon.generated
    assert pooled.coupon.pool_name("win_back") == "winback10" and pooled.coupon.length == 10
    assert pooled.goal is None
    assert pooled.coupon.carries(0) and pooled.coupon.carries(5)

    second = parse_config(campaign(tmp_path, 'coupon = { pool = "p", steps = [1] }\n')
                          + '[[campaigns.steps]]\ntemplate = "wb/m"\n', base=tmp_path).campaigns[0]
    assert second.coupon is not None and not second.coupon.carries(0) and second.coupon.carries(1)


@pytest.mark.parametrize(("lines", "key", "message"), [
    ("coupon = {}\n", "campaigns[0].coupon", 'give coupon = { pool = "NAME" }'),
    ('coupon = { pool = "p", length = 12 }\n', "campaigns[0].coupon", "give it with generate"),
    ('coupon = { generate = "wb" }\n', "campaigns[0].coupon.generate", "should match pattern"),
    ('coupon = { generate = "WB", length = 7 }\n', "campaigns[0].coupon.length", "greater than or equal to 8"),
    ('coupon = { pool = "-p" }\n', "campaigns[0].coupon.pool", "should match pattern"),
    ('coupon = { pool = "p", size = 3 }\n', "campaigns[0].coupon.size", "unknown key"),
    ('coupon = { pool = "p" }\ngoal = { event = "order", coupon_redeemed = true }\n', "campaigns[0].goal",
     "either event"),
    ("goal = { coupon_redeemed = true }\n", "campaigns[0]", "goal.coupon_redeemed needs the campaign's coupon"),
    ('coupon = { pool = "p", steps = [1] }\n', "campaigns[0]", "names step 1, but the campaign has 1 step(s)"),
    ('coupon = { pool = "p", steps = [] }\n', "campaigns[0].coupon.steps", "at least 1 item"),
    ('coupon = { pool = "p", steps = [-1] }\n', "campaigns[0].coupon.steps[0]", "greater than or equal to 0"),
])
def test_each_mistake_is_located(tmp_path, lines, key, message):
    text = campaign(tmp_path, lines)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="config.toml", base=tmp_path)
    [issue] = caught.value.issues
    assert issue.key_path == key, issue
    assert message in issue.message, issue
    marker = "[[campaigns]]" if key == "campaigns[0]" else key.split(".")[1].split("[")[0] + " ="
    assert issue.line == line_of(text, marker), issue
