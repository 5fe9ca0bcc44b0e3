"""One customer merged into another, in the caller's transaction, recorded so it can be undone.

A merge keeps one row per person: the *survivor* (the earliest customer, see
:func:`choose_survivor`) takes over everything the *merged* customer had, and the merged
row is deleted last. Each table is handled by a few set-based statements, whatever the
number of orders or deliveries:

* ``customer``: the survivor keeps its non-empty fields, empty ones are filled from the
  merged customer; attributes are merged (the survivor wins per key); the acquisition
  channel is the survivor's (the earlier sign-up).
* identifiers, orders (their items follow), events, responses, deliveries and profile
  transitions move to the survivor. Deliveries keep their send keys, so the survivor's
  frequency caps count the messages either former record was sent.
* ``consent``, per channel family: the most restrictive state wins (a withdrawal anywhere
  stands); a family only the merged customer recorded moves, one both recorded keeps the
  survivor's row with the stricter status and drops the merged one's.
* ``enrollment``: the person's enrolment is the survivor's. A merged enrolment in a
  (campaign, occurrence) the survivor has is dropped; an active merged enrolment in a
  campaign where the survivor is already active or held out ends (``exited_merged``);
  either way its queued deliveries are skipped, so no step is sent twice and nobody held
  out becomes treated by merging. Other enrolments (a held-out one included) move.
* ``identity_review``: pairs move to the survivor; the pair of these two customers is
  decided (``merged``) and dropped with the merged customer, as is a moved pair that
  repeats one the survivor has.
* ``customer_profile``: the merged customer's is dropped; the caller recomputes the
  survivor's after commit (:func:`campaigns.customers.profiles.recompute_profiles_for`).

Everything is recorded in :class:`~campaigns.store.models.CustomerMerge`: ``moved`` (ids
re-pointed, per table), ``removed`` (whole rows deleted, JSON-ready) and ``changed``
(``[table, id, column, old value]``), which is what
:func:`campaigns.customers.identity.unmerging.unmerge` reverses.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from campaigns.customers.loyalty.referrals import merge_referrals
from campaigns.errors import NurtureError
from campaigns.store.models import (
    Consent,
    Coupon,
    Customer,
    CustomerIdentifier,
    CustomerMerge,
    CustomerProfile,
    Delivery,
    Enrollment,
    Event,
    Feedback,
    IdentityReview,
    LoyaltyMember,
    Order,
    PointsEntry,
    PointsLot,
    ProfileTransition,
    Recommendation,
    RecommendationSent,
    Referral,
    ReferralCode,
    Response,
    StaffAlert,
)

#: The state of a merged customer's enrolment ended because the survivor runs the series.
EXITED_MERGED = "exited_merged"
#: Customer fields the survivor takes from the merged customer when its own are empty.
FILLED_FIELDS = ("name", "email", "phone", "wechat_openid", "timezone", "locale", "acquisition_channel")
#: Tables whose rows simply move to the survivor (``customer_id`` re-pointed).
MOVED_TABLES: tuple[sa.Table, ...] = tuple(
    model.__table__  # type: ignore[attr-defined]
    # Coupons too: deleting the merged customer would cascade to theirs, and a send key
    # that lost its coupon would be given a second one.
    for model in (CustomerIdentifier, Order, Event, Response, ProfileTransition, Coupon,
                  # Points follow the orders and events that earned them.
                  PointsLot, PointsEntry,
                  # The merged customer's referral code keeps naming the person.
                  ReferralCode,
                  # What messages showed them and what they answered stay theirs (the
                  # recommendations themselves are recomputed: the merged rows are removed).
                  RecommendationSent, Feedback, StaffAlert)
)
#: Every table a merge may touch, by name (what ``moved``, ``removed`` and ``changed`` name).
TABLES: dict[str, sa.Table] = {
    model.__table__.name: model.__table__  # type: ignore[attr-defined]
    for model in (Customer, CustomerIdentifier, Order, Event, Response, ProfileTransition, Consent,
                  Enrollment, Delivery, IdentityReview, CustomerProfile, Coupon, PointsLot, PointsEntry,
                  LoyaltyMember, ReferralCode, Referral, RecommendationSent, Feedback, StaffAlert)
}

_CUSTOMER = Customer.__table__
_RECOMMENDATION = Recommendation.__table__
_MEMBER = LoyaltyMember.__table__
_CONSENT = Consent.__table__
_ENROLLMENT = Enrollment.__table__
_DELIVERY = Delivery.__table__
_REVIEW = IdentityReview.__table__
_PROFILE = CustomerProfile.__table__
_MERGE = CustomerMerge.__table__


class MergeError(NurtureError):
    """A merge or unmerge that cannot be done as asked (unknown customer or merge, a merge
    already reversed, one a later merge depends on)."""


def choose_survivor(conn: Connection, customer_ids: Iterable[int]) -> int:
    """The customer that survives a merge of ``customer_ids``: the earliest ``created_at``,
    then the lowest id (the first record of the person keeps its history and channel)."""
    ids = sorted(set(customer_ids))
    if not ids:
        raise MergeError("no customers to choose a survivor from")
    found = conn.execute(
        sa.select(_CUSTOMER.c.id).where(_CUSTOMER.c.id.in_(ids)).order_by(_CUSTOMER.c.created_at, _CUSTOMER.c.id)
    ).scalars().first()
    if found is None:
        raise MergeError(f"no customer with row id {', '.join(map(str, ids))}")
    return found


def to_json(value: Any) -> Any:
    """A column value as JSON can hold it (times as ISO strings); see :func:`from_json`."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def from_json(table: sa.Table, column: str, value: Any) -> Any:
    """A value stored by :func:`to_json` back in the Python type of ``table.column``."""
    if value is None or not isinstance(value, str):
        return value
    column_type = table.c[column].type
    # A TypeDecorator (SQLModel's UTCDateTime) is told by the type it decorates.
    column_type = getattr(column_type, "impl_instance", column_type)
    if isinstance(column_type, sa.DateTime):
        return datetime.fromisoformat(value)
    if isinstance(column_type, sa.Date):
        return date.fromisoformat(value)
    return value


