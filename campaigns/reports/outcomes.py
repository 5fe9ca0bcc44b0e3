"""What became of the deliveries one command handed over: how many were sent, deferred
(and why), skipped (and why) and failed, and how many wait for a later step.

``nurture run``, ``nurture scheduler --once`` and ``nurture track`` print it once their
in-process workers have drained the queue (``broker.url = "stub://"``), so a marketer
reads "3 sent, 1 deferred (quiet hours)" instead of "enqueued 4". With Redis the workers
send later, in other processes: those commands say so and point to ``nurture status``.

The ledger row says it all: ``sent``; ``queued`` with a ``last_error`` is deferred (the
send-time policy or a provider's retry answer holds it until ``due_at``); ``queued``
without one waits for its step's delay; ``skipped`` (policy: consent, suppression, a
goal reached ...), ``failed`` and ``suppressed`` (a provider refused the address for good)
are final.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.identity import IdentityConfig
from campaigns.customers.identity.lookup import resolve_references
from campaigns.store.chunks import chunks
from campaigns.store.models import Delivery

#: Why a message was deferred, as a few words: the first phrase of the send-time policy's
#: reason (campaigns/sending/policy.py) found in ``last_error`` names the kind.
DEFERRAL_KINDS: tuple[tuple[str, str], ...] = (
    ("quiet hours", "quiet hours"),
    ("frequency cap", "frequency cap"),
    ("send window", "send window"),
)
#: Longest reason shown; a provider's error text can be long.
REASON_CHARS = 80


def reason_label(reason: str | None) -> str:
    """``reason`` without its per-customer detail (the time zone or family in trailing
    parentheses, as ``nurture status`` groups them), clipped to :data:`REASON_CHARS`."""
    if not reason:
        return "no reason recorded"
    label = reason.rsplit(" (", 1)[0] if reason.endswith(")") and " (" in reason else reason
    return label if len(label) <= REASON_CHARS else label[: REASON_CHARS - 1] + "…"


def deferral_kind(reason: str | None) -> str:
    """The kind of a deferral: quiet hours, frequency cap or send window, else the reason
    itself (a provider's retry answer, a missing secret)."""
    text = (reason or "").lower()
    for phrase, kind in DEFERRAL_KINDS:
        if phrase in text:
            return kind
    return reason_label(reason)


def delivery_outcomes(engine: Engine, *, ids: Iterable[int] = (), run_ids: Iterable[int] = ()) -> dict[str, Any]:
    """What became of the deliveries ``ids`` and of every delivery of the campaign runs
    ``run_ids`` (each row counted once):

    ``{"deliveries", "sent", "deferred": {kind: n}, "skipped": {reason: n},
    "failed": {reason: n}, "waiting": n, "in_flight": n}``, where ``waiting`` rows are
    planned for a later step and ``in_flight`` ones are still being sent by a worker.
    """
    selected = set(ids)
    runs = sorted(set(run_ids))
    outcome: dict[str, Any] = {"deliveries": 0, "sent": 0, "deferred": {}, "skipped": {}, "failed": {},
                               "waiting": 0, "in_flight": 0}
    with engine.connect() as conn:
        for part in chunks(runs):
            selected.update(conn.execute(sa.select(Delivery.id).where(Delivery.run_id.in_(part))).scalars())
        for part in chunks(sorted(selected)):
            rows = conn.execute(
                sa.select(Delivery.status, Delivery.last_error, sa.func.count())
                .where(Delivery.id.in_(part))
                .group_by(Delivery.status, Delivery.last_error)
            ).all()
            for status, reason, count in rows:
                _count(outcome, status, reason, count)
    for key in ("deferred", "skipped", "failed"):
        outcome[key] = dict(sorted(outcome[key].items(), key=lambda item: (-item[1], item[0])))
    return outcome


def _count(outcome: dict[str, Any], status: str, reason: str | None, count: int) -> None:
    outcome["deliveries"] += count
    if status == "sent":
        outcome["sent"] += count
    elif status == "queued" and reason:
        _add(outcome["deferred"], deferral_kind(reason), count)
    elif status == "queued":
        outcome["waiting"] += count
    elif status == "sending":
        outcome["in_flight"] += count
    elif status == "skipped":
        _add(outcome["skipped"], reason_label(reason), count)
    else:  # failed, or suppressed: the provider refused the address for good
        label = reason_label(reason)
        _add(outcome["failed"], f"address suppressed: {label}" if status == "suppressed" else label, count)


def _add(counts: dict[str, int], key: str, count: int) -> None:
    counts[key] = counts.get(key, 0) + count


def newest_delivery_id(engine: Engine) -> int:
    """The highest delivery id so far (0 for an empty ledger): rows planned after this
    call have higher ids."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.coalesce(sa.func.max(Delivery.id), 0))).scalar_one()


def customer_deliveries_after(
    engine: Engine, reference: str, after_id: int, *, rules: IdentityConfig | None = None
) -> list[int]:
    """Ids of the deliveries to the customer ``reference`` names planned after ``after_id``
    (:func:`newest_delivery_id`): what one tracked event planned for them.

    ``reference`` is read as the event's ``customer_id`` was
    (:func:`campaigns.customers.events.record_events`: an external id or ``kind:value``,
    by ``rules``), so a merged record's id counts the survivor's deliveries.
    """
    with engine.connect() as conn:
        customer_id = resolve_references(conn, [reference], rules=rules or IdentityConfig()).get(reference)
        if customer_id is None:
            return []
        return list(conn.execute(
            sa.select(Delivery.id).where(Delivery.customer_id == customer_id, Delivery.id > after_id)
            .order_by(Delivery.id)
        ).scalars())
