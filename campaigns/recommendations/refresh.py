"""The recommendations refresh: :func:`compute` as of a cutoff into target tables, and
:func:`refresh_recommendations`, which computes into temporary tables and then replaces
``product_association`` and ``recommendation`` in one short transaction (what the
scheduler runs at ``[recommendations] cron`` and ``nurture recommend refresh`` by hand).

Readers never see a half-written table: until the replacing transaction commits they
read the old rows (PostgreSQL's MVCC, SQLite's WAL snapshot), after it the new ones. The
computation itself runs in a transaction of its own that writes only temporary tables,
so on SQLite the database's write lock is held only while the rows are copied.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.recommendations import RecommendationsConfig
from campaigns.recommendations.affinity import write_affinity, write_popularity
from campaigns.recommendations.associations import write_association_heads, write_associations
from campaigns.recommendations.facts import write_buys, write_channels
from campaigns.recommendations.ranking import REASONS, pool_size, write_candidates, write_ranked
from campaigns.recommendations.work import (
    NEXT_ASSOCIATIONS,
    NEXT_RECOMMENDATIONS,
    drop_all,
    recreate,
)
from campaigns.store.models import Customer, ProductAssociation, Recommendation, utcnow

#: The ``campaign_run`` name the scheduler claims each ``[recommendations] cron`` slot
#: under (as ``__loyalty__`` and ``__profiles__``): two schedulers refresh a slot once.
RECOMMENDATIONS_RUN = "__recommendations__"

#: The steps of a refresh, in order, as progress reports them.
STEPS = ("purchases", "associations", "affinity", "candidates", "ranking", "replace")

_ASSOCIATIONS = ProductAssociation.__table__
_RECOMMENDATIONS = Recommendation.__table__
_CUSTOMERS = Customer.__table__


@dataclass
class RefreshReport:
    """What one refresh (or one computation) wrote, and the seconds each step took."""

    as_of: datetime
    #: Customers who bought anything before ``as_of``.
    buyers: int = 0
    associations: int = 0
    #: Customers with at least one recommendation.
    customers: int = 0
    recommendations: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        """The whole refresh."""
        return sum(self.seconds.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json``)."""
        return {
            "as_of": self.as_of.isoformat(),
            "buyers": self.buyers,
            "associations": self.associations,
            "customers": self.customers,
            "recommendations": self.recommendations,
            "by_reason": dict(self.by_reason),
            "seconds": {step: round(value, 3) for step, value in self.seconds.items()},
            "total_seconds": round(self.total_seconds, 3),
        }


class _Steps:
    """Times each step and tells ``progress`` which one starts."""

    def __init__(self, report: RefreshReport, progress: Callable[[str], None] | None) -> None:
        self.report, self.progress = report, progress
        self.name: str | None = None
        self.started = 0.0

    def start(self, name: str) -> None:
        self.stop()
        if self.progress is not None:
            self.progress(name)
        self.name, self.started = name, time.perf_counter()

    def stop(self) -> None:
        if self.name is not None:
            self.report.seconds[self.name] = time.perf_counter() - self.started
            self.name = None