def row_json(row: sa.Row[Any]) -> dict[str, Any]:
    """A whole row as a JSON-ready dict (column name -> value)."""
    return {name: to_json(value) for name, value in row._mapping.items()}


class _Record:
    """What one merge did, collected as it goes and written into ``customer_merge`` last."""

    def __init__(self) -> None:
        self.moved: dict[str, list[int]] = {}
        self.removed: dict[str, list[dict[str, Any]]] = {}
        self.changed: list[list[Any]] = []

    def move(self, table: sa.Table, ids: Iterable[int]) -> None:
        ids = sorted(ids)
        if ids:
            self.moved.setdefault(table.name, []).extend(ids)

    def remove(self, conn: Connection, table: sa.Table, where: sa.ColumnElement[bool]) -> list[Any]:
        """Delete the rows ``where`` selects, keeping each whole; their primary keys."""
        key = table.primary_key.columns.values()[0]
        rows = conn.execute(sa.select(table).where(where).order_by(key)).all()
        if rows:
            self.removed.setdefault(table.name, []).extend(row_json(row) for row in rows)
            conn.execute(sa.delete(table).where(key.in_([row._mapping[key.name] for row in rows])))
        return [row._mapping[key.name] for row in rows]

    def change(self, table: sa.Table, key: Any, column: str, old: Any) -> None:
        self.changed.append([table.name, key, column, to_json(old)])


def merge_customers(
    conn: Connection, *, survivor_id: int, merged_id: int, reason: str, actor: str, now: datetime
) -> int:
    """Merge customer ``merged_id`` into ``survivor_id`` inside the caller's transaction
    (see the module docstring for what moves where); the ``customer_merge`` row id.

    Profiles are not recomputed here: the caller recomputes the survivor's after commit.

    Raises:
        MergeError: the two ids are the same, or either customer does not exist.
    """
    if survivor_id == merged_id:
        raise MergeError(f"customer {survivor_id} cannot be merged into itself")
    # Lock both rows first: a concurrent import or merge of either waits for this one.
    rows = {
        row.id: row
        for row in conn.execute(
            sa.select(_CUSTOMER).where(_CUSTOMER.c.id.in_([survivor_id, merged_id]))
            .order_by(_CUSTOMER.c.id).with_for_update()
        )
    }
    for customer_id in (survivor_id, merged_id):
        if customer_id not in rows:
            raise MergeError(f"no customer with row id {customer_id}")
    survivor, merged = rows[survivor_id], rows[merged_id]
    record = _Record()
    _fill_customer(conn, record, survivor, merged, now=now)
    for table in MOVED_TABLES:
        record.move(table, _repoint(conn, table, table.c.customer_id == merged_id, survivor_id))
    _merge_consents(conn, record, survivor_id, merged_id)
    _merge_enrollments(conn, record, survivor_id, merged_id, survivor_ref=survivor.external_id, now=now)
    record.move(_DELIVERY, _repoint(conn, _DELIVERY, _DELIVERY.c.customer_id == merged_id, survivor_id))
    _merge_reviews(conn, record, survivor_id, merged_id, now=now)
    # Referrer and referee both: a referral naming the survivor twice is refused.
    merge_referrals(conn, record, survivor_id=survivor_id, merged_id=merged_id)
    record.remove(conn, _PROFILE, _PROFILE.c.customer_id == merged_id)
    # The survivor's tier is recomputed from the points it now holds (the next earn or
    # daily job); the merged one's row goes, kept in the record for an unmerge.
    record.remove(conn, _MEMBER, _MEMBER.c.customer_id == merged_id)
    # Derived rows, recomputed by the next refresh and not kept for an unmerge (the table
    # has no foreign key to cascade them away: migration 0014).
    conn.execute(sa.delete(_RECOMMENDATION).where(_RECOMMENDATION.c.customer_id == merged_id))
    # Last: the FKs cascade, so anything not moved by now would silently go with the row.
    record.remove(conn, _CUSTOMER, _CUSTOMER.c.id == merged_id)
    return conn.execute(
        sa.insert(_MERGE).values(
            survivor_id=survivor_id, merged_id=merged_id, merged_external_id=merged.external_id,
            reason=reason, actor=actor, merged_at=now, moved=record.moved, removed=record.removed,
            changed=record.changed,
        ).returning(_MERGE.c.id)
    ).scalar_one()


