"""Profiles against hand-computed answers: scores, segments, stages, boundaries, entries."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.config.profiles import RfmConfig
from campaigns.config.schema import AppConfig
from campaigns.config.vocabulary import DEFAULT_RFM_RULES
from campaigns.customers.profiles import recompute_profiles, segment_case
from campaigns.project.loading import parse_config
from campaigns.store.db import make_engine, upgrade
from campaigns.store.models import Customer, CustomerProfile, Order, ProfileTransition

AS_OF = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CONFIG = AppConfig()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC) if "+" not in text else datetime.fromisoformat(text)


def add_customer(conn, external_id: str, orders: list[tuple[str, float]], created: str = "2024-01-01T00:00") -> int:
    customer_id = conn.execute(
        sa.insert(Customer.__table__).values(external_id=external_id, created_at=at(created), updated_at=AS_OF,
                                             attributes={}).returning(Customer.__table__.c.id)
    ).scalar_one()
    for index, (when, amount) in enumerate(orders):
        conn.execute(sa.insert(Order.__table__).values(order_id=f"{external_id}-{index}", customer_id=customer_id,
                                                       ordered_at=at(when), amount=amount))
    return customer_id


@pytest.fixture
def shop(sqlite_engine):
    """Seven customers whose profiles as of 2026-06-01 12:00 UTC are worked out by hand:

    R ranks by last order (n=6): c, d, b, e, a, f -> scores 1, 1, 2, 3, 4, 5
    F ranks by order count: c=d=f (1 order) rank 1, a=b (2) rank 4, e (3) rank 6 -> 1, 3, 5
    M ranks by total: c 30, e 60, d 80, a 150, f 200, b 600 -> 1, 1, 2, 3, 4, 5
    score = 1 + 5 * (rank - 1) // n
    """
    with sqlite_engine.begin() as conn:
        add_customer(conn, "p", [], created="2026-05-01T09:00")
        add_customer(conn, "a", [("2026-05-20T12:00", 50), ("2026-05-30T12:00", 100)])
        add_customer(conn, "b", [("2025-01-01T12:00", 500), ("2026-04-01T12:00", 100)])
        add_customer(conn, "c", [("2025-12-01T12:00", 30)])
        add_customer(conn, "d", [("2026-01-15T12:00", 80)])
        add_customer(conn, "e", [("2026-05-01T08:00", 10), ("2026-05-01T12:00", 20), ("2026-05-01T18:00", 30)])
        # f: one order exactly at the as-of moment (counts) and one a second later (does not).
        add_customer(conn, "f", [("2026-06-01T12:00", 200), ("2026-06-01T12:00:01", 999)])
    return sqlite_engine


def profiles_by_id(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Customer.external_id, CustomerProfile).join(CustomerProfile,
                                                                   CustomerProfile.customer_id == Customer.id)
        ).mappings().all()
    return {row["external_id"]: dict(row) for row in rows}


def test_scores_segments_and_stages_match_the_hand_computed_table(shop):
    report = recompute_profiles(shop, CONFIG, as_of=AS_OF)
    got = profiles_by_id(shop)

    assert report.customers == 7
    expected = {
        #      R     F     M     segment               stage
        "p": (None, None, None, None, "prospect"),
        "a": (4, 3, 3, "potential_loyalist", "new"),
        "b": (2, 3, 5, "at_risk", "active"),
        "c": (1, 1, 1, "lost", "churned"),
        "d": (1, 1, 2, "lost", "at_risk"),
        "e": (3, 5, 1, "loyal", "active"),
        "f": (5, 1, 4, "new", "new"),
    }
    actual = {k: (v["r_score"], v["f_score"], v["m_score"], v["rfm_segment"], v["stage"]) for k, v in got.items()}
    assert actual == expected


def test_order_facts_days_and_stage_dates(shop):
    recompute_profiles(shop, CONFIG, as_of=AS_OF)
    got = profiles_by_id(shop)

    assert got["e"]["orders_count"] == 3 and got["e"]["total_spent"] == 60 and got["e"]["avg_order_value"] == 20
    assert got["a"]["last_order_at"] == at("2026-05-30T12:00")
    assert got["f"]["last_order_at"] == AS_OF and got["f"]["orders_count"] == 1  # boundary: <= as_of
    assert got["p"]["orders_count"] == 0 and got["p"]["last_order_at"] is None
    # Stage dates come from the data: at_risk = last order + 90 days, churned = + 180 days.
    assert got["d"]["stage_since"] == at("2026-01-15T12:00") + timedelta(days=90)
    assert got["c"]["stage_since"] == at("2025-12-01T12:00") + timedelta(days=180)
    assert got["a"]["stage_since"] == at("2026-05-20T12:00")
    assert got["p"]["stage_since"] == at("2026-05-01T09:00")


def test_refunded_and_cancelled_orders_are_no_purchases(shop):
    with shop.begin() as conn:
        add_customer(conn, "r", [("2026-05-10T12:00", 70), ("2026-05-25T12:00", 900),
                                            ("2026-05-26T12:00", 40)])
        conn.execute(sa.update(Order).where(Order.order_id == "r-1").values(status="refunded"))
        conn.execute(sa.update(Order).where(Order.order_id == "r-2").values(status="cancelled"))
    recompute_profiles(shop, CONFIG, as_of=AS_OF)
    got = profiles_by_id(shop)["r"]
    assert (got["orders_count"], got["total_spent"], got["last_order_at"]) == (1, 70, at("2026-05-10T12:00"))


def test_an_as_of_given_in_another_time_zone_is_the_same_instant(shop):
    recompute_profiles(shop, CONFIG, as_of=datetime.fromisoformat("2026-06-01T20:00:00+08:00"))
    assert profiles_by_id(shop)["f"]["orders_count"] == 1
    recompute_profiles(shop, CONFIG, as_of=datetime.fromisoformat("2026-06-01T19:59:59+08:00"))
    assert profiles_by_id(shop)["f"]["orders_count"] == 0
    assert profiles_by_id(shop)["f"]["stage"] == "prospect"


def test_equal_measures_get_equal_scores_whatever_the_customer_ids(sqlite_engine):
    with sqlite_engine.begin() as conn:
        for name in ("z", "y", "x", "w"):  # inserted in reverse so ids do not follow names
            add_customer(conn, name, [("2026-05-01T12:00", 100)])
        add_customer(conn, "v", [("2026-01-01T12:00", 10)])
    recompute_profiles(sqlite_engine, CONFIG, as_of=AS_OF)
    got = profiles_by_id(sqlite_engine)
    tied = {(got[n]["r_score"], got[n]["f_score"], got[n]["m_score"]) for n in ("w", "x", "y", "z")}
    assert tied == {(2, 1, 2)}  # ranks 2 of 5 -> 1 + 5 * 1 // 5 = 2 (R, M); F all tied at rank 1
    assert (got["v"]["r_score"], got["v"]["m_score"]) == (1, 1)


def test_entries_are_recorded_once_per_change(shop):
    recompute_profiles(shop, CONFIG, as_of=AS_OF)
    with shop.begin() as conn:
        first = conn.execute(sa.select(sa.func.count()).select_from(ProfileTransition)
                             .where(ProfileTransition.kind == "stage")).scalar()
        d = conn.execute(sa.select(Customer.id).where(Customer.external_id == "d")).scalar_one()
        conn.execute(sa.insert(Order.__table__).values(order_id="d-new", customer_id=d,
                                                       ordered_at=AS_OF + timedelta(days=1), amount=10))
    later = AS_OF + timedelta(days=2)
    report = recompute_profiles(shop, CONFIG, as_of=later)
    again = recompute_profiles(shop, CONFIG, as_of=later)

    assert first == 7  # every customer entered a first stage
    assert report.stage_entries == 1 and again.stage_entries == 0
    with shop.connect() as conn:
        entry = conn.execute(sa.select(ProfileTransition).where(ProfileTransition.customer_id == d,
                                                                ProfileTransition.kind == "stage")
                             .order_by(ProfileTransition.id.desc())).first()
    assert (entry.previous, entry.value, entry.entered_at) == ("at_risk", "active", later)
    assert profiles_by_id(shop)["d"]["stage_since"] == later


@pytest.mark.parametrize("rules", [DEFAULT_RFM_RULES], ids=["default"])
def test_every_one_of_the_125_score_combinations_gets_exactly_one_label_and_every_label_is_used(rules):
    engine = make_engine("sqlite://")
    rfm = RfmConfig(segments=rules)
    combos = list(itertools.product(range(1, 6), repeat=3))
    with engine.connect() as conn:
        # The SQL CASE itself is evaluated, not a Python mirror of it.
        labels = {
            (r, f, m): conn.execute(sa.select(segment_case(rfm, sa.literal(r), sa.literal(f), sa.literal(m)))).scalar()
            for r, f, m in combos
        }
    assert len(labels) == 125
    assert None not in labels.values()
    assert set(labels.values()) == {rule.name for rule in rules}
    # Spot checks against the published meaning of the labels.
    assert labels[(5, 5, 5)] == "champions"
    assert labels[(1, 5, 5)] == "cant_lose"
    assert labels[(5, 1, 1)] == "new"
    assert labels[(1, 1, 1)] == "lost"


def test_a_marketer_can_replace_the_rule_table_in_config():
    config = parse_config("""