def compute(conn: sa.Connection, config: RecommendationsConfig, *, as_of: datetime, associations: sa.Table,
            recommendations: sa.Table, top_n: int | None = None, reasons: Collection[str] = REASONS,
            by_channel: bool = True, computed_at: datetime | None = None,
            progress: Callable[[str], None] | None = None, report: RefreshReport | None = None) -> RefreshReport:
    """Compute, from the paid orders before ``as_of`` only, the associations into
    ``associations`` and every customer's first ``top_n`` (default ``config.top_n``)
    recommendations into ``recommendations``: tables shaped like ``product_association``
    and ``recommendation``, emptied first (temporary ones to leave the live tables alone).

    ``reasons`` limits the signals used and ``by_channel = False`` ranks popularity over
    all channels: the evaluation's popularity baseline is ``reasons=("popular",),
    by_channel=False``. The work tables are left on ``conn`` for the caller to read or
    drop (:func:`campaigns.recommendations.work.drop_all`)."""
    report = report or RefreshReport(as_of=as_of)
    steps = _Steps(report, progress)
    top_n = top_n or config.top_n
    pool = pool_size(top_n)
    stamp = computed_at or as_of
    if conn.dialect.name == "postgresql":
        # The self-join's GROUP BY and the window sorts spill to disk at the default 4 MB.
        conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
        # These are scans, hash joins and sorts that JIT compilation does not speed up: its
        # compile time (0.25 s for the candidates' statement at 20k customers) is all it adds.
        conn.exec_driver_sql("SET LOCAL jit = off")
    steps.start("purchases")
    report.buyers = write_buys(conn, as_of=as_of)
    write_channels(conn, as_of=as_of, by_channel=by_channel)
    steps.start("associations")
    if "co_purchase" in reasons:
        report.associations = write_associations(
            conn, associations, customers=report.buyers, min_support=config.min_support,
            min_lift=config.min_lift, score=config.score, keep=pool, computed_at=stamp)
    else:
        conn.execute(sa.delete(associations))
    write_association_heads(conn, associations, score=config.score, pool=top_n)
    steps.start("affinity")
    write_affinity(conn)
    write_popularity(conn, pool=pool)
    steps.start("candidates")
    write_candidates(conn, config, as_of=as_of, top_n=top_n, pool=pool, reasons=reasons)
    steps.start("ranking")
    write_ranked(conn, recommendations, top_n=top_n, computed_at=stamp)
    r = recommendations.c
    counted = conn.execute(sa.select(r.reason, sa.func.count(), sa.func.count(sa.distinct(r.customer_id)))
                           .group_by(r.reason)).all()
    report.by_reason = {reason: 0 for reason in REASONS if reason in reasons}
    report.by_reason.update({reason: int(count) for reason, count, _ in counted})
    report.recommendations = sum(report.by_reason.values())
    report.customers = int(conn.execute(sa.select(sa.func.count(sa.distinct(r.customer_id)))).scalar_one())
    steps.stop()
    return report


def refresh_recommendations(engine: Engine, config: RecommendationsConfig, *, now: datetime | None = None,
                            progress: Callable[[str], None] | None = None) -> RefreshReport:
    """Recompute every customer's recommendations from the paid orders before ``now``
    (default: now) and replace ``product_association`` and ``recommendation`` with them
    atomically. Safe to repeat; the live tables keep their rows if it fails."""
    as_of = now or utcnow()
    report = RefreshReport(as_of=as_of)
    with engine.connect() as conn:
        try:
            with conn.begin():
                recreate(conn, NEXT_ASSOCIATIONS)
                recreate(conn, NEXT_RECOMMENDATIONS)
                compute(conn, config, as_of=as_of, associations=NEXT_ASSOCIATIONS,
                        recommendations=NEXT_RECOMMENDATIONS, progress=progress, report=report)
            steps = _Steps(report, progress)
            steps.start("replace")
            with conn.begin():
                _replace(conn)
            steps.stop()
        finally:
            with conn.begin():
                drop_all(conn, NEXT_ASSOCIATIONS, NEXT_RECOMMENDATIONS)
    return report


def _replace(conn: sa.Connection) -> None:
    """The live tables' rows become the computed ones, in the caller's transaction. The
    delete comes first: on SQLite a transaction that writes first takes the write lock
    (one that read first could not, if a worker wrote meanwhile)."""
    conn.execute(sa.delete(_RECOMMENDATIONS))
    conn.execute(sa.delete(_ASSOCIATIONS))
    conn.execute(sa.insert(_ASSOCIATIONS).from_select(
        [column.name for column in NEXT_ASSOCIATIONS.columns], sa.select(NEXT_ASSOCIATIONS)))
    n = NEXT_RECOMMENDATIONS.c
    # A customer forgotten or merged away since the computation has no recommendations.
    conn.execute(sa.insert(_RECOMMENDATIONS).from_select(
        [column.name for column in NEXT_RECOMMENDATIONS.columns],
        sa.select(NEXT_RECOMMENDATIONS).where(n.customer_id.in_(sa.select(_CUSTOMERS.c.id)))))


__all__ = ["RECOMMENDATIONS_RUN", "STEPS", "RefreshReport", "compute", "refresh_recommendations"]