def _repoint(conn: Connection, table: sa.Table, where: sa.ColumnElement[bool], survivor_id: int) -> list[int]:
    """Point the rows ``where`` selects at the survivor; their ids (from the UPDATE itself,
    so a row inserted meanwhile cannot be moved without being recorded)."""
    return list(
        conn.execute(sa.update(table).where(where).values(customer_id=survivor_id).returning(table.c.id)).scalars()
    )


def _fill_customer(conn: Connection, record: _Record, survivor: sa.Row[Any], merged: sa.Row[Any], *,
                   now: datetime) -> None:
    """The survivor's empty fields from the merged customer; attributes merged."""
    values: dict[str, Any] = {}
    for field in FILLED_FIELDS:
        mine, theirs = getattr(survivor, field), getattr(merged, field)
        if (mine is None or not str(mine).strip()) and theirs is not None and str(theirs).strip():
            values[field] = theirs
    attributes = {**(merged.attributes or {}), **(survivor.attributes or {})}
    if attributes != (survivor.attributes or {}):
        values["attributes"] = attributes
    if not values:
        return
    values["updated_at"] = now
    for field in values:
        record.change(_CUSTOMER, survivor.id, field, getattr(survivor, field))
    conn.execute(sa.update(_CUSTOMER).where(_CUSTOMER.c.id == survivor.id).values(values))


#: How restrictive a consent status is: a withdrawal anywhere stands.
_STRICTNESS = {"withdrawn": 2, "granted": 0}


def _merge_consents(conn: Connection, record: _Record, survivor_id: int, merged_id: int) -> None:
    """Per channel family the most restrictive state; the merged rows go or move."""
    c = _CONSENT.c
    rows = conn.execute(
        sa.select(c.id, c.customer_id, c.channel, c.status, c.source, c.recorded_at)
        .where(c.customer_id.in_([survivor_id, merged_id]))
    ).all()
    mine = {row.channel: row for row in rows if row.customer_id == survivor_id}
    theirs = {row.channel: row for row in rows if row.customer_id == merged_id}
    both = sorted(set(mine) & set(theirs))
    for channel in both:
        kept, other = mine[channel], theirs[channel]
        if _STRICTNESS.get(other.status, 1) > _STRICTNESS.get(kept.status, 1):
            # The stricter decision is the one that stands, with its source and time.
            for column in ("status", "source", "recorded_at"):
                record.change(_CONSENT, kept.id, column, getattr(kept, column))
            conn.execute(sa.update(_CONSENT).where(c.id == kept.id).values(
                status=other.status, source=other.source, recorded_at=other.recorded_at))
    if both:
        record.remove(conn, _CONSENT, sa.and_(c.customer_id == merged_id, c.channel.in_(both)))
    record.move(_CONSENT, _repoint(conn, _CONSENT, c.customer_id == merged_id, survivor_id))


