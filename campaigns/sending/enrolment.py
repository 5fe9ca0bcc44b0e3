"""Enrolling a trigger's targets and writing their delivery rows, exactly once.

Every trigger (cron slot, stage or segment entry, event, date) ends in the same two
set-based steps (:mod:`campaigns.sending.planning` picks the targets):

1. enrol the targeted customers: one ``enrollment`` row per (campaign, customer,
   occurrence), UNIQUE, with the holdout decided by a deterministic hash
   (:mod:`campaigns.sending.assignment`) and recorded;
2. for each step, one ``INSERT ... SELECT`` of deliveries for the active, not held out
   enrolments, ignoring existing send keys (``campaign:step:customer:occurrence``), with
   the A/B variant assigned the same way and recorded on the delivery.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from campaigns.config.campaigns import CampaignConfig
from campaigns.config.schema import AppConfig
from campaigns.sending.assignment import in_holdout_sql, variant_sql
from campaigns.store.db import COUNT_ROWS, dialect_insert
from campaigns.store.models import Delivery, Enrollment, utcnow
from campaigns.store.sqltime import plus_interval


def occurrence_column(campaign: CampaignConfig, prefix: str, entity_id: sa.ColumnElement[int]) -> sa.ColumnElement[str]:
    """The ``occurrence`` column of targets taken from rows of another table (entries,
    events): ``prefix`` + the row's id, or ``once`` when the campaign never re-enters."""
    if campaign.reentry == "never":
        return sa.literal("once").label("occurrence")
    return (sa.literal(prefix) + sa.cast(entity_id, sa.String)).label("occurrence")


_DELIVERY_COLUMNS = [
    "send_key", "run_id", "campaign", "step", "customer_id", "channel", "template", "variant",
    "enrollment_id", "status", "attempts", "due_at", "dispatch_after", "created_at", "updated_at",
]


def enrol(
    conn: sa.Connection,
    config: AppConfig,
    campaign: CampaignConfig,
    targets: sa.Subquery,
    *,
    base: datetime | sa.ColumnElement[datetime],
    now: datetime,
    run_id: int | None = None,
    hand_over_due: bool = False,
) -> int:
    """Enrol ``targets`` (customer_id, channel, occurrence) and write their deliveries;
    returns how many deliveries are new.

    ``base`` is when the occurrence happened (a constant, or a column of ``targets``):
    enrolment time and the origin of step delays. With ``hand_over_due`` rows already due
    are marked as handed to the broker, for the caller to enqueue at once.
    """
    time_type = Delivery.__table__.c.due_at.type
    created = utcnow()
    base_value = sa.literal(base, type_=time_type) if isinstance(base, datetime) else base
    held_out = (
        in_holdout_sql(targets.c.customer_id, campaign.name, campaign.holdout) if campaign.holdout else sa.false()
    )
    enrol = sa.select(
        sa.literal(campaign.name),
        targets.c.customer_id,
        targets.c.occurrence,
        base_value,
        held_out,
        sa.case((held_out, sa.literal("held_out")), else_=sa.literal("active")),
    ).where(sa.literal_column("1") == 1)  # SQLite needs a WHERE before ON CONFLICT
    if campaign.reentry_after is not None:
        # Re-entry only once the previous enrolment is old enough.
        earlier = Enrollment.__table__.alias("earlier")
        since = (
            sa.literal(base - campaign.reentry_after, type_=time_type)
            if isinstance(base, datetime)
            else plus_interval(conn.dialect.name, base, -campaign.reentry_after, time_type)
        )
        enrol = enrol.where(~sa.exists().where(
            earlier.c.campaign == campaign.name,
            earlier.c.customer_id == targets.c.customer_id,
            earlier.c.occurrence != targets.c.occurrence,
            earlier.c.enrolled_at > since,
        ))
    conn.execute(
        dialect_insert(conn, Enrollment.__table__)
        .from_select(["campaign", "customer_id", "occurrence", "enrolled_at", "holdout", "state"], enrol)
        .on_conflict_do_nothing(index_elements=["campaign", "customer_id", "occurrence"])
    )
    enrollment = Enrollment.__table__
    joined = targets.join(
        enrollment,
        sa.and_(
            enrollment.c.campaign == campaign.name,
            enrollment.c.customer_id == targets.c.customer_id,
            enrollment.c.occurrence == targets.c.occurrence,
        ),
    )
    inserted = 0
    for step_index, step in enumerate(campaign.steps):
        if isinstance(base, datetime):
            due_value = base + step.delay
            due: sa.ColumnElement[datetime] = sa.literal(due_value, type_=time_type)
            handed = hand_over_due and due_value <= now
            dispatch = sa.literal(now + config.worker.lease if handed else due_value, type_=time_type)
        else:
            due = dispatch = plus_interval(conn.dialect.name, base, step.delay, time_type)
        if step.variants:
            variant: sa.ColumnElement[int] = variant_sql(
                targets.c.customer_id, campaign.name, step_index, [v.weight for v in step.variants]
            )
            template: sa.ColumnElement[str] = sa.case(
                *[(variant == index, sa.literal(v.template)) for index, v in enumerate(step.variants)]
            )
        else:
            variant, template = sa.null(), sa.literal(step.template)
        send_key = (
            sa.literal(f"{campaign.name}:{step_index}:")
            + sa.cast(targets.c.customer_id, sa.String)
            + sa.literal(":")
            + targets.c.occurrence
        )
        rows = (
            sa.select(
                send_key,
                sa.literal(run_id, type_=sa.Integer),
                sa.literal(campaign.name),
                sa.literal(step_index),
                targets.c.customer_id,
                targets.c.channel,
                template,
                variant,
                enrollment.c.id,
                sa.literal("queued"),
                sa.literal(0),
                due,
                dispatch,
                sa.literal(created, type_=time_type),
                sa.literal(created, type_=time_type),
            )
            .select_from(joined)
            .where(
                enrollment.c.holdout.is_(sa.false()),
                enrollment.c.state == "active",
                # One message per enrolment and step, whatever the send key says: an
                # enrolment a merge moved to the survivor keeps the merged record's keys.
                ~sa.exists().where(Delivery.enrollment_id == enrollment.c.id, Delivery.step == step_index),
            )
        )
        inserted += conn.execute(
            dialect_insert(conn, Delivery.__table__)
            .from_select(_DELIVERY_COLUMNS, rows)
            .on_conflict_do_nothing(index_elements=["send_key"]),
            execution_options=COUNT_ROWS,
        ).rowcount
    return inserted