[[rfm.segments]]
name = "best"
r = [4, 5]
f = [4, 5]
[[rfm.segments]]
name = "everyone_else"
""")
    assert config.rfm.names == ["best", "everyone_else"]


customers_strategy = st.lists(
    st.lists(st.tuples(st.integers(min_value=0, max_value=800), st.integers(min_value=1, max_value=500)),
             max_size=4),
    min_size=1, max_size=12,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(customers=customers_strategy, reverse=st.booleans())
def test_recompute_is_deterministic_and_gives_everyone_one_stage_and_one_segment(tmp_path_factory, customers, reverse):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('prop') / 'p.db'}")
    upgrade(engine)
    order = list(enumerate(customers))
    if reverse:  # insertion order must not matter
        order.reverse()
    with engine.begin() as conn:
        for number, orders in order:
            add_customer(conn, f"c{number}", [((AS_OF - timedelta(days=d)).isoformat(), float(a)) for d, a in orders])
    recompute_profiles(engine, CONFIG, as_of=AS_OF)
    first = profiles_by_id(engine)
    recompute_profiles(engine, CONFIG, as_of=AS_OF)
    second = profiles_by_id(engine)
    engine.dispose()

    keys = ("r_score", "f_score", "m_score", "rfm_segment", "stage", "stage_since", "orders_count")
    assert {k: [v[x] for x in keys] for k, v in first.items()} == {k: [v[x] for x in keys] for k, v in second.items()}
    assert len(first) == len(customers)
    for number, orders in enumerate(customers):
        profile = first[f"c{number}"]
        assert profile["stage"] in ("prospect", "new", "active", "at_risk", "churned")
        assert (profile["rfm_segment"] is None) == (not orders)
        assert (profile["stage"] == "prospect") == (not orders)


def two_recomputes(engine, *, partial: bool) -> None:
    """The shop, a full recompute, then new orders of a and c and a second recompute:
    full, or only for a and c (what a merge's survivor gets)."""
    from campaigns.customers.profiles import recompute_profiles_for

    with engine.begin() as conn:
        ids = {name: add_customer(conn, name, orders) for name, orders in [
            ("p", []), ("a", [("2026-05-20T12:00", 50)]), ("b", [("2025-01-01T12:00", 500)]),
            ("c", [("2025-12-01T12:00", 30)]), ("e", [("2026-05-01T08:00", 10)]),
        ]}
    recompute_profiles(engine, CONFIG, as_of=AS_OF - timedelta(days=30))
    with engine.begin() as conn:
        for name, when, amount in [("a", "2026-05-30T12:00", 900), ("c", "2026-05-31T12:00", 5), ("b", "2026-05-31T13:00", 1)]:
            conn.execute(sa.insert(Order.__table__).values(order_id=f"{name}-late", customer_id=ids[name],
                                                           ordered_at=at(when), amount=amount))
    if partial:
        recompute_profiles_for(engine, CONFIG, [ids["a"], ids["c"]], as_of=AS_OF)
    else:
        recompute_profiles(engine, CONFIG, as_of=AS_OF)


def profile_state(engine) -> tuple[dict, dict, list]:
    profiles = {name: {k: v for k, v in row.items() if k not in ("customer_id", "computed_at")}
                for name, row in profiles_by_id(engine).items()}
    with engine.connect() as conn:
        transitions = sorted(
            tuple(row) for row in conn.execute(
                sa.select(Customer.external_id, ProfileTransition.kind, ProfileTransition.value,
                          ProfileTransition.previous, ProfileTransition.entered_at)
                .join(Customer, Customer.id == ProfileTransition.customer_id))
        )
        runs = conn.execute(sa.text("SELECT scheduled_at FROM campaign_run WHERE campaign = '__profiles__'")).all()
    return profiles, transitions, runs


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_pair(request, tmp_path):
    """Two fresh databases of one dialect."""
    urls = []
    for name in ("full", "partial"):
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / name}.db"
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
        else:
            url = request.getfixturevalue("postgres_url") if name == "full" else _second_postgres(request)
        urls.append(url)
    engines = [make_engine(url) for url in urls]
    yield engines
    for engine in engines:
        engine.dispose()


def _second_postgres(request):
    # postgres_url is one database per test; the second comes from the same fixture's code.
    from tests.conftest import postgres_url as fixture

    generator = fixture.__wrapped__()
    request.addfinalizer(lambda: next(generator, None))
    return next(generator)


def test_recomputing_some_customers_gives_them_what_a_full_recompute_gives(engine_pair):
    full, partial = engine_pair
    two_recomputes(full, partial=False)
    two_recomputes(partial, partial=True)
    full_profiles, full_transitions, full_runs = profile_state(full)
    partial_profiles, partial_transitions, partial_runs = profile_state(partial)
    # The ranking moved for everyone, but only a and c were recomputed...
    for name in ("a", "c"):
        assert partial_profiles[name] == full_profiles[name]
    assert [t for t in partial_transitions if t[0] in ("a", "c")] == [t for t in full_transitions if t[0] in ("a", "c")]
    assert any(t[0] == "a" and t[4] == AS_OF for t in partial_transitions)  # something did change for them
    # ... the others kept their first recompute, which stays the latest one recorded.
    assert partial_profiles["b"]["as_of"] == AS_OF - timedelta(days=30) != full_profiles["b"]["as_of"]
    assert len(partial_runs) == 1 and len(full_runs) == 2
