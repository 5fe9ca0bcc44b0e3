"""Dry runs for ``nurture audience``: who a campaign would target now, with who its holdout
takes (:func:`campaign_audience`), and who an audience expression matches
(:func:`expression_matches`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.audience.selection import audience_breakdown, expression_select
from campaigns.config.campaigns import CampaignConfig
from campaigns.config.schema import AppConfig
from campaigns.sending.assignment import in_holdout_sql
from campaigns.store.models import Customer


def campaign_audience(engine: Engine, config: AppConfig, campaign: CampaignConfig, *, now: datetime,
                      sample_size: int) -> dict[str, Any]:
    """:func:`~campaigns.audience.selection.audience_breakdown` of ``campaign`` at ``now``
    with its holdout: the customers planning would hold out, by the same rule
    (:func:`~campaigns.sending.assignment.in_holdout_sql`), are counted in ``holdout``
    and flagged in the sample."""
    share = campaign.holdout

    def held_out(customer_id: sa.ColumnElement[int]) -> sa.ColumnElement[bool]:
        return in_holdout_sql(customer_id, campaign.name, share)

    return audience_breakdown(engine, config, campaign, now=now, sample_size=sample_size,
                              held_out=held_out if share else None)


def expression_matches(engine: Engine, config: AppConfig, where: str, *, now: datetime,
                       sample: int) -> dict[str, Any]:
    """``{"where", "matched", "sample"}``: how many customers ``where`` matches as of ``now``,
    and the first ``sample`` of them (external_id, name, acquisition_channel) by row id."""
    query = expression_select(config, where, now=now).subquery()
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(query)).scalar_one()
        rows = conn.execute(sa.select(Customer.external_id, Customer.name, Customer.acquisition_channel)
                            .join(query, query.c.customer_id == Customer.id)
                            .order_by(Customer.id).limit(sample)).all()
    return {"where": where, "matched": count,
            "sample": [{"external_id": r[0], "name": r[1], "acquisition_channel": r[2]} for r in rows]}
