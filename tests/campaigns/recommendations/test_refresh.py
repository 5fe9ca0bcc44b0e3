"""The recommendations refresh on SQLite and PostgreSQL: issue 17's planted pattern (B,
which every buyer of A later buys and which is no best-seller, is recommended to the
buyers of A who lack it ahead of the best-sellers), the exclusions (already bought,
repurchase windows, out of stock, a category recently sent), the cutoff, and the
atomic replacement of the live tables. Times are pinned (tests/.../shop.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaigns.config.recommendations import RecommendationsConfig
from campaigns.recommendations.refresh import compute, refresh_recommendations
from campaigns.recommendations.work import NEXT_ASSOCIATIONS, NEXT_RECOMMENDATIONS, drop_all, recreate
from campaigns.store.models import Customer, ProductAssociation, Recommendation
from tests.campaigns.conftest import engine  # noqa: F401 (the fixture: SQLite, then PostgreSQL)
from tests.campaigns.recommendations.shop import Shop, day, planted

CONFIG = RecommendationsConfig(min_support=3, top_n=5)


@pytest.fixture
def shop(engine: sa.Engine) -> Shop:  # noqa: F811
    return Shop(engine)


def associations(engine: sa.Engine) -> dict[tuple[str, str], tuple[int, float, float]]:
    a = ProductAssociation.__table__.c
    with engine.connect() as conn:
        return {(row.antecedent, row.consequent): (row.support, round(row.confidence, 4), round(row.lift, 4))
                for row in conn.execute(sa.select(a.antecedent, a.consequent, a.support, a.confidence, a.lift))}


def test_b_is_recommended_to_buyers_of_a_ahead_of_the_best_sellers(shop):
    planted(shop)
    report = refresh_recommendations(shop.engine, CONFIG, now=day(10))

    # A -> B: 6 customers (a1-a6); 9 bought A, 6 bought B, 29 bought anything:
    # confidence 6/9, lift (6/9) / (6/29) = 3.2. The other pairs with the support have a
    # lift of at most 1.45, under the default min_lift (1.5): not kept.
    found = associations(shop.engine)
    assert found == {("A", "B"): (6, round(6 / 9, 4), round((6 / 9) / (6 / 29), 4))}
    assert report.associations == 1

    for name in ("x1", "x2", "x3"):
        first, *rest = shop.recommended(name)
        assert first == ("B", "co_purchase", "A")
        # then the best-sellers of their categories and channel, never A or S1 again
        assert [sku for sku, _, _ in rest] == ["S2", "S3"]
        assert {reason for _, reason, _ in rest} == {"category"}
    # The best-sellers' own buyers get the books by popularity, not by association.
    assert shop.recommended("s1") == [("A", "popular", None), ("B", "popular", None)]
    assert report.customers == 29 and report.by_reason["co_purchase"] == 3
    assert report.recommendations == sum(report.by_reason.values())


def test_every_pair_with_the_support_is_measured_and_those_above_min_lift_kept(shop):
    planted(shop)
    report = refresh_recommendations(shop.engine, CONFIG.model_copy(update={"min_lift": 0.0}), now=day(10))
    found = associations(shop.engine)
    # S1 -> B is the same six customers as A -> B, but S1's buyers are all 29: lift 1.
    assert found[("S1", "B")] == (6, round(6 / 29, 4), 1.0)
    assert found[("S2", "S3")] == (20, 1.0, round(1 / (20 / 29), 4))
    assert found[("A", "B")] == (6, round(6 / 9, 4), round((6 / 9) / (6 / 29), 4))
    # Below min_support (3): nobody bought A after anything, a1-a6's S1 came with A.
    assert ("S1", "A") not in found and len(found) == report.associations == 4

    refresh_recommendations(shop.engine, CONFIG.model_copy(update={"min_lift": 1.2}), now=day(10))
    assert set(associations(shop.engine)) == {("A", "B"), ("S2", "S3")}


def test_each_product_keeps_only_its_best_associations(shop):
    """However many products follow X, the table keeps X's pool (20 at top_n 5) best by
    lift: it stays bounded by the catalogue, not by the pairs the self-join counts."""
    followers = [f"F{n:02}" for n in range(25)]
    shop.products(("X", "toys"), *[(sku, "toys") for sku in followers])
    # Follower n is bought after X by 3 + n of the X buyers: the support (and lift) grows with n.
    for buyer in range(2 + len(followers)):
        name = f"b{buyer}"
        shop.order(name, 1, "X")
        shop.order(name, 2, *[sku for n, sku in enumerate(followers) if buyer < 3 + n])
    for other in range(10):  # buyers of the followers without X: gives lift its base rate
        shop.order(f"o{other}", 1, *followers)
    report = refresh_recommendations(shop.engine, CONFIG.model_copy(update={"min_lift": 0.0}), now=day(10))
    from_x = sorted((lift, consequent) for (antecedent, consequent), (_, _, lift) in associations(shop.engine).items()
                    if antecedent == "X")
    assert len(from_x) == 20 and report.associations >= 20
    assert {consequent for _, consequent in from_x} == set(followers[5:])


def test_lift_not_the_raw_count_ranks_associations(shop):
    """Ranked by confidence, the best-seller S3 (bought after S2 by all twenty) would
    follow S2 as strongly as B follows A; by lift, B's 4.8 beats S3's 1.45, which the
    default min_lift (1.5) does not even count as an association worth a candidate."""
    planted(shop)
    for n in range(1, 4):
        shop.order(f"y{n}", 3, "S2", "A")  # y1-y3 bought S2 and A: candidates B (via A) and S3 (via S2)
    refresh_recommendations(shop.engine, CONFIG, now=day(10))
    assert shop.recommended("y1")[0] == ("B", "co_purchase", "A")
    assert [reason for sku, reason, _ in shop.recommended("y1") if sku == "S3"] == ["category"]

    chance = CONFIG.model_copy(update={"min_lift": 1.0})
    refresh_recommendations(shop.engine, chance, now=day(10))
    assert shop.recommended("y1")[:2] == [("B", "co_purchase", "A"), ("S3", "co_purchase", "S2")]

    refresh_recommendations(shop.engine, chance.model_copy(update={"score": "confidence"}), now=day(10))
    assert shop.recommended("y1")[0] == ("S3", "co_purchase", "S2")


def test_only_paid_orders_before_the_cutoff_count(shop):
    planted(shop)
    shop.order("x1", 11, "B")  # after the cutoff
    shop.order("x2", 4, "B", status="refunded")
    refresh_recommendations(shop.engine, CONFIG, now=day(10))
    assert shop.recommended("x1")[0] == ("B", "co_purchase", "A")
    assert shop.recommended("x2")[0] == ("B", "co_purchase", "A")
    # A cutoff before the B purchases: nobody has bought A then B yet.
    refresh_recommendations(shop.engine, CONFIG, now=day(4))
    assert ("A", "B") not in associations(shop.engine)
    assert all(reason != "co_purchase" for _, reason, _ in shop.recommended("x1"))


def test_bought_products_are_left_out_always_never_or_within_the_repurchase_window(shop):
    planted(shop)
    shop.order("x1", 9, "B")  # x1 has B since day 9
    refresh_recommendations(shop.engine, CONFIG, now=day(10))
    assert "B" not in [sku for sku, _, _ in shop.recommended("x1")]
    assert [sku for sku, _, _ in shop.recommended("a1")] == ["S2", "S3"]

    never = CONFIG.model_copy(update={"exclude_bought": "never"})
    refresh_recommendations(shop.engine, never, now=day(10))
    assert "S1" in [sku for sku, _, _ in shop.recommended("a1")]

    # Daily goods come back 5 days after the last purchase, books never: a1 bought S1 on
    # day 1 (9 days ago) and A on day 1, B on day 5.
    by_category = CONFIG.model_copy(update={"exclude_bought": "repurchase",
                                            "repurchase_categories": {"daily": timedelta(days=5)}})
    refresh_recommendations(shop.engine, by_category, now=day(10))
    skus = [sku for sku, _, _ in shop.recommended("a1")]
    assert "S1" in skus and "A" not in skus and "B" not in skus
    # s1 bought S3 on day 6, S1 and S2 on day 2: at day 10 only S1 and S2 are 5 days old.
    assert {"S1", "S2"} <= set(sku for sku, _, _ in shop.recommended("s1"))
    assert "S3" not in [sku for sku, _, _ in shop.recommended("s1")]

    # A default window (30d) for the other categories keeps B out for a1 (bought 5 days ago) ...
    default = by_category.model_copy(update={"repurchase_after": timedelta(days=30)})
    refresh_recommendations(shop.engine, default, now=day(10))
    assert "B" not in [sku for sku, _, _ in shop.recommended("a1")]
    # ... and lets it back 31 days after.
    refresh_recommendations(shop.engine, default, now=day(36))
    assert "B" in [sku for sku, _, _ in shop.recommended("a1")]
    assert "A" in [sku for sku, _, _ in shop.recommended("a1")]


def test_out_of_stock_and_unknown_products_are_never_recommended(shop):
    planted(shop)
    shop.order("x1", 4, "GHOST")  # no such product in the catalogue
    with shop.engine.begin() as conn:
        conn.execute(sa.text("UPDATE product SET in_stock = :no WHERE sku IN ('B', 'S2')"), {"no": False})
    refresh_recommendations(shop.engine, CONFIG, now=day(10))
    every = [sku for name in shop.ids for sku, _, _ in shop.recommended(name)]
    assert every and not {"B", "S2", "GHOST"} & set(every)
    assert shop.recommended("x1") == [("S3", "category", None)]
    # The association itself is still measured (it is the customers' behaviour).
    assert ("A", "B") in associations(shop.engine)


def test_a_category_recently_sent_is_left_out(shop):
    planted(shop)
    shop.sent("x1", 8, "S2", "daily")  # two days before the refresh: within 7 days
    shop.sent("x2", 1, "S2", "daily")  # nine days before: outside
    shop.sent("x3", 9, "B", "books")
    refresh_recommendations(shop.engine, CONFIG, now=day(10))
    assert shop.recommended("x1") == [("B", "co_purchase", "A")]
    assert [sku for sku, _, _ in shop.recommended("x2")] == ["B", "S2", "S3"]
    assert [sku for sku, _, _ in shop.recommended("x3")] == ["S2", "S3"]

    off = CONFIG.model_copy(update={"recent_category_window": timedelta(0)})
    refresh_recommendations(shop.engine, off, now=day(10))
    assert [sku for sku, _, _ in shop.recommended("x1")] == ["B", "S2", "S3"]


def test_compute_into_other_tables_leaves_the_live_ones_alone(shop):
    planted(shop)
    refresh_recommendations(shop.engine, CONFIG, now=day(10))
    before = shop.recommended("x1"), associations(shop.engine)
    with shop.engine.connect() as conn:
        with conn.begin():
            recreate(conn, NEXT_ASSOCIATIONS)
            recreate(conn, NEXT_RECOMMENDATIONS)
            report = compute(conn, CONFIG, as_of=day(5.5), associations=NEXT_ASSOCIATIONS,
                             recommendations=NEXT_RECOMMENDATIONS)
            computed = conn.execute(sa.select(sa.func.count()).select_from(NEXT_ASSOCIATIONS)).scalar_one()
        with conn.begin():
            drop_all(conn, NEXT_ASSOCIATIONS, NEXT_RECOMMENDATIONS)
    assert report.associations == computed == 1  # A -> B only, as of day 5.5
    assert (shop.recommended("x1"), associations(shop.engine)) == before


def test_the_tables_are_replaced_atomically(shop, engine):  # noqa: F811
    """While the refresh writes the new rows a reader still sees every old one; a refresh
    that fails midway leaves the old rows."""
    planted(shop)
    refresh_recommendations(engine, CONFIG, now=day(4))
    old = shop.recommended("x1")
    rows = sa.select(sa.func.count()).select_from(Recommendation.__table__)
    with engine.connect() as conn:
        old_count = conn.execute(rows).scalar_one()
    seen: list[tuple[int, list]] = []

    def mid_replacement(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("INSERT INTO RECOMMENDATION "):
            with engine.connect() as reader:  # another connection, as a worker's
                seen.append((reader.execute(rows).scalar_one(), shop.recommended("x1")))

    sa.event.listen(engine, "before_cursor_execute", mid_replacement)
    try:
        refresh_recommendations(engine, CONFIG, now=day(10))
    finally:
        sa.event.remove(engine, "before_cursor_execute", mid_replacement)
    assert seen == [(old_count, old)]
    assert shop.recommended("x1")[0] == ("B", "co_purchase", "A") != old[0]

    def fail(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("INSERT INTO RECOMMENDATION "):
            raise RuntimeError("disk full")

    new = shop.recommended("x1")
    sa.event.listen(engine, "before_cursor_execute", fail)
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            refresh_recommendations(engine, CONFIG, now=day(4))
    finally:
        sa.event.remove(engine, "before_cursor_execute", fail)
    assert shop.recommended("x1") == new and ("A", "B") in associations(engine)


def test_others_write_while_the_refresh_computes(shop, engine):  # noqa: F811
    """The computation writes only temporary tables: a worker recording a delivery (here:
    a new customer) meanwhile is not kept waiting for the database's write lock."""
    planted(shop)
    written: list[str] = []

    def meanwhile(step: str) -> None:
        if step != "ranking":
            return
        sqlite = engine.dialect.name == "sqlite"
        with engine.begin() as other:
            # No waiting: a held write lock fails the insert at once.
            other.execute(sa.text("PRAGMA busy_timeout = 0" if sqlite else "SET LOCAL lock_timeout = '1ms'"))
            other.execute(sa.insert(Customer.__table__).values(
                external_id="late", created_at=day(9), updated_at=day(9), attributes={}))
            if sqlite:
                other.execute(sa.text("PRAGMA busy_timeout = 30000"))
        written.append(step)

    report = refresh_recommendations(engine, CONFIG, now=day(10), progress=meanwhile)
    assert written == ["ranking"] and report.customers == 29


def test_a_top_n_filled_by_associations_leaves_the_other_tiers_out_and_the_rest_keep_them(shop):
    """With top_n = 1, x1's association fills it: its category and popular candidates are
    never written (they could not rank). x2's association is to a category it was just
    sent, so it is not filled and falls back on its category's best seller."""
    planted(shop)
    shop.sent("x2", 9, "B", "books")
    report = refresh_recommendations(shop.engine, CONFIG.model_copy(update={"top_n": 1}), now=day(10))
    assert shop.recommended("x1") == [("B", "co_purchase", "A")]
    assert shop.recommended("x2") == [("S2", "category", None)]
    assert shop.recommended("s1") == [("A", "popular", None)]
    assert report.customers == 29 and report.recommendations == 29
