"""Tencent Cloud SMS pushes (CHANNELS.md §4), the inbound side of :mod:`workers.channels.sms.tencent`.

:func:`tencent_routes`: ``POST /callbacks/tencent/{channel}/status`` (receipts, a JSON
array) and ``POST /callbacks/tencent/{channel}/reply`` (one JSON object). Tencent does not
sign its pushes, so their URLs carry a shared secret, ``?token=<value of
NURTURE_CALLBACK_TOKEN>`` (:func:`~workers.http.callbacks.common.check_callback_token`);
while that variable is unset they answer 503 rather than accept pushes from anyone.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from campaigns.config.options.tencent import TencentSmsConfig
from campaigns.config.schema import AppConfig
from campaigns.responses.recording import InboundResponse
from workers.channels.sms.tencent import TENCENT_SUPPRESS
from workers.http.batching import ResponseWriter
from workers.http.callbacks.common import (
    CallbackError,
    Clock,
    china_time,
    json_field,
    record_or_refuse,
    unix_time,
    unsigned_json_push,
)
from workers.http.errors import answering_refusals

logger = logging.getLogger("nurture.receivers.sms")

#: What Tencent expects back from a push it should not retry.
TENCENT_OK = {"result": 0, "errmsg": "OK"}


def tencent_phone(nationcode: str | None, mobile: str) -> str:
    """E.164 of a Tencent ``nationcode`` + ``mobile`` pair (nationcode 86 when absent)."""
    mobile = mobile.strip()
    if mobile.startswith("+"):
        return mobile
    return "+" + (nationcode or "86").strip().lstrip("+") + mobile


def parse_tencent_status(items: Sequence[Mapping[str, Any]], *, channel: str,
                         received_at: datetime) -> list[InboundResponse]:
    """Responses of a Tencent receipt push: ``report_status`` SUCCESS is delivered, FAIL
    undelivered; deduplicated on (``sid``, ``report_status``)."""
    responses = []
    for position, item in enumerate(items):
        where = f"item {position}"
        sid = json_field(item, "sid", where)
        status = (json_field(item, "report_status", where) or "").upper()
        if status not in ("SUCCESS", "FAIL"):
            raise CallbackError(400, f"{where}.report_status: expected SUCCESS or FAIL")
        mobile = json_field(item, "mobile", where)
        nationcode = json_field(item, "nationcode", where, required=False)
        errmsg = json_field(item, "errmsg", where, required=False) or ""
        delivered = status == "SUCCESS"
        payload = {"channel": channel, "sid": sid, "report_status": status, "errmsg": errmsg}
        for key in ("description", "user_receive_time"):
            if isinstance(item.get(key), str):
                payload[key] = item[key]
        # ``ext`` is the SessionContext we sent (our send key) when Tencent echoes it.
        ext = item.get("ext")
        responses.append(InboundResponse(
            kind="delivered" if delivered else "undelivered", provider="tencent",
            provider_ref=f"{sid}:{status}",
            occurred_at=china_time(item.get("user_receive_time"), received_at, where=f"{where}.user_receive_time"),
            provider_message_id=sid, send_key=(ext.strip() or None) if isinstance(ext, str) else None,
            address=tencent_phone(nationcode, mobile or ""), family="sms",
            error=None if delivered else (errmsg or status),
            permanent=not delivered and errmsg in TENCENT_SUPPRESS, payload=payload,
        ))
    return responses


def parse_tencent_reply(item: Mapping[str, Any], *, channel: str, received_at: datetime) -> InboundResponse:
    """The reply of a Tencent reply push. Tencent gives it no id, so the deduplication key
    is a digest of who wrote, when and what (a retried push repeats all three) and keeps
    neither the number nor the text in the database."""
    mobile = json_field(item, "mobile", "body")
    nationcode = json_field(item, "nationcode", "body", required=False)
    text = item.get("text")
    if not isinstance(text, str):
        raise CallbackError(400, "body.text: expected a string")
    sent = item.get("time")
    digits = str(sent).strip() if isinstance(sent, (int, str)) and not isinstance(sent, bool) else ""
    occurred_at = unix_time(digits, "body.time")
    seconds = int(digits)
    address = tencent_phone(nationcode, mobile or "")
    ref = hashlib.sha256(f"{address}\x00{seconds}\x00{text}".encode()).hexdigest()
    payload: dict[str, Any] = {"channel": channel, "time": seconds}
    for key in ("extend", "sign"):
        if isinstance(item.get(key), str):
            payload[key] = item[key]
    return InboundResponse(
        kind="replied", provider="tencent", provider_ref=ref, occurred_at=occurred_at,
        address=address, family="sms", text=text, payload=payload,
    )


def tencent_routes(*, config: AppConfig, clock: Clock, writer: ResponseWriter) -> list[Route]:
    """The Tencent push routes (see the module docstring) for the ``tencent_sms`` channels
    of ``config``; responses are recorded by ``writer`` at ``clock()``, which must be aware UTC."""

    async def tencent_status(request: Request) -> Response:
        """Tencent receipt push (JSON array)."""
        name, items = await unsigned_json_push(request, config, TencentSmsConfig, array=True)
        now = clock()
        await record_or_refuse(writer, parse_tencent_status(items, channel=name, received_at=now), logger=logger)
        return JSONResponse(TENCENT_OK)

    async def tencent_reply(request: Request) -> Response:
        """Tencent reply push (one JSON object)."""
        name, items = await unsigned_json_push(request, config, TencentSmsConfig, array=False)
        now = clock()
        await record_or_refuse(writer, [parse_tencent_reply(items[0], channel=name, received_at=now)],
                               logger=logger)
        return JSONResponse(TENCENT_OK)

    return [
        Route("/callbacks/tencent/{channel}/status", answering_refusals(tencent_status), methods=["POST"]),
        Route("/callbacks/tencent/{channel}/reply", answering_refusals(tencent_reply), methods=["POST"]),
    ]
