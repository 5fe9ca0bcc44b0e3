"""Deciding review items by hand: ``nurture identity review`` (issue #15).

An import that finds a weak identifier (a shared email) on two customers opens an
:class:`~campaigns.store.models.IdentityReview` (:mod:`.review`). An operator then either
merges the pair (:func:`merge_review`: the survivor by
:func:`~campaigns.customers.identity.merging.choose_survivor`, reason ``review``) or keeps
it apart (:func:`keep_apart`): the item is closed and, since an import opens a pair only
once, the two are never proposed again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.config.schema import AppConfig
from campaigns.customers.identity.merging import choose_survivor, merge_customers
from campaigns.customers.profiles import latest_recompute, recompute_profiles_for
from campaigns.errors import NurtureError
from campaigns.store.bulk import select_keyed
from campaigns.store.models import Customer, IdentityReview

#: The reason recorded on a merge decided from a review item.
REVIEW_REASON = "review"

_REVIEW = IdentityReview.__table__
_CUSTOMER = Customer.__table__


class ReviewDecisionError(NurtureError):
    """A review item that cannot be decided: unknown, or already merged or kept apart."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewItem:
    """One review item with the external ids of its two customers."""

    id: int
    customer_id: int
    customer_external_id: str
    other_customer_id: int
    other_external_id: str
    kind: str
    #: The shared identifier, unmasked (the CLI masks it unless asked to reveal it).
    value: str
    source: str | None
    status: str
    opened_at: datetime
    decided_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """The item as a plain dict (``--json``)."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeDecision:
    """What :func:`merge_review` did."""

    review_id: int
    merge_id: int
    survivor_id: int
    merged_id: int
    survivor_external_id: str
    merged_external_id: str


def _items(conn: Connection, where: sa.ColumnElement[bool]) -> list[ReviewItem]:
    first, other = _CUSTOMER.alias("first_customer"), _CUSTOMER.alias("other_customer")
    r = _REVIEW.c
    rows = conn.execute(
        sa.select(r.id, r.customer_id, first.c.external_id.label("customer_external_id"), r.other_customer_id,
                  other.c.external_id.label("other_external_id"), r.kind, r.value, r.source, r.status,
                  r.opened_at, r.decided_at)
        .join_from(_REVIEW, first, first.c.id == r.customer_id)
        .join(other, other.c.id == r.other_customer_id)
        .where(where)
        .order_by(r.opened_at, r.id)
    ).mappings()
    return [ReviewItem(**row) for row in rows]


def list_reviews(conn: Connection, *, status: str | None = "open") -> list[ReviewItem]:
    """Review items in ``status`` (``open``, ``merged``, ``kept_apart``; None for all),
    oldest first."""
    return _items(conn, sa.true() if status is None else _REVIEW.c.status == status)


def _open_item(conn: Connection, review_id: int) -> ReviewItem:
    found = _items(conn, _REVIEW.c.id == review_id)
    if not found:
        raise ReviewDecisionError(f"no review item {review_id} (see `nurture identity review`)")
    item = found[0]
    if item.status != "open":
        when = f" on {item.decided_at:%Y-%m-%d %H:%M} UTC" if item.decided_at else ""
        raise ReviewDecisionError(f"review item {review_id} is already closed ({item.status.replace('_', ' ')}{when})")
    return item


def merge_review(conn: Connection, review_id: int, *, actor: str, now: datetime) -> MergeDecision:
    """Merge the pair of open review item ``review_id`` in the caller's transaction: the
    earlier customer survives; the merge is recorded with reason ``review`` and ``actor``
    (and can be undone with ``nurture customer unmerge``). The item itself is closed as
    ``merged`` by the merge. The caller recomputes the survivor's profile after commit
    (:func:`recompute_survivor`).

    Raises:
        ReviewDecisionError: no such item, or it is already merged or kept apart.
    """
    item = _open_item(conn, review_id)
    survivor = choose_survivor(conn, [item.customer_id, item.other_customer_id])
    merged = item.other_customer_id if survivor == item.customer_id else item.customer_id
    externals = {item.customer_id: item.customer_external_id, item.other_customer_id: item.other_external_id}
    merge_id = merge_customers(conn, survivor_id=survivor, merged_id=merged, reason=REVIEW_REASON, actor=actor,
                               now=now)
    return MergeDecision(review_id=review_id, merge_id=merge_id, survivor_id=survivor, merged_id=merged,
                         survivor_external_id=externals[survivor], merged_external_id=externals[merged])


def keep_apart(conn: Connection, review_id: int, *, now: datetime) -> ReviewItem:
    """Close open review item ``review_id`` as ``kept_apart`` in the caller's transaction:
    the two customers stay two and the pair is never proposed again. Returns the item as
    it was before.

    Raises:
        ReviewDecisionError: no such item, or it is already merged or kept apart.
    """
    item = _open_item(conn, review_id)
    updated = conn.execute(
        sa.update(_REVIEW).where(_REVIEW.c.id == review_id, _REVIEW.c.status == "open")
        .values(status="kept_apart", decided_at=now)
    ).rowcount
    if updated != 1:  # decided by someone else between the read and the update
        raise ReviewDecisionError(f"review item {review_id} was decided meanwhile")
    return item


def recompute_survivor(engine: Engine, config: AppConfig, survivor_id: int) -> bool:
    """Recompute the survivor's profile after a merge is committed, as of the latest full
    recompute so it stays in step with everyone else's; False when profiles were never
    computed (the next ``nurture profiles`` computes everyone's)."""
    return recompute_survivors(engine, config, [survivor_id])


def recompute_survivors(engine: Engine, config: AppConfig, survivor_ids: Iterable[int]) -> bool:
    """:func:`recompute_survivor` for several survivors at once (an import's merges, see
    :attr:`~campaigns.customers.importing.report.ImportReport.survivors`); customers merged
    away since are skipped. False when profiles were never computed or nobody is left."""
    wanted = sorted(set(survivor_ids))
    if not wanted:
        return False
    with engine.connect() as conn:
        as_of = latest_recompute(conn)
        existing = [pk for (pk,) in select_keyed(conn, _CUSTOMER, [(pk,) for pk in wanted], on=("id",),
                                                  columns=(_CUSTOMER.c.id,))]
    if as_of is None or not existing:
        return False
    recompute_profiles_for(engine, config, existing, as_of=as_of)
    return True


__all__ = [
    "REVIEW_REASON",
    "MergeDecision",
    "ReviewDecisionError",
    "ReviewItem",
    "keep_apart",
    "list_reviews",
    "merge_review",
    "recompute_survivor",
    "recompute_survivors",
]
