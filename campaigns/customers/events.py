"""Recording events as they happen (``nurture track``, ``POST /events``).

Events are validated and deduplicated exactly as ``nurture import events`` does (same
parser, same ``dedupe_key``: the source's ``event_id`` or a hash of the event's content),
but one call answers per event: ``accepted`` (newly stored), ``duplicate`` (already
stored, or repeated earlier in the same call) or ``rejected`` with the reason. The ids of
newly stored events are returned so the caller can plan event campaigns for just them
(:func:`campaigns.sending.event_triggers.plan_for_events`).

An event names its customer as an import's event does: by a bare ``customer_id`` (an
external id) or by any identifier, ``phone:+86 138...``, ``email:a@b.cn``, ``unionid:...``,
``id:pos:88`` (:func:`~campaigns.customers.identity.lookup.resolve_references`). A merged
record's id is held by its survivor since the merge, so its events reach the survivor.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.engine import Engine

from campaigns.config.identity import IdentityConfig
from campaigns.customers.identity.lookup import resolve_references
from campaigns.customers.importing.fields import RowInvalid
from campaigns.customers.importing.rows import parse_event
from campaigns.customers.importing.upserts import write_in_halves
from campaigns.store.chunks import chunks
from campaigns.store.db import dialect_insert
from campaigns.store.models import Event, utcnow

EventStatusName = Literal["accepted", "duplicate", "rejected"]


@dataclass(frozen=True)
class EventStatus:
    """What became of one submitted event (``index`` is its position in the call)."""

    index: int
    status: EventStatusName
    #: The event's dedupe key (its ``event_id``, or the content hash); None when rejected early.
    event_id: str | None = None
    reason: str | None = None


@dataclass
class EventResult:
    """Per-event statuses, in submission order, and the ids of newly stored events."""

    statuses: list[EventStatus] = field(default_factory=list)
    accepted_ids: list[int] = field(default_factory=list)

    def count(self, status: EventStatusName) -> int:
        """How many events ended with ``status``."""
        return sum(1 for item in self.statuses if item.status == status)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (the body of the HTTP answer)."""
        return {
            "accepted": self.count("accepted"),
            "duplicate": self.count("duplicate"),
            "rejected": self.count("rejected"),
            "events": [
                {key: value for key, value in asdict(item).items() if value is not None}
                for item in self.statuses
            ],
        }


def record_events(
    engine: Engine,
    events: Iterable[Mapping[str, Any]],
    *,
    now: datetime | None = None,
    rules: IdentityConfig | None = None,
) -> EventResult:
    """Validate and store ``events`` (dicts with ``customer_id``, ``name``, optional
    ``event_id``, ``occurred_at`` (default ``now``) and ``properties``) in one transaction.

    ``customer_id`` is an external id or any identifier (``phone:...``), normalised by
    ``rules``, the configured ``[identity]`` (``cfg.identity``; the defaults when not given).

    A bad event is rejected with its reason while the others are stored; an event whose
    ``event_id`` (or content) is already stored is a ``duplicate`` and is left as it is.
    Values that cannot be stored (:mod:`campaigns.config.jsonvalues`) reject their event; should
    the database still refuse the batch, it is retried in halves so that only the refused
    event is rejected.
    """
    moment = now or utcnow()
    parsed: list[tuple[int, str, dict[str, Any]]] = []
    statuses: dict[int, EventStatus] = {}
    for index, raw in enumerate(events):
        if not isinstance(raw, Mapping):
            statuses[index] = EventStatus(index, "rejected", reason="expected a JSON object")
            continue
        row = dict(raw)
        if row.get("occurred_at") in (None, ""):
            row["occurred_at"] = moment.isoformat()
        try:
            key, record = parse_event(row, csv_source=False)
        except RowInvalid as exc:
            statuses[index] = EventStatus(index, "rejected", reason=str(exc))
            continue
        parsed.append((index, key, record))

    result = EventResult()
    if parsed:
        with engine.connect() as conn:
            # One set-based resolution for the batch, as an import batch's events get.
            customers = resolve_references(conn, {record["customer"] for _, _, record in parsed},
                                           rules=rules or IdentityConfig())
        first_of_key: dict[str, int] = {}
        values: list[dict[str, Any]] = []
        for index, key, record in parsed:
            customer = record["customer"]
            if customer not in customers:
                statuses[index] = EventStatus(
                    index, "rejected", key, f"customer_id {customer!r} not found: import customers first"
                )
            elif key in first_of_key:
                statuses[index] = EventStatus(index, "duplicate", key)
            else:
                first_of_key[key] = index
                values.append({**record["event"], "customer_id": customers[customer]})
        # Should the database refuse the batch, it is retried in halves: only the refused
        # event is rejected (by its error's class, never the parameters: personal data).
        stored, refused_events = write_in_halves(functools.partial(_store, engine), values)
        inserted = {key: pk for batch in stored for key, pk in batch.items()}
        refused = {value["dedupe_key"]: f"the database refused this event ({cause})"
                   for value, cause in refused_events}
        for key, index in first_of_key.items():
            if key in refused:
                statuses[index] = EventStatus(index, "rejected", key, refused[key])
            elif key in inserted:
                statuses[index] = EventStatus(index, "accepted", key)
                result.accepted_ids.append(inserted[key])
            else:
                statuses[index] = EventStatus(index, "duplicate", key)
    result.statuses = [statuses[index] for index in sorted(statuses)]
    result.accepted_ids.sort()
    return result


def _store(engine: Engine, values: list[dict[str, Any]]) -> dict[str, int]:
    """Insert ``values`` in one transaction; dedupe_key -> id of the rows it inserted."""
    table = Event.__table__
    inserted: dict[str, int] = {}
    # The write transaction starts with its first INSERT (SQLite: no read-then-write).
    with engine.begin() as conn:
        for chunk in chunks(values):
            # Events are facts: an already stored event is left exactly as it is, and
            # RETURNING names only the rows this statement inserted.
            insert = (
                dialect_insert(conn, table)
                .values(chunk)
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
                .returning(table.c.id, table.c.dedupe_key)
            )
            inserted.update({key: pk for pk, key in conn.execute(insert)})
    return inserted


__all__ = ["EventResult", "EventStatus", "record_events"]
