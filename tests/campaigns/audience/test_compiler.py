"""Compiled audience expressions (campaigns.audience.compiler) on a real SQLite database, against hand-built data.

Five customers whose facts are spelled out below, so every expression's answer is known
by hand. Profile rows are inserted directly (as a recompute would have left them): the
profile fields of the language read them, not the live orders. ``eve`` has no profile
(imported after the last recompute).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.audience.compiler import compile_expression
from campaigns.audience.language import ExpressionError
from campaigns.audience.selection import audience_select, expression_select
from campaigns.config.schema import AppConfig
from campaigns.project.loading import parse_config
from campaigns.store.models import Consent, Customer, CustomerProfile, Event, Order
from tests.campaigns.audience.test_parser import errors_of, parse
from tests.campaigns.audience.test_segments import base_dir, config_text

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
EVERYONE = {"ann", "bob", "cat", "dan", "eve"}


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


# external_id -> customer columns, profile (None = no profile row), orders (days ago,
# amount, channel), events (name, days ago; negative = in the future), consents.
PEOPLE = {
    "ann": dict(
        customer=dict(acquisition_channel="store", email="ann@x.cn", locale="zh-CN", timezone="Asia/Shanghai",
                      created_at=ago(400), attributes={"vip": True, "city": "Wuhan", "tier": 3, "score": 4.5}),
        profile=dict(stage="active", rfm_segment="champions", r_score=5, f_score=5, m_score=5, orders_count=3,
                     total_spent=600.0, avg_order_value=200.0, last_order_at=ago(10)),
        orders=[(10, 100.0, "store"), (50, 200.0, "ecommerce"), (100, 300.0, "store")],
        events=[("review", 5), ("review", 20)],
        consents={"email": "granted"},
    ),
    "bob": dict(
        customer=dict(acquisition_channel="ecommerce", phone="+8613800000001", locale="en-US", timezone="UTC",
                      created_at=ago(20), attributes={"vip": False, "city": "Beijing", "tier": 1}),
        profile=dict(stage="new", rfm_segment="new", r_score=5, f_score=1, m_score=2, orders_count=1,
                     total_spent=50.0, avg_order_value=50.0, last_order_at=ago(3)),
        orders=[(3, 50.0, "ecommerce")],
        events=[("review", 40), ("page_view", 1)],
        consents={"sms": "granted", "email": "withdrawn"},
    ),
    "cat": dict(
        customer=dict(acquisition_channel="social", email="cat@x.cn", wechat_openid="o-cat", created_at=ago(100),
                      attributes={}),
        profile=dict(stage="prospect", rfm_segment=None, r_score=None, f_score=None, m_score=None, orders_count=0,
                     total_spent=0.0, avg_order_value=None, last_order_at=None),
        orders=[],
        events=[("signup", 100), ("review", -1)],  # a review dated tomorrow does not count yet
        consents={"wechat": "granted"},
    ),
    "dan": dict(
        customer=dict(acquisition_channel="direct", email="dan@x.cn", phone="+8613800000002", created_at=ago(800),
                      attributes={"tier": 2, "score": 1.5}),
        profile=dict(stage="at_risk", rfm_segment="at_risk", r_score=2, f_score=3, m_score=4, orders_count=4,
                     total_spent=1500.0, avg_order_value=375.0, last_order_at=ago(120)),
        orders=[(120, 300.0, "direct"), (200, 400.0, "store"), (300, 400.0, "direct"), (400, 400.0, "direct")],
        events=[("review", 200)],
        consents={},
    ),
    "eve": dict(
        customer=dict(acquisition_channel="store", email="", created_at=NOW - timedelta(days=30, hours=1),
                      attributes={"city": "Wuhan"}),
        profile=None,
        orders=[(1, 20.0, "store")],
        events=[("review", 1)],
        consents={},
    ),
}


@pytest.fixture
def people(sqlite_engine):
    with sqlite_engine.begin() as conn:
        for external_id, person in PEOPLE.items():
            customer_id = conn.execute(sa.insert(Customer.__table__).values(
                external_id=external_id, updated_at=NOW, **person["customer"],
            ).returning(Customer.__table__.c.id)).scalar_one()
            if person["profile"] is not None:
                conn.execute(sa.insert(CustomerProfile.__table__).values(
                    customer_id=customer_id, as_of=ago(0.5), stage_since=ago(5), computed_at=ago(0.5),
                    **person["profile"]))
            for index, (days, amount, channel) in enumerate(person["orders"]):
                conn.execute(sa.insert(Order.__table__).values(
                    order_id=f"{external_id}-{index}", customer_id=customer_id, ordered_at=ago(days),
                    amount=amount, channel=channel))
            for index, (name, days) in enumerate(person["events"]):
                conn.execute(sa.insert(Event.__table__).values(
                    customer_id=customer_id, name=name, occurred_at=ago(days), properties={},
                    dedupe_key=f"{external_id}-e{index}"))
            for channel, status in person["consents"].items():
                conn.execute(sa.insert(Consent.__table__).values(
                    customer_id=customer_id, channel=channel, status=status, source="test", recorded_at=ago(30)))
    return sqlite_engine


def matching(engine, text: str, segments: dict[str, str] | None = None) -> set[str]:
    """External ids of the customers ``text`` selects, compiled directly."""
    segments = segments or {}
    parsed = {name: parse(body, segments) for name, body in segments.items()}
    condition = compile_expression(parse(text, segments), now=NOW, segments=parsed)
    profile = CustomerProfile.__table__
    query = (sa.select(Customer.external_id).select_from(Customer)
             .outerjoin(profile, profile.c.customer_id == Customer.id).where(condition))
    with engine.connect() as conn:
        return set(conn.execute(query).scalars())


# ---------------------------------------------------------------------------------------
# Fields


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('stage == "active"', {"ann"}),
        # A customer without a profile has no stage: it equals nothing, so != selects it.
        ('stage != "active"', {"bob", "cat", "dan", "eve"}),
        ('stage in ["new", "at_risk"]', {"bob", "dan"}),
        ('stage not in ["new", "at_risk"]', {"ann", "cat", "eve"}),
        ('rfm_segment == "champions"', {"ann"}),
        ('rfm_segment in ["at_risk", "new"]', {"bob", "dan"}),
        ("r_score >= 4", {"ann", "bob"}),
        ("f_score == 3", {"dan"}),
        ("m_score < 3", {"bob"}),
        ("1 <= r_score <= 2", {"dan"}),
        ("4 < r_score", {"ann", "bob"}),
        ("orders_count == 0", {"cat"}),  # eve has orders but no profile yet
        ("orders_count >= 3", {"ann", "dan"}),
        ("total_spent > 500", {"ann", "dan"}),
        ("total_spent >= 49.5", {"ann", "bob", "dan"}),
        ("avg_order_value < 100", {"bob"}),
        ("days_since_last_order > 90", {"dan"}),
        ("days_since_last_order <= 10", {"ann", "bob"}),
        ('acquisition_channel == "store"', {"ann", "eve"}),
        ('acquisition_channel in ["social", "direct"]', {"cat", "dan"}),
        ('locale == "zh-CN"', {"ann"}),
        ('timezone == "Asia/Shanghai"', {"ann"}),
        ("has_email", {"ann", "cat", "dan"}),  # eve's email is the empty string
        ("has_phone", {"bob", "dan"}),
        ("has_wechat", {"cat"}),
        ("not has_email", {"bob", "eve"}),
        ("has_email == false", {"bob", "eve"}),
        ("has_phone == true", {"bob", "dan"}),
        ('purchase_channel == "store"', {"ann", "dan", "eve"}),
        ('purchase_channel in ["ecommerce", "direct"]', {"ann", "bob", "dan"}),
        ('purchase_channel not in ["store"]', {"bob", "cat"}),
    ],
)
def test_each_field_selects_exactly_the_customers_it_describes(people, text, expected):
    assert matching(people, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ann 400 days, bob 20, cat 100, dan 800, eve 30 days and 1 hour (whole days: 30).
        ("days_since_signup >= 30", {"ann", "cat", "dan", "eve"}),
        ("days_since_signup > 30", {"ann", "cat", "dan"}),
        ("days_since_signup == 30", {"eve"}),
        ("days_since_signup != 30", {"ann", "bob", "cat", "dan"}),
        ("days_since_signup < 30", {"bob"}),
        ("days_since_signup <= 30", {"bob", "eve"}),
        ("days_since_signup == 20", {"bob"}),  # exactly 20 days ago
        ("days_since_signup in [20, 100]", {"bob", "cat"}),
        ("days_since_signup not in [20, 100]", {"ann", "dan", "eve"}),
        ("days_since_signup > 29.5", {"ann", "cat", "dan", "eve"}),
    ],
)
def test_days_since_signup_counts_whole_days_before_now(people, text, expected):
    assert matching(people, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("attributes.vip == true", {"ann"}),
        ("attributes.vip", {"ann"}),
        ("attributes.vip == false", {"bob"}),
        ("attributes.vip != true", {"bob", "cat", "dan", "eve"}),
        ("not attributes.vip", {"bob", "cat", "dan", "eve"}),
        ('attributes.city == "Wuhan"', {"ann", "eve"}),
        ('attributes.city in ["Beijing", "Wuhan"]', {"ann", "bob", "eve"}),
        ('attributes.city not in ["Wuhan"]', {"bob", "cat", "dan"}),
        ("attributes.tier >= 2", {"ann", "dan"}),
        ("attributes.tier == 3", {"ann"}),
        ("attributes.score > 2.0", {"ann"}),
        ("attributes.score < 2.0", {"dan"}),
        ("attributes.missing == 1", set()),
    ],
)
def test_attributes_compare_by_the_type_of_the_literal(people, text, expected):
    assert matching(people, text) == expected


# ---------------------------------------------------------------------------------------
# Boolean structure


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # and binds tighter than or; not tighter than and.
        ('has_email or has_phone and stage == "new"', {"ann", "bob", "cat", "dan"}),
        ('(has_email or has_phone) and stage == "new"', {"bob"}),
        ("not has_email and has_phone", {"bob"}),
        ("not (has_email and has_phone)", {"ann", "bob", "cat", "eve"}),
        ('not stage == "active"', {"bob", "cat", "dan", "eve"}),  # same as !=, even without a profile
        ('stage == "active" or stage == "at_risk" or stage == "new"', {"ann", "bob", "dan"}),
        ("true", EVERYONE),
        ("false", set()),
        ('  stage == "new"\n  or stage == "active"\n', {"ann", "bob"}),  # a TOML multi-line string
    ],
)
def test_and_or_not_follow_python_precedence(people, text, expected):
    assert matching(people, text) == expected


# ---------------------------------------------------------------------------------------
# Functions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('did("review")', {"ann", "bob", "dan", "eve"}),  # cat's review is dated tomorrow
        ('did("review", within="30d")', {"ann", "eve"}),
        ('did("review", within="1w")', {"ann", "eve"}),
        ('did("review", within="2d")', {"eve"}),
        ('did("page_view")', {"bob"}),
        ('did("never_happens")', set()),
        ('not did("review", within="30d")', {"bob", "cat", "dan"}),
        ('did("review") == false', {"cat"}),
        # "order" means the orders table (live, not the profile): eve counts.
        ('did("order")', {"ann", "bob", "dan", "eve"}),
        ('did("order", within="7d")', {"bob", "eve"}),
        ('did("order", within="60d")', {"ann", "bob", "eve"}),
        ('not did("order")', {"cat"}),
        ('count_of("review") >= 2', {"ann"}),
        ('count_of("review") == 0', {"cat"}),
        ('count_of("review", within="30d") == 1', {"eve"}),
        ('count_of("order") >= 3', {"ann", "dan"}),
        ('2 <= count_of("order")', {"ann", "dan"}),
        ('count_of("order", within="60d") in [2]', {"ann"}),
        ('consent("email")', {"ann"}),  # bob withdrew email consent: not granted
        ('consent("sms")', {"bob"}),
        ('consent("wechat")', {"cat"}),
        ('not consent("email")', {"bob", "cat", "dan", "eve"}),
    ],
)
def test_functions_select_exactly_the_customers_they_describe(people, text, expected):
    assert matching(people, text) == expected


SEGMENTS = {
    "lapsing": 'stage in ["at_risk", "churned"]',
    "reachable_lapsing": 'segment("lapsing") and has_email',
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('segment("lapsing")', {"dan"}),
        ('segment("reachable_lapsing")', {"dan"}),
        ('segment("lapsing") or stage == "new"', {"bob", "dan"}),
        ('not segment("lapsing")', {"ann", "bob", "cat", "eve"}),
        ('not segment("reachable_lapsing") and has_phone', {"bob"}),
    ],
)
def test_segment_inlines_the_named_expression(people, text, expected):
    assert matching(people, text, SEGMENTS) == expected


def test_unknown_segment_is_rejected_when_parsing():
    error = errors_of('segment("lapsng")', segments=SEGMENTS)
    assert error.message == "unknown segment 'lapsng'"
    assert error.column == 9
    assert "did you mean 'lapsing'?" in str(error)


# ---------------------------------------------------------------------------------------
# In audience selection, and SQLite's limits


def selected(engine, config) -> dict[str, str]:
    query = audience_select(config, config.campaigns[0], now=NOW).subquery()
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Customer.external_id, query.c.channel)
                            .join(query, query.c.customer_id == Customer.id)).all()
    return dict(rows)


@pytest.mark.parametrize(
    ("audience", "expected"),
    [
        # Reachable (an address, no withdrawn consent: these people's consent records are
        # what the consent() tests need, so the campaign runs under "unless_withdrawn"):
        # ann, bob (text), cat, dan.
        ("", {"ann": "mail", "bob": "text", "cat": "mail", "dan": "mail"}),
        # min_orders reads live orders (ann 3, dan 4); where excludes ann's recent review.
        ("min_orders = 2\nwhere = 'not did(\"review\", within=\"30d\")'", {"dan": "mail"}),
        ("where = 'stage in [\"new\", \"active\"]'", {"ann": "mail", "bob": "text"}),
        ('segment = "lapsing"', {"dan": "mail"}),
        ('segment = "lapsing"\nacquisition_channel = ["store"]', {}),
        ("segment = \"lapsing\"\nwhere = 'has_phone'", {"dan": "mail"}),
        ("attributes = { vip = true }\nwhere = 'consent(\"email\")'", {"ann": "mail"}),
        ("where = 'has_phone'\nacquisition_channel = [\"ecommerce\", \"direct\"]", {"bob": "text", "dan": "mail"}),
    ],
)
def test_campaign_audiences_combine_structured_filters_with_expressions(people, tmp_path, audience, expected):
    extra = ("[compliance]\nconsent = \"unless_withdrawn\"\n"
             "[segments]\nlapsing = 'stage in [\"at_risk\", \"churned\"]'\n")
    config = parse_config(config_text(audience, extra=extra), base=base_dir(tmp_path))
    assert selected(people, config) == expected


def test_expression_select_matches_an_expression_alone(people):
    config = AppConfig.model_validate({"segments": {"lapsing": 'stage == "at_risk"'}})

    def ids(expression) -> set[str]:
        inner = expression_select(config, expression, now=NOW).subquery()
        with people.connect() as conn:
            return set(conn.execute(sa.select(Customer.external_id)
                                    .join(inner, inner.c.customer_id == Customer.id)).scalars())

    assert ids('segment("lapsing") or stage == "new"') == {"bob", "dan"}
    assert ids("not has_email") == {"bob", "eve"}  # no reachability filter here
    assert ids(parse('did("order", within="7d")')) == {"bob", "eve"}
    with pytest.raises(ExpressionError, match="unknown segment 'other'"):
        expression_select(config, 'segment("other")', now=NOW)


def test_a_segment_used_twice_per_level_for_ten_levels_still_runs_on_sqlite(people):
    # Given segments that each use the one below twice: 1,024 conditions once inlined,
    # which nurture check accepts (found by tests/campaigns/project/test_check_tick_property.py)
    segments = {f"x{n}": (f'segment("x{n - 1}") or segment("x{n - 1}")' if n else "has_email")
                for n in range(11)}
    # Then SQLite runs the query (a flat OR chain that long is over its depth limit of
    # 1,000) and it selects what the innermost segment does
    assert matching(people, 'segment("x10")', segments) == matching(people, "has_email")
    assert matching(people, 'not segment("x10") and has_email', segments) == set()


def test_long_and_and_or_chains_keep_their_meaning_when_balanced(people):
    tiers = " or ".join(f"attributes.tier == {n}" for n in range(1, 40))
    assert matching(people, tiers) == matching(people, "attributes.tier >= 1 and attributes.tier <= 39") != set()
    bounds = " and ".join(f"orders_count >= {n}" for n in range(0, 5))
    assert matching(people, bounds) == matching(people, "orders_count >= 4")
    assert matching(people, f"not ({tiers}) and orders_count >= 4") == set()
