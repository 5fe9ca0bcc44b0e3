"""Points in audience expressions: ``points_balance``, ``points_expiring(within=)``,
``tier`` and ``points_earned(within=)`` select exactly the members worked out by hand in
tests/campaigns/loyalty_members.py (on SQLite and PostgreSQL), and every misuse is an
error as precise as the others: what, where and how to fix it, and, with ``[loyalty]``
off, that the programme is off."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.audience.compiler import compile_expression
from campaigns.audience.language import ExpressionError
from campaigns.audience.parser import parse_expression
from campaigns.audience.selection import expression_select
from campaigns.config.schema import AppConfig
from campaigns.errors import ConfigError
from campaigns.project.loading import parse_config
from campaigns.store.models import Customer, CustomerProfile
from tests.campaigns.audience.test_parser import RFM_NAMES
from tests.campaigns.loyalty_members import LOYALTY, NOW, add_members
from tests.conftest import line_of

TIERS = ("member", "silver", "gold")


def parse(text: str, tiers=TIERS):
    return parse_expression(text, rfm_names=RFM_NAMES, tiers=tiers)


def matching(engine: sa.Engine, text: str) -> set[str]:
    condition = compile_expression(parse(text), now=NOW, segments={}, loyalty=LOYALTY)
    profile = CustomerProfile.__table__
    query = (sa.select(Customer.external_id).select_from(Customer)
             .outerjoin(profile, profile.c.customer_id == Customer.id).where(condition))
    with engine.connect() as conn:
        return set(conn.execute(query).scalars())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Balances: ann 310, bob 1000 (his share's 5 expired at NOW exactly), cat 0, dan 80 - 50 owed, eve 70.
        ("points_balance >= 310", {"ann", "bob"}),
        ("points_balance > 310", {"bob"}),
        ("points_balance == 0", {"cat"}),
        ("points_balance < 50", {"cat", "dan"}),
        ("30 == points_balance", {"dan"}),
        ("points_balance in [70, 1000]", {"bob", "eve"}),
        ("points_balance not in [70, 1000]", {"ann", "cat", "dan"}),
        ("1 <= points_balance <= 100", {"dan", "eve"}),
        # Expiring in (NOW, NOW + 30d]: ann's 300 (10 days), bob's 1000 (30 days exactly), eve's
        # 20 (her spent lot expiring with them has none left); dan's 80 go one second too late.
        ('points_expiring(within="30d") > 0', {"ann", "bob", "eve"}),
        ('points_expiring(within="30d") >= 1000', {"bob"}),
        ('points_expiring(within="30d") == 20', {"eve"}),
        ('points_expiring(within="30d") == 0', {"cat", "dan"}),
        ('points_expiring(within="31d") > 0', {"ann", "bob", "dan", "eve"}),
        ('points_expiring(within="41d") == 310', {"ann"}),  # her review's 10 too
        ('points_expiring(within="5d") > 0', {"eve"}),  # expiring in 5 days exactly
        ('points_expiring(within="4d") > 0', set()),
        # Tiers: customers without a loyalty_member row are in the lowest.
        ('tier == "member"', {"cat", "dan", "eve"}),
        ('tier == "silver"', {"ann"}),
        ('tier in ["silver", "gold"]', {"ann", "bob"}),
        ('tier != "gold"', {"ann", "cat", "dan", "eve"}),
        ('tier not in ["member"]', {"ann", "bob"}),
        # Earned from orders, events and referrals, not reversed: ever, or in (NOW - 90d, NOW].
        ('points_earned() > 500', {"ann", "bob"}),  # 510 and 1005 (the expired share counts)
        ('points_earned() == 80', {"dan"}),  # the reversed order and the debt do not count
        ('points_earned() == 120', {"eve"}),  # nor the adjustment
        ('points_earned(within="90d") > 0', {"ann", "eve"}),  # bob's share was earned 90 days ago exactly
        ('points_earned(within="91d") == 5', {"bob"}),
        ('points_earned(within="90d") == 20', {"eve"}),
        # Combined with the rest of the language.
        ('tier == "member" and points_expiring(within="30d") > 0', {"eve"}),
        ('not (points_balance >= 100) or tier == "gold"', {"bob", "cat", "dan", "eve"}),
    ],
)
def test_points_and_tiers_select_exactly_the_members_worked_out_by_hand(engine, text, expected):
    add_members(engine)
    assert matching(engine, text) == expected


def test_expression_select_reads_the_loyalty_section_of_the_config(engine):
    add_members(engine)
    config = AppConfig(loyalty=LOYALTY)
    with engine.connect() as conn:
        ids = set(conn.execute(expression_select(config, 'tier == "gold" or points_balance == 70', now=NOW)).scalars())
        names = set(conn.execute(sa.select(Customer.external_id).where(Customer.id.in_(ids))).scalars())
    assert names == {"bob", "eve"}


@pytest.mark.parametrize(
    ("text", "message", "column", "hint"),
    [
        ('tier == "golden"', "unknown tier 'golden'", 9, "did you mean 'gold'? tiers: member, silver, gold"),
        ('tier in ["silver", "vip"]', "unknown tier 'vip'", 20, "tiers: member, silver, gold"),
        ("tier == 1", "tier is text: compare it with a string, not 1", 9, None),
        ('tier >= "silver"', "tier is text: use ==, !=, in or not in, not >=", 1,
         'list the tiers you mean: tier in ["silver", "gold"]'),
        ('tier < "gold"', "tier is text: use ==, !=, in or not in, not <", 1,
         'list the tiers you mean: tier in ["member", "silver"]'),
        ("tier", "field 'tier' is not a condition", 1, 'compare it, e.g. tier == "..."'),
        ("points_balance", "points_balance is a number, not a condition", 1,
         "compare it, e.g. points_balance >= 1"),
        ('points_balance == "100"', 'points_balance is a number: compare it with a number, not "100"', 19, None),
        ("points_expiring() > 0", "points_expiring() needs within=, how far ahead to look", 1,
         'usage: points_expiring(within="30d")'),
        ('points_expiring("30d") > 0', "points_expiring() takes no positional value, only within=", 17,
         'usage: points_expiring(within="30d")'),
        ('points_expiring(days="30d") > 0', "points_expiring() has no argument days=", 22,
         'usage: points_expiring(within="30d")'),
        ('points_expiring(within="soon") > 0', "invalid duration 'soon': use numbers with w, d, h, m or s, "
         "e.g. '2d' or '1d12h'", 24, None),
        ('points_expiring(within="0d") > 0', "within must be longer than zero", 24, None),
        ('points_earned(within=90) > 0', 'within must be a duration string such as "30d" or "12h"', 22, None),
        ("points_earned(within=\"90d\")", 'points_earned(within="90d") is a number, not a condition', 1,
         'compare it, e.g. points_earned(within="90d") >= 1'),
        ("points_expiring > 1", "points_expiring is a function", 1, 'call it, e.g. points_expiring(within="30d")'),
        ("point_balance > 1", "unknown field 'point_balance'", 1, "did you mean 'points_balance'?"),
        ('points_earnd(within="9d") > 1', "unknown function 'points_earnd'", 1, "did you mean 'points_earned'?"),
    ],
)
def test_misuse_is_an_error_that_says_what_where_and_how(text, message, column, hint):
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert (caught.value.message, caught.value.column, caught.value.hint) == (message, column, hint)


@pytest.mark.parametrize("text", ["points_balance > 0", 'tier == "gold"', 'points_expiring(within="30d") > 0',
                                  "points_earned() > 0", 'has_email and (tier == "gold" or stage == "new")'])
def test_with_the_programme_off_every_loyalty_name_says_so(text):
    with pytest.raises(ExpressionError) as caught:
        parse(text, tiers=None)
    name = next(word for word in ("points_balance", "tier", "points_expiring", "points_earned") if word in text)
    assert caught.value.message == f"{name} needs the loyalty programme, which is off ([loyalty] enabled = false)"
    assert caught.value.hint == "set enabled = true under [loyalty] in config.toml"
    # Compiling refuses it the same way (a config loaded before the programme was turned off).
    with pytest.raises(ExpressionError, match="loyalty programme, which is off"):
        compile_expression(parse(text), now=NOW, segments={}, loyalty=AppConfig().loyalty)


def project(tmp_path: Path, body: str) -> str:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "t.txt.j2").write_text("hi")
    return f"""