def _merge_enrollments(conn: Connection, record: _Record, survivor_id: int, merged_id: int, *,
                       survivor_ref: str, now: datetime) -> None:
    """The survivor's enrolments are the person's; see the module docstring."""
    e = _ENROLLMENT.c
    mine = _ENROLLMENT.alias("mine")
    same_occurrence = sa.exists().where(
        mine.c.customer_id == survivor_id, mine.c.campaign == e.campaign, mine.c.occurrence == e.occurrence)
    running = sa.exists().where(
        mine.c.customer_id == survivor_id, mine.c.campaign == e.campaign,
        mine.c.state.in_(["active", "held_out"]))
    duplicate = conn.execute(
        sa.select(e.id).where(e.customer_id == merged_id, same_occurrence)).scalars().all()
    ended = conn.execute(
        sa.select(e.id, e.state, e.exited_at)
        .where(e.customer_id == merged_id, e.state == "active", ~same_occurrence, running)
    ).all()
    stopped = list(duplicate) + [row.id for row in ended]
    if stopped:
        _skip_queued(conn, record, stopped, reason=f"merged into {survivor_ref}", now=now)
    for row in ended:
        record.change(_ENROLLMENT, row.id, "state", row.state)
        record.change(_ENROLLMENT, row.id, "exited_at", row.exited_at)
    if ended:
        conn.execute(sa.update(_ENROLLMENT).where(e.id.in_([row.id for row in ended]))
                     .values(state=EXITED_MERGED, exited_at=now))
    if duplicate:
        record.remove(conn, _ENROLLMENT, e.id.in_(duplicate))
    record.move(_ENROLLMENT, _repoint(conn, _ENROLLMENT, e.customer_id == merged_id, survivor_id))


def _skip_queued(conn: Connection, record: _Record, enrollment_ids: list[int], *, reason: str,
                 now: datetime) -> None:
    """Skip the queued deliveries of ``enrollment_ids``: the survivor's series sends them."""
    d = _DELIVERY.c
    rows = conn.execute(
        sa.select(d.id, d.status, d.last_error, d.updated_at)
        .where(d.enrollment_id.in_(enrollment_ids), d.status == "queued")
    ).all()
    if not rows:
        return
    for row in rows:
        for column in ("status", "last_error", "updated_at"):
            record.change(_DELIVERY, row.id, column, getattr(row, column))
    conn.execute(sa.update(_DELIVERY).where(d.id.in_([row.id for row in rows]))
                 .values(status="skipped", last_error=reason, updated_at=now))


def _merge_reviews(conn: Connection, record: _Record, survivor_id: int, merged_id: int, *, now: datetime) -> None:
    """Review pairs follow the merged customer to the survivor; repeats are dropped.

    The pair these two customers formed is decided (``merged``) and dropped: it would
    become the survivor paired with itself, which a second merge into the same survivor
    could not repeat (the pair is UNIQUE). The decision is kept in the merge's record.
    """
    r = _REVIEW.c
    rows = conn.execute(
        sa.select(r.id, r.customer_id, r.other_customer_id, r.status, r.decided_at)
        .where(sa.or_(r.customer_id == merged_id, r.other_customer_id == merged_id))
    ).all()
    if not rows:
        return
    existing = {
        (row.customer_id, row.other_customer_id)
        for row in conn.execute(sa.select(r.customer_id, r.other_customer_id).where(
            sa.or_(r.customer_id == survivor_id, r.other_customer_id == survivor_id)))
    }
    dropped, moved = [], []
    for row in rows:
        other = row.other_customer_id if row.customer_id == merged_id else row.customer_id
        if other == survivor_id:
            record.change(_REVIEW, row.id, "status", row.status)
            record.change(_REVIEW, row.id, "decided_at", row.decided_at)
            conn.execute(sa.update(_REVIEW).where(r.id == row.id).values(status="merged", decided_at=now))
            dropped.append(row.id)
            continue
        pair = (min(other, survivor_id), max(other, survivor_id))
        if pair in existing:
            dropped.append(row.id)
            continue
        record.change(_REVIEW, row.id, "customer_id", row.customer_id)
        record.change(_REVIEW, row.id, "other_customer_id", row.other_customer_id)
        moved.append({"b_id": row.id, "b_low": pair[0], "b_high": pair[1]})
    if dropped:
        record.remove(conn, _REVIEW, r.id.in_(dropped))
    if moved:
        # One executemany: the lower id first, so the survivor may land on either side.
        conn.execute(sa.update(_REVIEW).where(r.id == sa.bindparam("b_id")).values(
            customer_id=sa.bindparam("b_low"), other_customer_id=sa.bindparam("b_high")), moved)


__all__ = [
    "EXITED_MERGED",
    "FILLED_FIELDS",
    "MOVED_TABLES",
    "TABLES",
    "MergeError",
    "choose_survivor",
    "from_json",
    "merge_customers",
    "row_json",
    "to_json",
]
