"""Who an audience expression matches: the count and a sample, for ``nurture audience --where``.

(A campaign's full breakdown by channel and exclusion is
:func:`campaigns.audience.selection.audience_breakdown`.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.audience.selection import expression_select
from campaigns.config.schema import AppConfig
from campaigns.store.models import Customer


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
