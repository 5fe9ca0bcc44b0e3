"""A campaign's funnel: of its treated enrolments, how many were messaged, got a delivery
receipt, opened, clicked and converted.

Pure domain code (SQLAlchemy only), read by the dashboard (``workers/http/dashboard.py``).

The unit is the *treated enrolment* (held-out enrolments are never messaged and are left
out), the unit :func:`campaigns.reports.campaign.campaign_report` counts ``enrolled`` and
``converted`` in, so every stage is a share of the report's ``enrolled`` and the last
stage is the report's own ``converted["treated"]``. With ``reentry = "never"`` (the
default) a customer has one enrolment per campaign, so the stages count customers; a
re-entering campaign counts a customer once per enrolment. Each stage counts an
enrolment once however many messages or responses it has: a customer who opens two
messages, or one message three times, is one ``opened``.

Messages belong to their enrolment through ``delivery.enrollment_id`` (set by planning),
responses to their message through ``response.delivery_id``; only messages with status
``sent`` count, as in the report's engagement figures.

The stages are not nested: an email can be opened without the provider ever sending a
delivery receipt (most mail providers send none), a click can come without a tracked
open (images blocked), and a customer can convert without opening anything. So a stage
may be larger than the one before it; each is a share of ``enrolled``, not of the
previous stage.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.schema import AppConfig
from campaigns.reports.campaign import ENGAGEMENT_KINDS, campaign_report
from campaigns.store.models import Delivery, Enrollment, Response

#: The stages, in funnel order; ``campaign_funnel`` returns a count for each.
FUNNEL_STAGES: tuple[str, ...] = ("enrolled", "messaged", "delivered", "opened", "clicked", "converted")
#: Stages read from responses to sent messages, with the response kinds that reach them
#: (the report's engagement definitions, so "opened" means the same on every page).
_RESPONSE_STAGES: dict[str, tuple[str, ...]] = {
    stage: ENGAGEMENT_KINDS[stage] for stage in ("delivered", "opened", "clicked")
}


def campaign_funnel(
    engine: Engine, config: AppConfig, name: str, *, now: datetime, report: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The funnel of campaign ``name`` as of ``now`` (KeyError for an unknown campaign).

    Returns ``{"campaign", "now", "enrolled", "messaged", "delivered", "opened",
    "clicked", "converted"}``, each stage a count of treated enrolments (module
    docstring). ``report`` is the caller's :func:`campaign_report` for the same campaign
    and ``now``, when it has one already; otherwise it is computed for ``converted``.
    """
    config.campaign(name)  # an unknown campaign is a KeyError, as for the report
    if report is None:
        report = campaign_report(engine, config, name, now=now)
    e = Enrollment.__table__
    d = Delivery.__table__
    r = Response.__table__
    sent = d.c.status == "sent"
    # Inner query: one row per treated enrolment with a 0/1 flag per stage (MAX over the
    # fan-out of messages x responses, so repeats count once); the outer one adds the
    # flags up. Outer joins keep enrolments that were never messaged in ``enrolled``.
    reached = {stage: sa.and_(sent, r.c.kind.in_(kinds)) for stage, kinds in _RESPONSE_STAGES.items()}
    assumed = report.get("assumed_delivered") or []
    if assumed:
        # Channels without delivery receipts (the report's): a sent message nothing
        # bounced back for counts as delivered, as in the report.
        bounce = Response.__table__.alias("bounce")
        bounced = sa.exists().where(bounce.c.delivery_id == d.c.id,
                                    bounce.c.kind.in_(ENGAGEMENT_KINDS["not_delivered"]))
        reached["delivered"] = sa.or_(reached["delivered"], sa.and_(sent, d.c.channel.in_(assumed), ~bounced))
    flags = (
        sa.select(
            e.c.id,
            sa.func.max(sa.case((sent, 1), else_=0)).label("messaged"),
            *(sa.func.max(sa.case((condition, 1), else_=0)).label(stage) for stage, condition in reached.items()),
        )
        .select_from(
            e.outerjoin(d, sa.and_(d.c.enrollment_id == e.c.id, d.c.campaign == name))
            .outerjoin(r, r.c.delivery_id == d.c.id)
        )
        .where(e.c.campaign == name, e.c.holdout == sa.false())
        .group_by(e.c.id)
        .subquery("flags")
    )
    stages = ("messaged", *_RESPONSE_STAGES)
    query = sa.select(sa.func.count(), *(sa.func.coalesce(sa.func.sum(flags.c[s]), 0) for s in stages))
    with engine.connect() as conn:
        enrolled, *counts = conn.execute(query).one()
    return {
        "campaign": name,
        "now": now.isoformat(),
        "enrolled": int(enrolled),
        # PostgreSQL sums integers to NUMERIC (Decimal): counts are handed out as int.
        **{stage: int(count) for stage, count in zip(stages, counts, strict=True)},
        "converted": int(report["converted"]["treated"]),
    }
