"""``POST /loyalty/redemptions``: a shop's till or app spends a customer's points.

The body is one redemption::

    {"customer": "C042", "points": 200, "kind": "coupons",
     "redemption_id": "R-2026-0001", "redeemed_at": "2026-03-02T10:00:00+08:00", "note": "coupon 20 yuan"}

``customer`` is any identifier (``C042``, ``phone:+8613800138000``, ``email:...``);
``redemption_id`` is the idempotency key, in the body or as the ``Idempotency-Key`` header;
``redeemed_at`` defaults to now and ``note`` is optional. The answer:

* **201** redeemed: ``balance`` is what the customer may still redeem for that kind;
* **200** a duplicate (the same id with the same customer, points and kind): nothing
  changes, ``balance`` is the current one for that kind;
* **409** the same id with other values;
* **422** refused, nothing written: ``error`` says why, ``balance`` what was allowed;
* **400** a bad body, **404** an unknown customer, **413** a body over the limit,
  **401/503** the key, as for ``POST /events`` (``[api] key_env``), 503 too while
  ``[loyalty]`` is off; anything unexpected is a 500 with a JSON error, never a traceback.

The redemption itself is :func:`campaigns.customers.loyalty.redeeming.redeem`: all or
nothing, spending the lots that expire first among those allowed for the kind.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from campaigns.config.jsonvalues import UnstorableValue
from campaigns.config.jsonvalues import loads as load_json
from campaigns.config.schema import AppConfig
from campaigns.customers.identity.lookup import resolve_unique
from campaigns.customers.importing.fields import RowInvalid, datetime_value, text_value
from campaigns.customers.importing.rows import check_row
from campaigns.customers.loyalty.balances import standing
from campaigns.customers.loyalty.ledger import ENTRIES, entry_key
from campaigns.customers.loyalty.redeeming import Redemption, redeem
from campaigns.customers.loyalty.redemption_imports import (
    MAX_ID_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_REFERENCE_LENGTH,
    is_id_conflict,
    kind_value,
    points_value,
)
from campaigns.errors import AmbiguousCustomerError
from workers.http.errors import bearer_refusal, guarded, json_error, read_limited

logger = logging.getLogger("nurture.receiver")

#: Largest request body accepted, in bytes: one redemption, with room for a long note.
MAX_BODY_BYTES = 16 * 1024
#: The body's keys; any other is a mistake worth saying (a misspelt ``redemption_id``
#: would otherwise fall back to the header or be refused as missing).
FIELDS = frozenset(("customer", "points", "kind", "redemption_id", "redeemed_at", "note"))


@dataclass(frozen=True)
class RedemptionRequest:
    """A redemption as the body asked for it (``redeemed_at`` None: now)."""

    customer: str
    points: int
    kind: str
    redemption_id: str
    redeemed_at: datetime | None
    note: str | None


def parse_redemption(body: bytes, header_key: str | None, *, config: AppConfig) -> RedemptionRequest | str:
    """The redemption a body asks for, or why it is a 400."""
    try:
        payload = load_json(body)
    except (json.JSONDecodeError, UnicodeDecodeError, UnstorableValue) as exc:
        return f"invalid JSON: {exc}"
    if not isinstance(payload, dict):
        return 'expected a JSON object {"customer": ..., "points": ..., "kind": ..., "redemption_id": ...}'
    unknown = sorted(str(key)[:40] for key in payload if key not in FIELDS)
    if unknown:
        return f"unknown field(s) {', '.join(unknown)} (fields: {', '.join(sorted(FIELDS))})"
    try:
        check_row(payload)
        customer = text_value(payload, "customer", max_length=MAX_REFERENCE_LENGTH)
        if customer is None:
            return "customer: required (any identifier: C042, phone:+86..., email:...)"
        points = points_value(payload.get("points"))
        kind = kind_value(payload.get("kind"), config.loyalty)
        body_key = text_value(payload, "redemption_id", max_length=MAX_ID_LENGTH)
        redeemed_at = datetime_value(payload, "redeemed_at", required=False)
        note = text_value(payload, "note", max_length=MAX_NOTE_LENGTH)
    except RowInvalid as exc:
        return str(exc)
    header = (header_key or "").strip() or None
    if header is not None and len(header) > MAX_ID_LENGTH:
        return f"Idempotency-Key: longer than {MAX_ID_LENGTH} characters"
    if body_key and header and body_key != header:
        return "redemption_id and the Idempotency-Key header differ: give one, or the same in both"
    key = body_key or header
    if key is None:
        return "redemption_id (or the Idempotency-Key header) is required: it makes a retry safe"
    return RedemptionRequest(customer, points, kind, key, redeemed_at, note)


def _kind_of(conn: sa.Connection, redemption_id: str) -> str | None:
    # The entry's detail starts with the kind it redeemed ("coupons: a note").
    detail = conn.execute(sa.select(ENTRIES.c.detail).where(
        ENTRIES.c.entry_key == entry_key("redeem", "redemption", redemption_id))).scalar()
    return None if detail is None else detail.split(":", 1)[0]


def answer_redemption(engine: Engine, config: AppConfig, wanted: RedemptionRequest, *, now: datetime) -> tuple[int, dict[str, Any]]:
    """Apply one parsed redemption: ``(status, body)`` of the answer."""
    with engine.connect() as conn:
        try:
            customer_id = resolve_unique(conn, wanted.customer, rules=config.identity)
        except AmbiguousCustomerError as exc:
            return 400, {"error": str(exc)}
    if customer_id is None:
        return 404, {"error": "customer not found: give any identifier it holds (C042, phone:+86..., email:...)"}
    at = wanted.redeemed_at or now
    [result] = redeem(engine, [Redemption(wanted.redemption_id, customer_id, wanted.points, wanted.kind, at,
                                          note=wanted.note)], now=now)
    base = {"redemption_id": wanted.redemption_id, "customer": wanted.customer, "points": wanted.points,
            "kind": wanted.kind}
    if result.status == "redeemed":
        return 201, {"status": "redeemed", **base, "redeemed_at": at.isoformat(), "balance": result.balance}
    if result.status == "duplicate":
        with engine.connect() as conn:
            stored_kind = _kind_of(conn, wanted.redemption_id)
            if stored_kind not in (None, wanted.kind):
                return 409, {"error": f"redemption_id {wanted.redemption_id!r} was already used for a redemption "
                                      f"of {stored_kind}", "status": "conflict", **base}
            balance = standing(conn, config.loyalty, customer_id, now=now).by_kind.get(wanted.kind, 0)
        return 200, {"status": "duplicate", **base, "balance": balance}
    if is_id_conflict(result):
        return 409, {"error": f"redemption_id {wanted.redemption_id!r}: {result.reason}", "status": "conflict", **base}
    return 422, {"error": result.reason, "status": "refused", **base, "balance": result.balance}


def redemptions_endpoint(*, config: AppConfig, engine: Engine, clock: Callable[[], datetime]
                         ) -> Callable[[Request], Awaitable[Response]]:
    """``POST /loyalty/redemptions`` over ``engine``; ``clock`` gives now (tests pin it)."""
    key_env = config.api.key_env

    def now() -> datetime:
        moment = clock()
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    async def post_redemption(request: Request) -> Response:
        """Redeem a customer's points, once per redemption id."""
        refused = bearer_refusal(request, key_env, api="loyalty API")
        if refused is not None:
            return refused
        if not config.loyalty.enabled:
            return json_error(503, "loyalty is off: set enabled = true under [loyalty] to take redemptions")
        body = await read_limited(request, MAX_BODY_BYTES)
        wanted = parse_redemption(body, request.headers.get("idempotency-key"), config=config)
        if isinstance(wanted, str):
            return json_error(400, wanted)
        status, answer = await run_in_threadpool(answer_redemption, engine, config, wanted, now=now())
        return JSONResponse(answer, status_code=status)

    return guarded(post_redemption, lambda: json_error(
        500, "internal error: the redemption may not have been recorded; send it again with the same "
             "redemption_id (a retry is never applied twice)"),
        logger=logger, body_limit=MAX_BODY_BYTES)


__all__ = ["FIELDS", "MAX_BODY_BYTES", "RedemptionRequest", "answer_redemption", "parse_redemption", "redemptions_endpoint"]
