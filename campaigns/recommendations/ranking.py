"""Each customer's candidates in three tiers, the configured exclusions, and the top N
into a target shaped like ``recommendation``.

Tiers: 1 ``co_purchase`` (the consequents of the associations of what they bought, by
association score), 2 ``category`` (the best sellers of their categories on their
channel, by affinity x buyers), 3 ``popular`` (the best sellers of their channel). Every
candidate of a tier ranks above every candidate of the next: a significant association
is never pushed down by a best-seller. A product is kept once, in its best tier.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa

from campaigns.config.recommendations import RecommendationsConfig
from campaigns.recommendations.work import (
    AFFINITY,
    ASSOCIATION_TOP,
    BUY,
    CANDIDATE,
    CHANNEL,
    FILLED,
    POPULAR,
    RECENT,
    RECENT_SENT,
    analyse,
    recreate,
)
from campaigns.store.models import Order, RecommendationSent

_TIME = Order.__table__.c.ordered_at.type
_SENT = RecommendationSent.__table__

#: The signals, in tier order.
REASONS = ("co_purchase", "category", "popular")


#: A customer's co-purchase candidates follow from their most recent distinct products
#: only ("because you bought X" is about what they bought lately): with 30 products each,
#: every one's associations made candidates by the hundred per customer, most of them
#: never ranked, and the ranking's sorts cost several times the association self-join.
RECENT_PRODUCTS = 5


def pool_size(top_n: int) -> int:
    """How many candidates the category and popular tiers draw per category or channel:
    enough that exclusions rarely leave a customer short of ``top_n``."""
    return max(20, 2 * top_n)


def write_candidates(conn: sa.Connection, config: RecommendationsConfig, *, as_of: datetime, top_n: int,
                     pool: int, reasons: Collection[str] = REASONS) -> None:
    """``rec_candidate``: every customer's candidates of the ``reasons`` asked for, the
    exclusions applied as they are written (once per candidate: the ranking reads what is
    left). Every candidate is in stock: the association heads and the popularity pools
    hold in-stock products only.

    A customer whose co-purchase candidates alone give ``top_n`` products gets no category
    or popular candidates: the tiers rank every co-purchase one above them, so they could
    never be shown, and on data rich in associations they were more than half of the rows
    the ranking sorts."""
    write_recent_sent(conn, config, as_of=as_of)
    recreate(conn, CANDIDATE)
    columns = ["customer_id", "sku", "category", "tier", "score", "reason", "because_sku"]
    if "co_purchase" in reasons:
        top, recent = ASSOCIATION_TOP.c, RECENT.c
        write_recent(conn)
        # The customer's latest products, each with its best associations.
        conn.execute(sa.insert(CANDIDATE).from_select(columns, sa.select(
            recent.customer_id, top.consequent, top.category, sa.literal(1), top.score,
            sa.literal("co_purchase"), top.antecedent,
        ).select_from(RECENT.join(ASSOCIATION_TOP, top.antecedent == recent.sku))
            .where(*_kept(config, as_of=as_of, customer_id=recent.customer_id, sku=top.consequent,
                          category=top.category))))
    recreate(conn, FILLED)
    if "co_purchase" in reasons and ("category" in reasons or "popular" in reasons):
        c = CANDIDATE.c
        conn.execute(sa.insert(FILLED).from_select(["customer_id"], sa.select(c.customer_id)
                     .group_by(c.customer_id).having(sa.func.count(sa.distinct(c.sku)) >= top_n)))
        analyse(conn, FILLED)

    def unfilled(customer_id: sa.ColumnElement[int]) -> sa.ColumnElement[bool]:
        return ~sa.exists().where(FILLED.c.customer_id == customer_id)

    pop = POPULAR.c
    if "category" in reasons:
        customer_id = AFFINITY.c.customer_id
        conn.execute(sa.insert(CANDIDATE).from_select(columns, sa.select(
            customer_id, pop.sku, pop.category, sa.literal(2), AFFINITY.c.weight * pop.buyers,
            sa.literal("category"), sa.null(),
        ).select_from(
            AFFINITY.join(CHANNEL, CHANNEL.c.customer_id == customer_id)
            .join(POPULAR, sa.and_(pop.channel == CHANNEL.c.channel, pop.category == AFFINITY.c.category))
        ).where(pop.category_rank <= pool, unfilled(customer_id),
                *_kept(config, as_of=as_of, customer_id=customer_id, sku=pop.sku, category=pop.category))))
    if "popular" in reasons:
        customer_id = CHANNEL.c.customer_id
        conn.execute(sa.insert(CANDIDATE).from_select(columns, sa.select(
            customer_id, pop.sku, pop.category, sa.literal(3), sa.cast(pop.buyers, sa.Float),
            sa.literal("popular"), sa.null(),
        ).select_from(CHANNEL.join(POPULAR, pop.channel == CHANNEL.c.channel))
            .where(pop.channel_rank <= pool, unfilled(customer_id),
                   *_kept(config, as_of=as_of, customer_id=customer_id, sku=pop.sku, category=pop.category))))


def write_recent(conn: sa.Connection) -> None:
    """``rec_recent``: each customer's :data:`RECENT_PRODUCTS` latest distinct products
    (ties: by sku). A table of its own, analysed: as a subquery the planner took the
    window's filter for no filter at all, guessed five times the candidates there are,
    and sorted them all for a merge anti-join instead of hashing what they bought."""
    recreate(conn, RECENT)
    ranked = sa.select(BUY.c.customer_id, BUY.c.sku, sa.func.row_number().over(
        partition_by=BUY.c.customer_id, order_by=[BUY.c.last_at.desc(), BUY.c.sku]).label("place")
    ).subquery("ranked")
    conn.execute(sa.insert(RECENT).from_select(["customer_id", "sku"], sa.select(
        ranked.c.customer_id, ranked.c.sku).where(ranked.c.place <= RECENT_PRODUCTS)))
    analyse(conn, RECENT)


def _bought_excluded(config: RecommendationsConfig, *, as_of: datetime, category: sa.ColumnElement,
                     last_at: sa.ColumnElement) -> sa.ColumnElement[bool]:
    """When a product the customer bought (last on ``last_at``) stays left out."""
    if config.exclude_bought == "always":
        return sa.true()
    windows = config.repurchase_categories
    # Within its category's repurchase window, or the default one for other categories
    # (none: those stay out for good).
    within = [sa.and_(category == name, last_at >= as_of - window) for name, window in windows.items()]
    other = sa.or_(category.is_(None), category.not_in(list(windows))) if windows else sa.true()
    if config.repurchase_after is None:
        within.append(other)
    else:
        within.append(sa.and_(other, last_at >= as_of - config.repurchase_after))
    return sa.or_(*within)


def _kept(config: RecommendationsConfig, *, as_of: datetime, customer_id: sa.ColumnElement[int],
          sku: sa.ColumnElement[str], category: sa.ColumnElement) -> list[sa.ColumnElement[bool]]:
    """The exclusions for the candidate ``sku`` (of ``category``) of ``customer_id``: not
    bought (as configured), not of a category recently sent."""
    kept: list[sa.ColumnElement[bool]] = []
    if config.exclude_bought != "never":
        kept.append(~sa.exists().where(
            BUY.c.customer_id == customer_id, BUY.c.sku == sku,
            _bought_excluded(config, as_of=as_of, category=category, last_at=BUY.c.last_at)))
    if config.recent_category_window:
        kept.append(~sa.exists().where(RECENT_SENT.c.customer_id == customer_id, RECENT_SENT.c.category == category))
    return kept


def write_recent_sent(conn: sa.Connection, config: RecommendationsConfig, *, as_of: datetime) -> None:
    """``rec_recent_sent``: the (customer, category) pairs a message showed within
    ``recent_category_window`` before ``as_of``. Read once, not probed per candidate: the
    planner, guessing one row per anti-join, probed ``recommendation_sent``'s index once
    for each of 750k candidates at 20k customers."""
    recreate(conn, RECENT_SENT)
    if config.recent_category_window:
        sent = _SENT.c
        conn.execute(sa.insert(RECENT_SENT).from_select(["customer_id", "category"], sa.select(
            sent.customer_id, sent.category).distinct().where(
            sent.category.is_not(None), sent.sent_at >= as_of - config.recent_category_window, sent.sent_at < as_of)))
    analyse(conn, RECENT_SENT)


def write_ranked(conn: sa.Connection, target: sa.Table, *, top_n: int, computed_at: datetime) -> None:
    """Each customer's first ``top_n`` candidates into ``target`` (emptied first), each
    product once in its best tier, ranked from 1: tier, then score (higher first), then sku."""
    conn.execute(sa.delete(target))
    c = CANDIDATE.c
    deduplicated = sa.select(
        c.customer_id, c.sku, c.category, c.tier, c.score, c.reason, c.because_sku,
        sa.func.row_number().over(partition_by=[c.customer_id, c.sku],
                                  order_by=[c.tier, c.score.desc(), c.because_sku]).label("copy"),
    ).subquery("deduplicated")
    d = deduplicated.c
    ranked = sa.select(
        d.customer_id, d.sku, d.category, d.score, d.reason, d.because_sku,
        sa.func.row_number().over(partition_by=d.customer_id, order_by=[d.tier, d.score.desc(), d.sku])
        .label("rank"),
    ).where(d.copy == 1).subquery("ranked")
    r = ranked.c
    conn.execute(sa.insert(target).from_select(
        ["customer_id", "rank", "sku", "category", "score", "reason", "because_sku", "computed_at"],
        sa.select(r.customer_id, r.rank, r.sku, r.category, r.score, r.reason, r.because_sku,
                  sa.literal(computed_at, type_=_TIME)).where(r.rank <= top_n)))
