"""How a campaign did: enrolments, deliveries, conversions treated vs holdout, lift, and
revenue attributed by last touch.

Definitions (docs/campaigns.md):

* **converted**: an enrolment whose customer reached the goal (an order, or the goal
  event) after enrolling and within ``goal.within`` (14 days without a goal). Held-out
  enrolments convert the same way, which is what makes the comparison fair.
* **lift**: treated conversion rate minus holdout conversion rate, with a 95 % interval.
* **attributed revenue** (last touch): an order is credited to the most recent message
  *sent* to that customer, by any campaign, before the order and within the conversion
  window; the campaign's revenue is the sum of the orders credited to its messages.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config import AppConfig
from campaigns.models import Delivery, Enrollment, Event, Order
from campaigns.sqltime import plus_interval
from campaigns.stats import conversion_lift

DEFAULT_WINDOW = timedelta(days=14)


def campaign_report(engine: Engine, config: AppConfig, name: str, *, now: datetime) -> dict[str, Any]:
    """The report for campaign ``name`` as of ``now`` (KeyError for an unknown campaign)."""
    campaign = config.campaign(name)
    goal_event = campaign.goal.event if campaign.goal else "order"
    window = campaign.goal.within if campaign.goal else DEFAULT_WINDOW
    e = Enrollment.__table__
    d = Delivery.__table__
    with engine.connect() as conn:
        dialect = conn.dialect.name
        deadline = plus_interval(dialect, e.c.enrolled_at, window, e.c.enrolled_at.type)
        if goal_event == "order":
            reached = sa.exists().where(Order.customer_id == e.c.customer_id, Order.ordered_at > e.c.enrolled_at,
                                        Order.ordered_at <= deadline, Order.ordered_at <= now)
        else:
            reached = sa.exists().where(Event.customer_id == e.c.customer_id, Event.name == goal_event,
                                        Event.occurred_at > e.c.enrolled_at, Event.occurred_at <= deadline,
                                        Event.occurred_at <= now)
        groups = {
            bool(holdout): (total, converted)
            for holdout, total, converted in conn.execute(
                sa.select(e.c.holdout, sa.func.count(), sa.func.sum(sa.case((reached, 1), else_=0)))
                .where(e.c.campaign == name).group_by(e.c.holdout)
            )
        }
        states = dict(conn.execute(
            sa.select(e.c.state, sa.func.count()).where(e.c.campaign == name).group_by(e.c.state)).all())
        delivery_rows = conn.execute(
            sa.select(d.c.step, d.c.variant, d.c.channel, d.c.status, sa.func.count())
            .where(d.c.campaign == name)
            .group_by(d.c.step, d.c.variant, d.c.channel, d.c.status)
            .order_by(d.c.step, d.c.variant, d.c.channel, d.c.status)
        ).all()
        attributed = _attributed(conn, dialect, name, window, now)

    treated, treated_converted = groups.get(False, (0, 0))
    held_out, held_out_converted = groups.get(True, (0, 0))
    lift = conversion_lift(treated, treated_converted or 0, held_out, held_out_converted or 0)
    by_status: dict[str, int] = {}
    steps: dict[tuple[int, int | None, str], dict[str, int]] = {}
    for step, variant, channel, status, count in delivery_rows:
        by_status[status] = by_status.get(status, 0) + count
        steps.setdefault((step, variant, channel), {})[status] = count
    for key, (orders, revenue) in attributed["by_step"].items():
        steps.setdefault(key, {})
        steps[key]["attributed_orders"] = orders
        steps[key]["attributed_revenue"] = revenue
    return {
        "campaign": name,
        "now": now.isoformat(),
        "goal": goal_event,
        "window_days": window.total_seconds() / 86400,
        "enrolled": treated,
        "held_out": held_out,
        "enrollment_states": states,
        "deliveries": by_status,
        "sent": by_status.get("sent", 0),
        "failed": by_status.get("failed", 0),
        "skipped": by_status.get("skipped", 0),
        "converted": {"treated": treated_converted or 0, "holdout": held_out_converted or 0},
        "conversion_rate": {"treated": lift.treated_rate, "holdout": lift.holdout_rate},
        "lift": {
            "absolute": lift.absolute, "low": lift.low, "high": lift.high, "relative": lift.relative,
            "confidence": lift.confidence, "significant": lift.significant,
        },
        "attributed_orders": attributed["orders"],
        "attributed_revenue": attributed["revenue"],
        "steps": [
            {"step": step, "variant": variant, "channel": channel, **counts}
            for (step, variant, channel), counts in sorted(steps.items(), key=lambda item: (item[0][0], item[0][1] or 0, item[0][2]))
        ],
    }


def _attributed(conn: sa.Connection, dialect: str, name: str, window: timedelta, now: datetime) -> dict[str, Any]:
    """Orders credited by last touch to this campaign's sent messages, overall and per step."""
    touch = Delivery.__table__.alias("touch")
    later = Delivery.__table__.alias("later")
    deadline = plus_interval(dialect, touch.c.sent_at, window, touch.c.sent_at.type)
    # No message (any campaign) was sent to the customer between this touch and the order.
    no_later_touch = ~sa.exists().where(
        later.c.customer_id == touch.c.customer_id, later.c.status == "sent",
        later.c.sent_at > touch.c.sent_at, later.c.sent_at < Order.ordered_at,
    )
    rows = conn.execute(
        sa.select(touch.c.step, touch.c.variant, touch.c.channel, sa.func.count(Order.id), sa.func.sum(Order.amount))
        .select_from(touch)
        .join(Order, Order.customer_id == touch.c.customer_id)
        .where(touch.c.campaign == name, touch.c.status == "sent", Order.ordered_at > touch.c.sent_at,
               Order.ordered_at <= deadline, Order.ordered_at <= now, no_later_touch)
        .group_by(touch.c.step, touch.c.variant, touch.c.channel)
    ).all()
    by_step = {(step, variant, channel): (count, float(total or 0)) for step, variant, channel, count, total in rows}
    return {
        "orders": sum(count for count, _ in by_step.values()),
        "revenue": round(sum(total for _, total in by_step.values()), 2),
        "by_step": by_step,
    }
