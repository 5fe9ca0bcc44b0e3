"""Read-only reports over customers, orders, profiles and the ledger.

Pure domain code: plain dicts out, no presentation (``workers/cli/views.py`` draws them)
and no Dramatiq, httpx, typer or rich. Counts are set-based SQL (``GROUP BY`` over the
whole table, a handful of queries per report) that run on SQLite and PostgreSQL; nothing
loops over customers in Python. The single-customer view reads one customer's rows.

Conventions shared by the reports:

* A customer without an acquisition channel, and an order without a purchase channel,
  are reported under :data:`UNKNOWN` (``"(unknown)"``); an empty string counts as missing.
* A customer without a ``customer_profile`` row (profiles never recomputed, or the
  customer was imported after the last recompute) has the stage :data:`UNPROFILED`.
  That pseudo-stage is listed only when such customers exist.
* Order facts (orders, revenue) are read from the ``orders`` table as it is now, while
  stages come from the last profile recompute (``as_of`` is returned so a reader can tell).
* Channels are listed biggest first (by customers for the segment matrix, by revenue
  for the channel report), ties by name, and ``(unknown)`` last.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.schema import AppConfig
from campaigns.config.vocabulary import CHANNEL_FAMILY, STAGES
from campaigns.reports.activity import customer_enrollments, customer_events
from campaigns.store.models import (
    Consent,
    Customer,
    CustomerProfile,
    Delivery,
    Order,
    OrderItem,
    ProfileTransition,
    Response,
    Suppression,
)

#: Label of a missing acquisition or purchase channel.
UNKNOWN = "(unknown)"
#: Pseudo-stage of customers who have no profile row yet.
UNPROFILED = "unprofiled"
#: Label of customers without an RFM segment (no orders, or no profile yet).
NO_SEGMENT = "(none)"
#: Rows returned by :func:`customer_view` for orders, deliveries and responses.
VIEW_LIMIT = 50

_PROFILE = CustomerProfile.__table__
_CUSTOMER = Customer.__table__
_ORDERS = Order.__table__


def _channel_label(column: sa.ColumnElement[str | None]) -> sa.ColumnElement[str]:
    """The channel, or ``(unknown)`` when NULL or empty."""
    return sa.func.coalesce(sa.func.nullif(column, ""), sa.literal(UNKNOWN))


def _stage_label() -> sa.ColumnElement[str]:
    return sa.func.coalesce(_PROFILE.c.stage, sa.literal(UNPROFILED))


def _ordered_stages(found: set[str]) -> list[str]:
    """STAGES in their order (always all five), then unexpected values, then ``unprofiled``."""
    extra = sorted(found - set(STAGES) - {UNPROFILED})
    return [*STAGES, *extra, *([UNPROFILED] if UNPROFILED in found else [])]


def _channel_order(totals: dict[str, float]) -> list[str]:
    return sorted(totals, key=lambda name: (name == UNKNOWN, -totals[name], name))


def _money(value: Any) -> float:
    return round(float(value or 0), 2)


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _latest_as_of(conn: sa.Connection) -> Any:
    from campaigns.customers.profiles import latest_recompute

    return latest_recompute(conn)


# --------------------------------------------------------------------------- segments


def segment_counts(engine: Engine, config: AppConfig | None = None) -> dict[str, Any]:
    """Customers per lifecycle stage x acquisition channel, and per RFM segment.

    Returns::

        {
          "customers": 120, "profiled": 118, "as_of": datetime | None,
          "stages": ["prospect", ..., "churned", "unprofiled"?],
          "channels": ["ecommerce", ..., "(unknown)"?],
          "matrix": {stage: {channel: count}},          # zero-filled, every stage x channel
          "stage_totals": {stage: count}, "channel_totals": {channel: count},
          "segments": [{"segment": name, "count": n, "share": n / customers}, ...],
        }

    ``segments`` lists ``config.rfm.names`` in order (zeros included), then any other
    stored segment name (the rule table changed since the recompute), then ``(none)``:
    customers without a segment (no orders, or no profile), listed only if there are any.
    ``share`` is a fraction of all customers (None when there are none).
    """
    config = config or AppConfig()
    stage = _stage_label().label("stage")
    channel = _channel_label(_CUSTOMER.c.acquisition_channel).label("channel")
    joined = _CUSTOMER.outerjoin(_PROFILE, _PROFILE.c.customer_id == _CUSTOMER.c.id)
    with engine.connect() as conn:
        cells = conn.execute(
            sa.select(stage, channel, sa.func.count()).select_from(joined).group_by(stage, channel)
        ).all()
        segment_rows = conn.execute(
            sa.select(_PROFILE.c.rfm_segment, sa.func.count()).select_from(joined).group_by(_PROFILE.c.rfm_segment)
        ).all()
        profiled = conn.execute(sa.select(sa.func.count()).select_from(_PROFILE)).scalar_one()
        as_of = _latest_as_of(conn)

    channel_totals: dict[str, int] = {}
    stage_found: set[str] = set()
    for stage_name, channel_name, count in cells:
        channel_totals[channel_name] = channel_totals.get(channel_name, 0) + count
        stage_found.add(stage_name)
    stages = _ordered_stages(stage_found)
    channels = _channel_order(channel_totals)  # type: ignore[arg-type]
    matrix = {s: dict.fromkeys(channels, 0) for s in stages}
    for stage_name, channel_name, count in cells:
        matrix[stage_name][channel_name] = count
    stage_totals = {s: sum(matrix[s].values()) for s in stages}
    customers = sum(channel_totals.values())

    by_segment = {name: count for name, count in segment_rows}
    names = list(config.rfm.names)
    names += sorted(n for n in by_segment if n is not None and n not in names)
    segments = [{"segment": n, "count": by_segment.get(n, 0)} for n in names]
    if by_segment.get(None):
        segments.append({"segment": NO_SEGMENT, "count": by_segment[None]})
    for row in segments:
        row["share"] = _ratio(row["count"], customers)

    return {
        "customers": customers,
        "profiled": profiled,
        "as_of": as_of,
        "stages": stages,
        "channels": channels,
        "matrix": matrix,
        "stage_totals": stage_totals,
        "channel_totals": {c: channel_totals[c] for c in channels},
        "segments": segments,
    }


# --------------------------------------------------------------------------- one customer


def _rows(conn: sa.Connection, query: sa.Select) -> list[dict[str, Any]]:
    return [dict(row) for row in conn.execute(query).mappings()]


def customer_view(engine: Engine, external_id: str, *, limit: int = VIEW_LIMIT) -> dict[str, Any] | None:
    """Everything stored about one customer, or None when ``external_id`` is unknown.

    Returns ``customer`` (every column), ``profile`` (every ``customer_profile`` column,
    or None before the first recompute), ``stage_history`` and ``segment_history``
    (``profile_transition`` rows, newest first), ``orders`` (newest first, each with its
    ``items``; at most ``limit``) with ``orders_total``, ``consents``, ``deliveries``
    (newest first; at most ``limit``) with ``deliveries_total``, ``responses`` (newest
    first; at most ``limit``; a response counts when it names the customer or one of the
    customer's deliveries) with ``responses_total``, and ``suppressed`` with the matching
    ``suppressions`` (an address of the customer on the suppression list of its channel
    family: email, sms for the phone, wechat for the openid), ``events`` (newest first; at
    most ``limit``: name, time, properties) with ``events_total``, and ``enrollments``
    (newest first; at most ``limit``) with ``enrollments_total``: each enrolment's campaign,
    occurrence, state, ``holdout``, ``enrolled_at``, ``exited_at`` and ``variants``, the A/B
    variant its messages got at each step that has variants (``[{"step", "variant",
    "template"}]``; empty for a held-out customer, who gets no messages).

    Nothing is masked: this is an operator tool and addresses are what an operator needs.
    """
    with engine.connect() as conn:
        customer = conn.execute(sa.select(_CUSTOMER).where(_CUSTOMER.c.external_id == external_id)).mappings().first()
        if customer is None:
            return None
        customer = dict(customer)
        cid = customer["id"]

        profile = conn.execute(sa.select(_PROFILE).where(_PROFILE.c.customer_id == cid)).mappings().first()

        transitions = ProfileTransition.__table__.c
        history = _rows(conn, sa.select(transitions.kind, transitions.value, transitions.previous,
                                        transitions.entered_at)
                        .where(transitions.customer_id == cid)
                        .order_by(transitions.entered_at.desc(), transitions.id.desc()))

        orders = _rows(conn, sa.select(_ORDERS.c.id, _ORDERS.c.order_id, _ORDERS.c.ordered_at, _ORDERS.c.amount,
                                       _ORDERS.c.channel)
                       .where(_ORDERS.c.customer_id == cid)
                       .order_by(_ORDERS.c.ordered_at.desc(), _ORDERS.c.id.desc())
                       .limit(limit))
        orders_total = conn.execute(sa.select(sa.func.count()).select_from(_ORDERS)
                                    .where(_ORDERS.c.customer_id == cid)).scalar_one()
        items_by_order: dict[int, list[dict[str, Any]]] = {order["id"]: [] for order in orders}
        if orders:
            item = OrderItem.__table__.c
            for row in _rows(conn, sa.select(item.order_pk, item.sku, item.category, item.quantity, item.price)
                             .where(item.order_pk.in_(list(items_by_order)))
                             .order_by(item.order_pk, item.id)):
                items_by_order[row.pop("order_pk")].append(row)
        for order in orders:
            order["items"] = items_by_order[order.pop("id")]

        consent = Consent.__table__.c
        consents = _rows(conn, sa.select(consent.channel, consent.status, consent.source, consent.recorded_at)
                         .where(consent.customer_id == cid).order_by(consent.channel))

        delivery = Delivery.__table__.c
        deliveries = _rows(conn, sa.select(delivery.campaign, delivery.step, delivery.channel, delivery.template,
                                           delivery.status, delivery.attempts, delivery.due_at, delivery.sent_at,
                                           delivery.last_error, delivery.send_key, delivery.created_at)
                           # Test sends used the customer's data but went to the marketer.
                           .where(delivery.customer_id == cid, delivery.is_test.is_(False))
                           .order_by(delivery.created_at.desc(), delivery.id.desc())
                           .limit(limit))
        deliveries_total = conn.execute(sa.select(sa.func.count()).select_from(Delivery.__table__)
                                        .where(delivery.customer_id == cid, delivery.is_test.is_(False))).scalar_one()

        response = Response.__table__.c
        mine = sa.or_(response.customer_id == cid,
                      response.delivery_id.in_(sa.select(delivery.id).where(delivery.customer_id == cid,
                                                                            delivery.is_test.is_(False))))
        responses = _rows(conn, sa.select(response.kind, response.provider, response.provider_ref,
                                          response.occurred_at, delivery.campaign, response.payload)
                          .select_from(Response.__table__.outerjoin(Delivery.__table__,
                                                                    delivery.id == response.delivery_id))
                          .where(mine)
                          .order_by(response.occurred_at.desc(), response.id.desc())
                          .limit(limit))
        responses_total = conn.execute(sa.select(sa.func.count()).select_from(Response.__table__)
                                       .where(mine)).scalar_one()

        suppression = Suppression.__table__.c
        addresses = [sa.and_(suppression.channel == family, suppression.address == customer[field])
                     for field, family in CHANNEL_FAMILY.items() if customer.get(field)]
        suppressions = _rows(conn, sa.select(suppression.channel, suppression.address, suppression.reason,
                                             suppression.created_at)
                             .where(sa.or_(*addresses)).order_by(suppression.channel)) if addresses else []

        events, events_total = customer_events(conn, cid, limit=limit)
        enrollments, enrollments_total = customer_enrollments(conn, cid, limit=limit)

    return {
        "customer": customer,
        "profile": dict(profile) if profile is not None else None,
        "stage_history": [_transition(row) for row in history if row["kind"] == "stage"],
        "segment_history": [_transition(row) for row in history if row["kind"] == "rfm_segment"],
        "orders": orders,
        "orders_total": orders_total,
        "consents": consents,
        "deliveries": deliveries,
        "deliveries_total": deliveries_total,
        "responses": responses,
        "responses_total": responses_total,
        "suppressed": bool(suppressions),
        "suppressions": suppressions,
        "events": events,
        "events_total": events_total,
        "enrollments": enrollments,
        "enrollments_total": enrollments_total,
    }


def _transition(row: dict[str, Any]) -> dict[str, Any]:
    return {"value": row["value"], "previous": row["previous"], "entered_at": row["entered_at"]}


# --------------------------------------------------------------------------- channels


def channel_report(engine: Engine) -> dict[str, Any]:
    """Customers, buyers, repeat purchase, orders and revenue per acquisition channel and
    per purchase channel, each with its customers' lifecycle stages.

    Returns ``{"as_of", "stages", "totals": {customers, buyers, orders, revenue},
    "acquisition": [row, ...], "purchase": [row, ...]}`` where a row is::

        {"channel", "customers", "buyers", "repeat_buyers", "repeat_rate", "orders",
         "revenue", "avg_order_value", "revenue_share", "stages": {stage: count}}

    *Acquisition* rows group customers by where they came from: ``customers`` is all of
    them, ``buyers`` those with at least one order (through any channel), ``repeat_buyers``
    those with two or more, and ``orders``/``revenue`` all their orders.

    *Purchase* rows group orders by where they were bought: ``customers`` (= ``buyers``)
    is the distinct customers who bought through the channel, ``repeat_buyers`` those who
    bought through it at least twice, ``orders``/``revenue`` the channel's orders, and
    ``stages`` the stages of those customers (one customer appears under every channel
    they bought through, so these stage counts may add up to more than all customers).

    ``repeat_rate`` = repeat_buyers / buyers, ``avg_order_value`` = revenue / orders,
    ``revenue_share`` = revenue / all revenue; each is None when its denominator is 0.
    Both dimensions' revenue shares add up to 1.
    """
    facts = (
        sa.select(_ORDERS.c.customer_id, sa.func.count().label("n"), sa.func.sum(_ORDERS.c.amount).label("revenue"))
        .group_by(_ORDERS.c.customer_id)
        .subquery("facts")
    )
    acq = _channel_label(_CUSTOMER.c.acquisition_channel).label("channel")
    acquisition_q = (
        sa.select(
            acq,
            sa.func.count(_CUSTOMER.c.id),
            sa.func.count(facts.c.customer_id),
            sa.func.coalesce(sa.func.sum(sa.case((facts.c.n >= 2, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(facts.c.n), 0),
            sa.func.coalesce(sa.func.sum(facts.c.revenue), 0),
        )
        .select_from(_CUSTOMER.outerjoin(facts, facts.c.customer_id == _CUSTOMER.c.id))
        .group_by(acq)
    )
    stage = _stage_label().label("stage")
    acquisition_stages_q = (
        sa.select(acq, stage, sa.func.count())
        .select_from(_CUSTOMER.outerjoin(_PROFILE, _PROFILE.c.customer_id == _CUSTOMER.c.id))
        .group_by(acq, stage)
    )
    bought = _channel_label(_ORDERS.c.channel).label("channel")
    per_channel = (
        sa.select(bought, _ORDERS.c.customer_id, sa.func.count().label("n"),
                  sa.func.sum(_ORDERS.c.amount).label("revenue"))
        .group_by(bought, _ORDERS.c.customer_id)
        .subquery("per_channel")
    )
    purchase_q = sa.select(
        per_channel.c.channel,
        sa.func.count(),
        sa.func.count(),
        sa.func.sum(sa.case((per_channel.c.n >= 2, 1), else_=0)),
        sa.func.sum(per_channel.c.n),
        sa.func.sum(per_channel.c.revenue),
    ).group_by(per_channel.c.channel)
    purchase_stages_q = (
        sa.select(per_channel.c.channel, stage, sa.func.count())
        .select_from(per_channel.outerjoin(_PROFILE, _PROFILE.c.customer_id == per_channel.c.customer_id))
        .group_by(per_channel.c.channel, stage)
    )
    with engine.connect() as conn:
        acquisition = conn.execute(acquisition_q).all()
        acquisition_stages = conn.execute(acquisition_stages_q).all()
        purchase = conn.execute(purchase_q).all()
        purchase_stages = conn.execute(purchase_stages_q).all()
        total_revenue = _money(conn.execute(sa.select(sa.func.sum(_ORDERS.c.amount))).scalar())
        total_orders = conn.execute(sa.select(sa.func.count()).select_from(_ORDERS)).scalar_one()
        as_of = _latest_as_of(conn)

    stages = _ordered_stages({row[1] for row in (*acquisition_stages, *purchase_stages)})

    def build(rows: list[sa.Row], stage_rows: list[sa.Row]) -> list[dict[str, Any]]:
        by_stage: dict[str, dict[str, int]] = {}
        for channel, stage_name, count in stage_rows:
            by_stage.setdefault(channel, {})[stage_name] = count
        built = []
        for channel, customers, buyers, repeat, orders, revenue in rows:
            # PostgreSQL sums integers to NUMERIC (Decimal), which a float cannot divide.
            revenue, orders = _money(revenue), int(orders)
            built.append({
                "channel": channel,
                "customers": customers,
                "buyers": buyers,
                "repeat_buyers": int(repeat),
                "repeat_rate": _ratio(int(repeat), buyers),
                "orders": orders,
                "revenue": revenue,
                "avg_order_value": round(revenue / orders, 2) if orders else None,
                "revenue_share": _ratio(revenue, total_revenue),
                "stages": {s: by_stage.get(channel, {}).get(s, 0) for s in stages},
            })
        order = _channel_order({row["channel"]: row["revenue"] for row in built})
        return sorted(built, key=lambda row: order.index(row["channel"]))

    acquisition_rows = build(acquisition, acquisition_stages)
    return {
        "as_of": as_of,
        "stages": stages,
        "totals": {
            "customers": sum(row["customers"] for row in acquisition_rows),
            "buyers": sum(row["buyers"] for row in acquisition_rows),
            "orders": total_orders,
            "revenue": total_revenue,
        },
        "acquisition": acquisition_rows,
        "purchase": build(purchase, purchase_stages),
    }
