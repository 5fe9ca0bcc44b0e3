"""Who is one person across the systems: ``nurture report identity`` and the identity part
of ``nurture customer ID`` (issue #15).

:func:`identity_report` answers, each in one set-based statement on SQLite and PostgreSQL:

* **customers per source**: customers holding an ``id`` identifier of the source (an
  unsourced id, from an import without ``--source``, counts under :data:`NO_SOURCE`);
  a customer known to two systems counts under both;
* **overlaps**: per pair of sources, the customers holding ids of both, and that number
  as a share of each source's customers;
* **omnichannel share** per acquisition channel: customers holding ids of two or more
  sources (:data:`NO_SOURCE` counts as one) among all the channel's customers, the
  figure seed 001's channel analysis asks for;
* **merges per day**: by the local date of ``merged_at`` in the report's time zone;
  a merge later undone is not counted there but in its day's ``unmerged`` column.

:func:`customer_identity` lists one customer's identifiers and the merges that formed
the person; :func:`mask_identifier` is how the CLI shows a value unless asked to reveal it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.config.identity import IDENTIFIER_KINDS
from campaigns.customers.masking import REDACTED, mask_email, mask_phone, mask_text
from campaigns.reports.customers import UNKNOWN
from campaigns.store.models import Customer, CustomerIdentifier, CustomerMerge

#: The source of an ``id`` identifier written by an import without ``--source``.
NO_SOURCE = "(none)"
#: Width of the time buckets merges are counted in before they are put on local days:
#: every time zone's offset, and every daylight-saving change, is a multiple of 15 minutes.
BUCKET_SECONDS = 900

_CUSTOMER = Customer.__table__
_IDENTIFIER = CustomerIdentifier.__table__
_MERGE = CustomerMerge.__table__


def mask_identifier(kind: str, value: str) -> str:
    """``value`` as the CLI shows it without ``--reveal``: an email and a phone as the logs
    mask them, an openid or unionid cut to its first characters (the WeChat app kept), and
    an id with any address or number in it masked (a bare id may be a phone number)."""
    if kind == "email":
        return mask_email(value)
    if kind == "phone":
        return mask_phone(value)
    if kind == "openid":
        app, colon, openid = value.rpartition(":")
        return f"{app}{colon}{openid[:4]}{REDACTED}"
    if kind == "unionid":
        return f"{value[:4]}{REDACTED}"
    return mask_text(value)


def _kind_order(kind: str) -> int:
    return IDENTIFIER_KINDS.index(kind) if kind in IDENTIFIER_KINDS else len(IDENTIFIER_KINDS)


def customer_identity(conn: Connection, customer_id: int) -> dict[str, Any]:
    """The identifiers customer row ``customer_id`` holds and the merges that formed it.

    ``identifiers``: ``kind``, ``value`` (unmasked), ``source``, ``verified``,
    ``first_seen_at``, ``last_seen_at``, ids first, then phone, email, openid, unionid.
    ``merges``: the merges into this customer that still stand, and those into the
    customers it absorbed (a chain A <- B <- C lists both), newest first: ``id``,
    ``survivor_id``, ``merged_id``, ``merged_external_id``, ``reason``, ``actor``,
    ``merged_at``.
    """
    rows = conn.execute(
        sa.select(_IDENTIFIER.c.kind, _IDENTIFIER.c.value, _IDENTIFIER.c.source, _IDENTIFIER.c.verified,
                  _IDENTIFIER.c.first_seen_at, _IDENTIFIER.c.last_seen_at)
        .where(_IDENTIFIER.c.customer_id == customer_id)
    ).mappings()
    identifiers = sorted((dict(row) | {"verified": bool(row["verified"])} for row in rows),
                         key=lambda row: (_kind_order(row["kind"]), row["value"]))
    merges: list[dict[str, Any]] = []
    wanted, seen = {customer_id}, set()
    # One statement per generation of the chain: a person is rarely merged more than a few deep.
    while wanted:
        seen |= wanted
        found = [dict(row) for row in conn.execute(
            sa.select(_MERGE.c.id, _MERGE.c.survivor_id, _MERGE.c.merged_id, _MERGE.c.merged_external_id,
                      _MERGE.c.reason, _MERGE.c.actor, _MERGE.c.merged_at)
            .where(_MERGE.c.survivor_id.in_(sorted(wanted)), _MERGE.c.unmerged_at.is_(None))
        ).mappings()]
        merges.extend(found)
        wanted = {row["merged_id"] for row in found} - seen
    merges.sort(key=lambda row: (row["merged_at"], row["id"]), reverse=True)
    return {"identifiers": identifiers, "merges": merges}


def _source_label() -> sa.ColumnElement[str]:
    return sa.func.coalesce(sa.func.nullif(_IDENTIFIER.c.source, ""), sa.literal(NO_SOURCE))


def _customer_sources() -> sa.Subquery:
    """(customer_id, source) once per customer and source of its ``id`` identifiers."""
    return (sa.select(_IDENTIFIER.c.customer_id, _source_label().label("source"))
            .where(_IDENTIFIER.c.kind == "id").distinct().subquery("customer_source"))


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _bucket(dialect: str) -> sa.ColumnElement[int]:
    """``merged_at`` in whole :data:`BUCKET_SECONDS` since the epoch (UTC)."""
    if dialect == "sqlite":
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' UTC text; %s reads it as UTC.
        seconds = sa.cast(sa.func.strftime("%s", _MERGE.c.merged_at), sa.Integer)
        return seconds // BUCKET_SECONDS
    return sa.cast(sa.func.floor(sa.extract("epoch", _MERGE.c.merged_at) / BUCKET_SECONDS), sa.BigInteger)


def _sources(conn: Connection) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    customers = conn.execute(sa.select(sa.func.count()).select_from(_CUSTOMER)).scalar_one()
    held = _customer_sources()
    per_source = {source: count for source, count in conn.execute(
        sa.select(held.c.source, sa.func.count()).group_by(held.c.source))}
    sources = [{"source": source, "customers": count, "share": _share(count, customers)}
               for source, count in sorted(per_source.items(), key=lambda kv: (kv[0] == NO_SOURCE, -kv[1], kv[0]))]
    first, second = held.alias("first_source"), held.alias("second_source")
    pairs = conn.execute(
        sa.select(first.c.source, second.c.source, sa.func.count())
        .join_from(first, second, sa.and_(first.c.customer_id == second.c.customer_id,
                                          first.c.source < second.c.source))
        .group_by(first.c.source, second.c.source)
    ).all()
    overlaps = [{"first": a, "second": b, "customers": count,
                 "share_of_first": _share(count, per_source[a]), "share_of_second": _share(count, per_source[b])}
                for a, b, count in sorted(pairs, key=lambda row: (-row[2], row[0], row[1]))]
    return customers, sources, overlaps


def _omnichannel(conn: Connection) -> list[dict[str, Any]]:
    held = _customer_sources()
    spread = (sa.select(held.c.customer_id, sa.func.count().label("sources"))
              .group_by(held.c.customer_id).subquery("spread"))
    channel = sa.func.coalesce(sa.func.nullif(_CUSTOMER.c.acquisition_channel, ""), sa.literal(UNKNOWN))
    rows = conn.execute(
        sa.select(channel.label("channel"), sa.func.count(),
                  sa.func.coalesce(sa.func.sum(sa.case((spread.c.sources >= 2, 1), else_=0)), 0))
        .select_from(_CUSTOMER.outerjoin(spread, spread.c.customer_id == _CUSTOMER.c.id))
        .group_by(channel)
    ).all()
    return [{"channel": name, "customers": count, "omnichannel": int(omni), "share": _share(int(omni), count)}
            for name, count, omni in sorted(rows, key=lambda row: (row[0] == UNKNOWN, -row[1], row[0]))]


def _merges(conn: Connection, zone: ZoneInfo, since: datetime | None) -> list[dict[str, Any]]:
    bucket = _bucket(conn.dialect.name).label("bucket")
    undone = (_MERGE.c.unmerged_at.is_not(None)).label("undone")
    query = sa.select(bucket, undone, sa.func.count()).group_by(bucket, undone)
    if since is not None:
        query = query.where(_MERGE.c.merged_at >= since)
    days: dict[str, dict[str, int]] = defaultdict(lambda: {"merges": 0, "unmerged": 0})
    for start, was_undone, count in conn.execute(query):
        day = datetime.fromtimestamp(int(start) * BUCKET_SECONDS, UTC).astimezone(zone).date().isoformat()
        days[day]["unmerged" if was_undone else "merges"] += count
    return [{"day": day, **counts} for day, counts in sorted(days.items())]


def identity_report(engine: Engine, *, zone: ZoneInfo, since: datetime | None = None) -> dict[str, Any]:
    """Customers per source, overlaps between sources, the omnichannel share per
    acquisition channel and merges per local day in ``zone`` (from ``since`` when given;
    ``since`` limits the merges only: the other figures describe the customers as they are).

    Returns ``customers`` (all), ``sources`` (``source``, ``customers``, ``share`` of all),
    ``overlaps`` (``first``, ``second``, ``customers``, ``share_of_first``,
    ``share_of_second``), ``omnichannel`` (``channel``, ``customers``, ``omnichannel``,
    ``share``) with ``omnichannel_total`` (the same over all channels), ``merges``
    (``day``, ``merges`` standing, ``unmerged`` undone since) with ``merges_total`` and
    ``unmerged_total``, and the ``timezone`` and ``since`` it was computed with.
    """
    with engine.connect() as conn:
        customers, sources, overlaps = _sources(conn)
        omnichannel = _omnichannel(conn)
        merges = _merges(conn, zone, since)
    omni = sum(row["omnichannel"] for row in omnichannel)
    return {
        "customers": customers, "sources": sources, "overlaps": overlaps, "omnichannel": omnichannel,
        "omnichannel_total": {"customers": customers, "omnichannel": omni, "share": _share(omni, customers)},
        "merges": merges, "merges_total": sum(row["merges"] for row in merges),
        "unmerged_total": sum(row["unmerged"] for row in merges),
        "timezone": zone.key, "since": since,
    }


__all__ = ["BUCKET_SECONDS", "NO_SOURCE", "customer_identity", "identity_report", "mask_identifier"]
