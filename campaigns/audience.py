"""Audience selection as set-based SQL: one SELECT, never a Python loop over customers.

:func:`audience_select` returns ``(customer_id, channel)`` rows: the customers matching a
campaign's audience, each with the first channel of the campaign's preference list for
which the customer has an address, no withdrawn consent and no suppression.

The structured filters (``min_orders`` ...) read live order facts; ``audience.segment``
and ``audience.where`` are audience expressions (:mod:`campaigns.segments`) over the
customer's profile as of the last recompute. All of them are combined with AND.
:func:`expression_select` selects the customers matching one expression alone (the CLI).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from campaigns.jsonattr import kind_of, typed_attribute
from campaigns.config import AppConfig, AudienceConfig, CampaignConfig
from campaigns.models import Consent, Customer, CustomerProfile, Order, Suppression
from campaigns.segments import Expression, compile_expression, parse_expression, segment_expressions

_PROFILE = CustomerProfile.__table__

#: Which consent/suppression family a recipient field belongs to.
CHANNEL_FAMILY = {"email": "email", "phone": "sms", "wechat_openid": "wechat"}


def order_facts(customer_ids: Sequence[int] | None = None) -> sa.Subquery:
    """Per-customer order facts: count, last order time and total spent."""
    query = sa.select(
        Order.customer_id.label("customer_id"),
        sa.func.count(Order.id).label("orders_count"),
        sa.func.max(Order.ordered_at).label("last_order_at"),
        sa.func.sum(Order.amount).label("total_spent"),
    ).group_by(Order.customer_id)
    if customer_ids is not None:
        query = query.where(Order.customer_id.in_(customer_ids))
    return query.subquery("order_facts")


def _attribute_condition(key: str, value: str | int | float | bool) -> sa.ColumnElement[bool]:
    element = typed_attribute(Customer.__table__.c.attributes, key, kind_of(value))
    return sa.and_(element.is_not(None), element == value)


def audience_conditions(
    audience: AudienceConfig,
    *,
    facts: sa.Subquery,
    now: datetime,
    config: AppConfig | None = None,
    profile: Any = _PROFILE,
) -> list[sa.ColumnElement[bool]]:
    """WHERE conditions for ``audience`` over ``customer`` LEFT JOIN ``facts``.

    ``audience.segment`` and ``audience.where`` also need ``config`` (its ``[segments]``
    and RFM names) and ``profile`` (``customer_profile`` or an alias) LEFT JOINed on
    ``customer_id``; an audience using them without ``config`` raises ValueError.
    """
    orders_count = sa.func.coalesce(facts.c.orders_count, 0)
    conditions: list[sa.ColumnElement[bool]] = []
    if audience.acquisition_channel:
        conditions.append(Customer.acquisition_channel.in_(audience.acquisition_channel))
    if audience.purchase_channel:
        conditions.append(
            sa.exists().where(Order.customer_id == Customer.id, Order.channel.in_(audience.purchase_channel))
        )
    if audience.min_orders is not None:
        conditions.append(orders_count >= audience.min_orders)
    if audience.max_orders is not None:
        conditions.append(orders_count <= audience.max_orders)
    if audience.last_order_more_than_days is not None:
        conditions.append(facts.c.last_order_at < now - timedelta(days=audience.last_order_more_than_days))
    if audience.last_order_within_days is not None:
        conditions.append(facts.c.last_order_at >= now - timedelta(days=audience.last_order_within_days))
    if audience.min_total_spent is not None:
        conditions.append(sa.func.coalesce(facts.c.total_spent, 0) >= audience.min_total_spent)
    if audience.created_within_days is not None:
        conditions.append(Customer.created_at >= now - timedelta(days=audience.created_within_days))
    for key, value in sorted(audience.attributes.items()):
        conditions.append(_attribute_condition(key, value))
    if audience.segment is not None or audience.where is not None:
        if config is None:
            raise ValueError("audience.segment and audience.where need the AppConfig (config=...)")
        segments = segment_expressions(config)
        if audience.segment is not None:
            if audience.segment not in segments:
                raise ValueError(f"unknown segment {audience.segment!r}")
            conditions.append(compile_expression(segments[audience.segment], now=now, segments=segments,
                                                 profile=profile))
        if audience.where is not None:
            where = parse_expression(audience.where, rfm_names=config.rfm.names, segment_names=list(segments))
            conditions.append(compile_expression(where, now=now, segments=segments, profile=profile))
    return conditions


def _reachable(field: str) -> sa.ColumnElement[bool]:
    """The customer has an address in ``field``, has not withdrawn consent and is not suppressed."""
    column = getattr(Customer, field)
    condition = sa.and_(column.is_not(None), column != "")
    family = CHANNEL_FAMILY.get(field)
    if family is None:
        return condition
    withdrawn = sa.exists().where(
        Consent.customer_id == Customer.id, Consent.channel == family, Consent.status == "withdrawn"
    )
    suppressed = sa.exists().where(Suppression.channel == family, Suppression.address == column)
    return sa.and_(condition, ~withdrawn, ~suppressed)


def channel_choice(config: AppConfig, campaign: CampaignConfig) -> sa.ColumnElement[str]:
    """A CASE expression naming the first usable channel per customer (NULL if none)."""
    whens = [
        (_reachable(config.channels[name].recipient), sa.literal(name)) for name in campaign.channels
    ]
    return sa.case(*whens, else_=sa.null())


def audience_select(config: AppConfig, campaign: CampaignConfig, *, now: datetime) -> sa.Select[tuple[int, str]]:
    """``SELECT customer_id, channel`` for everyone ``campaign`` targets at ``now``."""
    facts = order_facts()
    channel = channel_choice(config, campaign).label("channel")
    query = (
        sa.select(Customer.id.label("customer_id"), channel)
        .select_from(Customer)
        .outerjoin(facts, facts.c.customer_id == Customer.id)
        .outerjoin(_PROFILE, _PROFILE.c.customer_id == Customer.id)
        .where(*audience_conditions(campaign.audience, facts=facts, now=now, config=config, profile=_PROFILE))
    )
    inner = query.subquery("audience")
    return sa.select(inner.c.customer_id, inner.c.channel).where(inner.c.channel.is_not(None))


def expression_select(config: AppConfig, expression: str | Expression, *, now: datetime) -> sa.Select[tuple[int]]:
    """``SELECT customer_id`` of every customer matching the audience ``expression`` at ``now``.

    Ignores channels, consent and suppression: this is who the expression describes, not
    who a campaign could reach. Raises :class:`~campaigns.segments.ExpressionError` if a
    text expression is invalid.
    """
    segments = segment_expressions(config)
    if isinstance(expression, str):
        expression = parse_expression(expression, rfm_names=config.rfm.names, segment_names=list(segments))
    condition = compile_expression(expression, now=now, segments=segments, profile=_PROFILE)
    return (
        sa.select(Customer.id.label("customer_id"))
        .select_from(Customer)
        .outerjoin(_PROFILE, _PROFILE.c.customer_id == Customer.id)
        .where(condition)
    )
