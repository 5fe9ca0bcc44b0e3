"""The suppression list as the operator reads it: newest entries first, with a total."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.store.models import Suppression


def suppression_list(engine: Engine, *, family: str | None, limit: int) -> dict[str, Any]:
    """``{"total": n, "entries": [...]}``: the newest ``limit`` entries (channel family,
    address, reason, created_at) of one family's list, or of all lists when ``family`` is None."""
    query = sa.select(Suppression.channel, Suppression.address, Suppression.reason, Suppression.created_at)
    if family:
        query = query.where(Suppression.channel == family)
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
        rows = [dict(row._mapping) for row in conn.execute(
            query.order_by(Suppression.created_at.desc(), Suppression.id.desc()).limit(limit))]
    return {"total": total, "entries": rows}
