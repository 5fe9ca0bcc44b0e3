"""``[recommendations]`` (campaigns/config/recommendations.py): what loads, and each
mistake located by file, line and key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from campaigns.errors import ConfigError
from campaigns.project.loading import parse_config
from tests.conftest import line_of


def test_the_defaults_and_a_repurchase_setup_load(tmp_path):
    defaults = parse_config("", base=tmp_path).recommendations
    assert (defaults.enabled, defaults.cron, defaults.top_n, defaults.score) == (False, "0 4 * * *", 10, "lift")
    assert defaults.exclude_bought == "always" and defaults.recent_category_window == timedelta(days=7)

    loaded = parse_config("""
[recommendations]
enabled = true
cron = ""
top_n = 5
min_support = 3
exclude_bought = "repurchase"
repurchase_after = "30d"
repurchase_categories = { coffee = "14d" }
recent_category_window = "0s"
""", base=tmp_path).recommendations
    assert loaded.enabled and loaded.cron == "" and (loaded.top_n, loaded.min_support) == (5, 3)
    assert loaded.repurchase_after == timedelta(days=30)
    assert loaded.repurchase_categories == {"coffee": timedelta(days=14)}
    assert not loaded.recent_category_window


@pytest.mark.parametrize(("lines", "key", "marker", "message"), [
    ('cron = "0 4 * *"\n', "recommendations.cron", "cron =", "invalid cron expression"),
    ('cron = "0 0 31 2 *"\n', "recommendations.cron", "cron =", "never fires"),
    ('timezone = "Mars/Base"\n', "recommendations.timezone", "timezone =", "unknown time zone"),
    ("top_n = 0\n", "recommendations.top_n", "top_n =", "greater than or equal to 1"),
    ("top_n = 101\n", "recommendations.top_n", "top_n =", "less than or equal to 100"),
    ("min_support = 0\n", "recommendations.min_support", "min_support =", "greater than or equal to 1"),
    ('score = "count"\n', "recommendations.score", "score =", "'lift' or 'confidence'"),
    ('exclude_bought = "sometimes"\n', "recommendations.exclude_bought", "exclude_bought =", "'always'"),
    ('exclude_bought = "repurchase"\n', "recommendations", "[recommendations]", "needs repurchase_after"),
    ('repurchase_after = "30d"\n', "recommendations", "[recommendations]", 'it is "always"'),
    ('exclude_bought = "repurchase"\nrepurchase_after = "0s"\n', "recommendations", "[recommendations]",
     "a window of 0"),
    ('exclude_bought = "repurchase"\nrepurchase_categories = { coffee = "soon" }\n',
     "recommendations.repurchase_categories.coffee", "repurchase_categories =", "invalid duration"),
    ('recent_category_window = "1 week"\n', "recommendations.recent_category_window",
     "recent_category_window =", "invalid duration"),
    ("neighbours = 3\n", "recommendations.neighbours", "neighbours =", "unknown key"),
])
def test_each_mistake_is_located(tmp_path, lines, key, marker, message):
    text = "[compliance]\nquiet_hours = \"\"\n\n[recommendations]\nenabled = true\n" + lines
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="config.toml", base=tmp_path)
    [issue] = caught.value.issues
    assert issue.key_path == key, issue
    assert message in issue.message, issue
    assert issue.line == line_of(text, marker), issue
    assert str(issue.file).endswith("config.toml"), issue