[channels.mail]
kind = "outbox"
{body}
"""


def issues(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, base=tmp_path)
    return [str(issue) for issue in caught.value.issues]


def test_check_locates_loyalty_mistakes_in_segments_audiences_and_steps(tmp_path):
    text = project(tmp_path, """
[loyalty]
enabled = true
  [[loyalty.tiers]]
  name = "basic"
  minimum = 0
  [[loyalty.tiers]]
  name = "vip"
  minimum = 2000

[segments]
vips = 'tier == "gold"'

[[campaigns]]
name = "c"
trigger = { cron = "0 10 * * *" }
channels = ["mail"]
  [campaigns.audience]
  where = 'points_balance >= "many"'
  [[campaigns.steps]]
  template = "t"
  when = 'points_expiring() > 0'
""")
    assert issues(tmp_path, text) == [
        f"config.toml:{line_of(text, 'vips =')}: segments.vips: unknown tier 'gold' at column 9 "
        "(tiers: basic, vip)",
        f"config.toml:{line_of(text, 'where =')}: campaigns[0].audience.where: points_balance is a number: "
        "compare it with a number, not \"many\" at column 19",
        f"config.toml:{line_of(text, 'when =')}: campaigns[0].steps[0].when: points_expiring() needs within=, "
        'how far ahead to look at column 1 (usage: points_expiring(within="30d"))',
    ]


def test_check_says_loyalty_is_off_where_an_expression_uses_it(tmp_path):
    text = project(tmp_path, """
[segments]
savers = 'points_balance >= 500'
""")
    assert issues(tmp_path, text) == [
        f"config.toml:{line_of(text, 'savers =')}: segments.savers: points_balance needs the loyalty programme, "
        "which is off ([loyalty] enabled = false) at column 1 (set enabled = true under [loyalty] in config.toml)",
    ]
    # The same file with the programme on is fine, with its default tiers.
    config = parse_config(text.replace("[segments]", "[loyalty]\nenabled = true\n[segments]"), base=tmp_path)
    assert config.segments == {"savers": "points_balance >= 500"}
