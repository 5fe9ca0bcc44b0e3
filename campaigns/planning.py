"""Turning a due campaign run into delivery rows, exactly once.

A run is claimed by inserting ``campaign_run(campaign, scheduled_at)``, which is UNIQUE:
of two schedulers ticking at once, one wins. Planning is one ``INSERT ... SELECT`` per step
that ignores existing send keys, so replanning a run (after a crash) adds nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.audience import audience_select
from campaigns.config import AppConfig, CampaignConfig
from campaigns.db import dialect_insert
from campaigns.models import CampaignRun, Delivery, utcnow


@dataclass(frozen=True)
class PlannedRun:
    """What planning one run did."""

    campaign: str
    run_id: int
    scheduled_at: datetime
    planned: int


def claim_run(engine: Engine, campaign: str, scheduled_at: datetime, *, lease: timedelta) -> int | None:
    """Claim the run of ``campaign`` at ``scheduled_at``; its id if this caller now owns it.

    A run left in ``planning`` by a scheduler that died is taken over once its lease ends.
    """
    now = utcnow()
    with engine.begin() as conn:
        insert = (
            dialect_insert(conn, CampaignRun.__table__)
            .values(campaign=campaign, scheduled_at=scheduled_at, status="planning", claimed_at=now, planned_count=0)
            .on_conflict_do_nothing(index_elements=["campaign", "scheduled_at"])
            .returning(CampaignRun.id)
        )
        # RETURNING yields the id only when this insert won (rowcount is not reliable here).
        claimed = conn.execute(insert).scalar_one_or_none()
        if claimed is not None:
            return claimed
        takeover = (
            sa.update(CampaignRun)
            .where(
                CampaignRun.campaign == campaign,
                CampaignRun.scheduled_at == scheduled_at,
                CampaignRun.status == "planning",
                CampaignRun.claimed_at < now - lease,
            )
            .values(claimed_at=now)
            .returning(CampaignRun.id)
        )
        return conn.execute(takeover).scalar_one_or_none()


def occurrence_key(campaign: CampaignConfig, scheduled_at: datetime) -> str:
    """The part of the send key that tells occurrences apart ("once" unless re-entry allowed)."""
    if campaign.reentry == "every_run":
        return scheduled_at.strftime("%Y%m%dT%H%M")
    return "once"


def plan_run(
    engine: Engine, config: AppConfig, campaign: CampaignConfig, *, run_id: int, scheduled_at: datetime
) -> PlannedRun:
    """Write one queued delivery per targeted customer and step; returns the run's count.

    The send key is ``campaign:step:customer:occurrence``; the channel is not part of it,
    so a customer whose preferred channel changed between runs still gets one message.
    """
    occurrence = occurrence_key(campaign, scheduled_at)
    now = utcnow()
    with engine.begin() as conn:
        for step_index, step in enumerate(campaign.steps):
            audience = audience_select(config, campaign, now=scheduled_at).subquery("targets")
            prefix = f"{campaign.name}:{step_index}:"
            send_key = sa.literal(prefix) + sa.cast(audience.c.customer_id, sa.String) + sa.literal(f":{occurrence}")
            rows = sa.select(
                send_key,
                sa.literal(run_id),
                sa.literal(campaign.name),
                sa.literal(step_index),
                audience.c.customer_id,
                audience.c.channel,
                sa.literal(step.template),
                sa.literal("queued"),
                sa.literal(0),
                sa.literal(scheduled_at + step.delay, type_=Delivery.__table__.c.due_at.type),
                sa.literal(now, type_=Delivery.__table__.c.created_at.type),
                sa.literal(now, type_=Delivery.__table__.c.updated_at.type),
            ).where(sa.literal_column("1") == 1)  # SQLite needs a WHERE before ON CONFLICT
            insert = (
                dialect_insert(conn, Delivery.__table__)
                .from_select(
                    [
                        "send_key", "run_id", "campaign", "step", "customer_id", "channel", "template",
                        "status", "attempts", "due_at", "created_at", "updated_at",
                    ],
                    rows,
                )
                .on_conflict_do_nothing(index_elements=["send_key"])
            )
            conn.execute(insert)
        # rowcount of INSERT ... SELECT is not reported by every driver; count the run's rows.
        planned = conn.execute(
            sa.select(sa.func.count()).select_from(Delivery).where(Delivery.run_id == run_id)
        ).scalar_one()
        conn.execute(
            sa.update(CampaignRun)
            .where(CampaignRun.id == run_id)
            .values(status="planned", planned_count=planned)
        )
    return PlannedRun(campaign=campaign.name, run_id=run_id, scheduled_at=scheduled_at, planned=planned)
