"""How a campaign did: enrolments, deliveries, conversions treated vs holdout, lift, and
revenue attributed by last touch.

Definitions (docs/campaigns.md):

* **converted**: an enrolment whose customer reached the goal (an order, or the goal
  event) after enrolling and within ``goal.within`` (14 days without a goal). Held-out
  enrolments convert the same way, which is what makes the comparison fair. With
  ``goal.coupon_redeemed`` the goal is the redemption of a coupon one of the enrolment's
  messages carried (:func:`campaigns.customers.loyalty.coupons.coupon_redeemed`).
* **lift**: treated conversion rate minus holdout conversion rate, with a 95 % interval.
* **attributed revenue** (last touch): an order is credited to the most recent message
  *sent* to that customer, by any campaign, before the order and within the conversion
  window; the campaign's revenue is the sum of the orders credited to its messages.
* **engagement** (receipts, opens, clicks, replies, unsubscribes, complaints): the number
  of *sent* messages with at least one response of that kind (``response.delivery_id``),
  so a message opened five times counts once; rates are over the messages sent. On a
  channel whose provider sends no delivery receipts (SMTP, webhook), **delivered** is
  the messages sent less those a bounce or an undelivered notice came back for, and
  ``delivery_note`` names those channels.
* **recommendations**: the recommended products the messages showed, clicked and bought
  within the same window, with the orders and revenue from them
  (:mod:`campaigns.reports.recommended`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.schema import AppConfig
from campaigns.customers.loyalty.coupons import coupon_redeemed
from campaigns.reports.recommended import recommended_attribution
from campaigns.reports.stats import conversion_lift
from campaigns.store.models import Delivery, Enrollment, Event, Order, Response
from campaigns.store.sqltime import plus_interval

DEFAULT_WINDOW = timedelta(days=14)

#: Engagement counts, each the number of sent messages with at least one response of the
#: given kinds. ``not_delivered`` folds the three failure receipts into one figure that
#: counts a message once even when it got, say, both an "undelivered" and a "bounced".
ENGAGEMENT_KINDS: dict[str, tuple[str, ...]] = {
    "delivered": ("delivered",),
    "not_delivered": ("undelivered", "bounced", "blocked"),
    "undelivered": ("undelivered",),
    "bounced": ("bounced",),
    "blocked": ("blocked",),
    "opened": ("opened",),
    "clicked": ("clicked",),
    "replied": ("replied",),
    "unsubscribed": ("unsubscribed",),
    "complained": ("complained",),
}
#: Channel kinds whose provider reports delivery: SMS receipts, WeChat's template-message
#: pushes. The others (SMTP, webhook, outbox, WeCom robot) only say they accepted a
#: message: there, an accepted send counts as delivered unless a bounce or an
#: undelivered notice came back, and the report says so (``delivery_note``), rather
#: than a delivery rate of 0 % for lack of receipts.
RECEIPT_KINDS = frozenset({"aliyun_sms", "tencent_sms", "twilio", "wechat_oa"})


def without_receipts(config: AppConfig, channels: Iterable[str]) -> list[str]:
    """The configured channels among ``channels`` that get no delivery receipts, sorted."""
    return sorted(name for name in set(channels)
                  if name in config.channels and config.channels[name].kind not in RECEIPT_KINDS)


def delivery_note(channels: Sequence[str]) -> str | None:
    """What "delivered" means on ``channels`` (those :func:`without_receipts` names); None if none."""
    if not channels:
        return None
    return (f"{', '.join(channels)}: no delivery receipts, so delivered counts the messages the provider "
            "accepted, less those that bounced")


#: Rates: name -> (numerator, denominator); a denominator of "sent" is the messages sent.
ENGAGEMENT_RATES: dict[str, tuple[str, str]] = {
    "delivery_rate": ("delivered", "sent"),
    "not_delivered_rate": ("not_delivered", "sent"),
    "open_rate": ("opened", "sent"),
    "click_rate": ("clicked", "sent"),
    "click_to_open_rate": ("clicked", "opened"),
    "reply_rate": ("replied", "sent"),
    "unsubscribe_rate": ("unsubscribed", "sent"),
    "complaint_rate": ("complained", "sent"),
}


def campaign_report(engine: Engine, config: AppConfig, name: str, *, now: datetime) -> dict[str, Any]:
    """The report for campaign ``name`` as of ``now`` (KeyError for an unknown campaign)."""
    campaign = config.campaign(name)
    goal_event = campaign.goal.label if campaign.goal else "order"
    window = campaign.goal.within if campaign.goal else DEFAULT_WINDOW
    e = Enrollment.__table__
    d = Delivery.__table__
    with engine.connect() as conn:
        dialect = conn.dialect.name
        deadline = plus_interval(dialect, e.c.enrolled_at, window, e.c.enrolled_at.type)
        if campaign.goal is not None and campaign.goal.coupon_redeemed:
            # Held-out customers got no coupon: their rate is 0 by construction, so lift is
            # the redemption rate itself (docs/coupons.md).
            reached = coupon_redeemed(e, until=now, deadline=deadline)
        elif goal_event == "order":
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
            # Test sends (nurture test-send) went to the marketer, not to customers.
            .where(d.c.campaign == name, d.c.is_test.is_(False))
            .group_by(d.c.step, d.c.variant, d.c.channel, d.c.status)
            .order_by(d.c.step, d.c.variant, d.c.channel, d.c.status)
        ).all()
        attributed = _attributed(conn, dialect, name, window, now)
        engaged = _engagement(conn, name)
        recommended = recommended_attribution(conn, name, window=window, now=now)

    treated, treated_converted = groups.get(False, (0, 0))
    held_out, held_out_converted = groups.get(True, (0, 0))
    lift = conversion_lift(treated, treated_converted or 0, held_out, held_out_converted or 0)
    by_status: dict[str, int] = {}
    steps: dict[tuple[int, int | None, str], dict[str, Any]] = {}
    for step, variant, channel, status, count in delivery_rows:
        by_status[status] = by_status.get(status, 0) + count
        steps.setdefault((step, variant, channel), {})[status] = count
    for key, (orders, revenue) in attributed["by_step"].items():
        steps.setdefault(key, {})
        steps[key]["attributed_orders"] = orders
        steps[key]["attributed_revenue"] = revenue
    # Each message belongs to exactly one (step, variant, channel), so the per-message
    # counts of the groups add up exactly to per-channel and campaign totals.
    # Channels without delivery receipts (by kind, and none ever came back for this
    # campaign): there an accepted send counts as delivered unless it bounced.
    receipted = {channel for (_, _, channel), found in engaged.items() if found.get("delivered")}
    assumed = [name for name in without_receipts(config, [channel for _, _, channel in steps])
               if name not in receipted]
    for key, counts in steps.items():
        found = engaged.setdefault(key, {})
        if key[2] in assumed:
            found["delivered"] = max(counts.get("sent", 0) - found.get("not_delivered", 0), 0)
        counts["engagement"] = _with_rates(counts.get("sent", 0), found)
    # Per channel, only outcomes: what is still queued (or later skipped) belongs to the
    # per-step rows, so forgetting a customer, which cancels their queued messages,
    # leaves every per-channel number as it was.
    channels: dict[str, dict[str, Any]] = {}
    for (_, _, channel), counts in steps.items():
        total = channels.setdefault(channel, {"sent": 0, "failed": 0, "attributed_orders": 0,
                                              "attributed_revenue": 0.0, "engagement": {}})
        for metric in ("sent", "failed", "attributed_orders", "attributed_revenue"):
            total[metric] += counts.get(metric, 0)
        for kind in ENGAGEMENT_KINDS:
            total["engagement"][kind] = total["engagement"].get(kind, 0) + counts["engagement"][kind]
    for total in channels.values():
        total["attributed_revenue"] = round(total["attributed_revenue"], 2)
        total["engagement"] = _with_rates(total["sent"], total["engagement"])
    campaign_engagement = {kind: sum(counts.get(kind, 0) for counts in engaged.values()) for kind in ENGAGEMENT_KINDS}
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
        "engagement": _with_rates(by_status.get("sent", 0), campaign_engagement),
        "recommendations": recommended,
        "delivery_note": delivery_note(assumed),
        "assumed_delivered": assumed,
        "channels": [{"channel": channel, **counts} for channel, counts in sorted(channels.items())],
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
        later.c.customer_id == touch.c.customer_id, later.c.status == "sent", later.c.is_test.is_(False),
        later.c.sent_at > touch.c.sent_at, later.c.sent_at < Order.ordered_at,
    )
    rows = conn.execute(
        sa.select(touch.c.step, touch.c.variant, touch.c.channel, sa.func.count(Order.id), sa.func.sum(Order.amount))
        .select_from(touch)
        .join(Order, Order.customer_id == touch.c.customer_id)
        # A test send touched the marketer's inbox, not the customer's: it earns no order.
        .where(touch.c.campaign == name, touch.c.status == "sent", touch.c.is_test.is_(False),
               Order.ordered_at > touch.c.sent_at,
               Order.ordered_at <= deadline, Order.ordered_at <= now, no_later_touch)
        .group_by(touch.c.step, touch.c.variant, touch.c.channel)
    ).all()
    by_step = {(step, variant, channel): (count, float(total or 0)) for step, variant, channel, count, total in rows}
    return {
        "orders": sum(count for count, _ in by_step.values()),
        "revenue": round(sum(total for _, total in by_step.values()), 2),
        "by_step": by_step,
    }


def _engagement(conn: sa.Connection, name: str) -> dict[tuple[int, int | None, str], dict[str, int]]:
    """Per (step, variant, channel): how many sent messages got at least one response of
    each kind in :data:`ENGAGEMENT_KINDS`.

    One statement: the inner GROUP BY folds each message's responses into 0/1 flags (so
    repeats of a kind count once), the outer one adds the flags up per group. Only this
    campaign's sent deliveries are read (``ix_delivery_campaign``), and their responses
    through ``ix_response_delivery_id``; responses matched to no delivery cannot be
    attributed to a message and are not counted.
    """
    d = Delivery.__table__
    r = Response.__table__
    flags = (
        sa.select(
            d.c.step, d.c.variant, d.c.channel,
            *(sa.func.max(sa.case((r.c.kind.in_(kinds), 1), else_=0)).label(metric)
              for metric, kinds in ENGAGEMENT_KINDS.items()),
        )
        .select_from(d.join(r, r.c.delivery_id == d.c.id))
        # Responses to a message never marked sent (a receipt racing a crashed worker)
        # are left out so every count is a share of "sent" and no rate exceeds 100 %.
        .where(d.c.campaign == name, d.c.status == "sent", d.c.is_test.is_(False))
        .group_by(d.c.id, d.c.step, d.c.variant, d.c.channel)
        .subquery("flags")
    )
    rows = conn.execute(
        sa.select(flags.c.step, flags.c.variant, flags.c.channel,
                  *(sa.func.sum(flags.c[metric]) for metric in ENGAGEMENT_KINDS))
        .group_by(flags.c.step, flags.c.variant, flags.c.channel)
    ).all()
    # SUM's type is the backend's (PostgreSQL widens it, and a numeric SUM arrives as a
    # Decimal): counts are handed out as plain int whatever it was.
    return {
        (step, variant, channel): {metric: int(value or 0) for metric, value in zip(ENGAGEMENT_KINDS, values, strict=True)}
        for step, variant, channel, *values in rows
    }


def _with_rates(sent: int, counts: dict[str, int]) -> dict[str, Any]:
    """``counts`` (zero for a kind nobody answered with) plus each rate of
    :data:`ENGAGEMENT_RATES`, ``None`` when its denominator is 0."""
    full: dict[str, Any] = {kind: counts.get(kind, 0) for kind in ENGAGEMENT_KINDS}
    base = {**full, "sent": sent}
    for rate, (numerator, denominator) in ENGAGEMENT_RATES.items():
        full[rate] = base[numerator] / base[denominator] if base[denominator] else None
    return full
