"""Aliyun Dysms pushes (CHANNELS.md §3), the inbound side of :mod:`workers.channels.sms.aliyun`.

:func:`aliyun_routes`: ``POST /callbacks/aliyun/{channel}/report`` (SmsReport) and
``POST /callbacks/aliyun/{channel}/up`` (SmsUp), JSON arrays. Aliyun does not sign its
pushes, so their URLs carry a shared secret, ``?token=<value of NURTURE_CALLBACK_TOKEN>``
(:func:`~workers.http.callbacks.common.check_callback_token`); while that variable is
unset they answer 503 rather than accept pushes from anyone.
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

from campaigns.config.options.aliyun import AliyunSmsConfig
from campaigns.config.schema import AppConfig
from campaigns.responses.recording import InboundResponse
from workers.channels.sms.aliyun import ALIYUN_SUPPRESS, from_aliyun_number
from workers.http.batching import ResponseWriter
from workers.http.callbacks.common import (
    CallbackError,
    Clock,
    china_time,
    json_field,
    record_or_refuse,
    unsigned_json_push,
)
from workers.http.errors import answering_refusals

logger = logging.getLogger("nurture.receivers.sms")

#: What Aliyun expects back from a push it should not retry.
ALIYUN_OK = {"code": 0, "msg": "成功"}


def parse_aliyun_report(items: Sequence[Mapping[str, Any]], *, channel: str,
                        received_at: datetime) -> list[InboundResponse]:
    """Responses of an Aliyun SmsReport push: ``success`` true is delivered, false
    undelivered (permanent for the blacklist and invalid-number codes, which suppress);
    deduplicated on (``biz_id``, ``phone_number``, ``err_code``) as Aliyun advises."""
    responses = []
    for position, item in enumerate(items):
        where = f"item {position}"
        biz_id = json_field(item, "biz_id", where)
        phone = json_field(item, "phone_number", where)
        code = json_field(item, "err_code", where, required=False) or ""
        success = item.get("success")
        if isinstance(success, str) and success.lower() in ("true", "false"):
            success = success.lower() == "true"  # tolerate a stringly-typed flag
        if not isinstance(success, bool):
            raise CallbackError(400, f"{where}.success: expected true or false")
        kind = "delivered" if success else "undelivered"
        payload = {"channel": channel, "biz_id": biz_id, "err_code": code}
        for key in ("err_msg", "sms_size", "send_time", "report_time"):
            if isinstance(item.get(key), (str, int)) and not isinstance(item.get(key), bool):
                payload[key] = item[key]
        responses.append(InboundResponse(
            # CHANNELS.md dedupes on (biz_id, phone_number, err_code); the number is kept as a
            # digest so the key holds no personal data (one BizId may cover many numbers).
            kind=kind, provider="aliyun",
            provider_ref=f"{biz_id}:{hashlib.sha256((phone or '').encode()).hexdigest()[:16]}:{code}",
            occurred_at=china_time(item.get("report_time"), received_at, where=f"{where}.report_time"),
            provider_message_id=biz_id, send_key=json_field(item, "out_id", where, required=False),
            address=from_aliyun_number(phone or ""), family="sms",
            error=None if success else (code or "UNDELIVERED"),
            permanent=not success and code in ALIYUN_SUPPRESS, payload=payload,
        ))
    return responses


def parse_aliyun_up(items: Sequence[Mapping[str, Any]], *, channel: str,
                    received_at: datetime) -> list[InboundResponse]:
    """Replies of an Aliyun SmsUp push, deduplicated on ``sequence_id``."""
    responses = []
    for position, item in enumerate(items):
        where = f"item {position}"
        sequence = json_field(item, "sequence_id", where)
        phone = json_field(item, "phone_number", where)
        content = item.get("content")
        if not isinstance(content, str):
            raise CallbackError(400, f"{where}.content: expected a string")
        payload = {"channel": channel, "sequence_id": sequence}
        for key in ("dest_code", "sign_name", "send_time"):
            if isinstance(item.get(key), (str, int)) and not isinstance(item.get(key), bool):
                payload[key] = item[key]
        responses.append(InboundResponse(
            kind="replied", provider="aliyun", provider_ref=str(sequence),
            occurred_at=china_time(item.get("send_time"), received_at, where=f"{where}.send_time"),
            address=from_aliyun_number(phone or ""), family="sms", text=content, payload=payload,
        ))
    return responses


def aliyun_routes(*, config: AppConfig, clock: Clock, writer: ResponseWriter) -> list[Route]:
    """The Aliyun push routes (see the module docstring) for the ``aliyun_sms`` channels of
    ``config``; responses are recorded by ``writer`` at ``clock()``, which must be aware UTC."""

    async def aliyun_report(request: Request) -> Response:
        """Aliyun SmsReport push (JSON array of receipts)."""
        name, items = await unsigned_json_push(request, config, AliyunSmsConfig, array=True)
        now = clock()
        await record_or_refuse(writer, parse_aliyun_report(items, channel=name, received_at=now), logger=logger)
        return JSONResponse(ALIYUN_OK)

    async def aliyun_up(request: Request) -> Response:
        """Aliyun SmsUp push (JSON array of replies)."""
        name, items = await unsigned_json_push(request, config, AliyunSmsConfig, array=True)
        now = clock()
        await record_or_refuse(writer, parse_aliyun_up(items, channel=name, received_at=now), logger=logger)
        return JSONResponse(ALIYUN_OK)

    return [
        Route("/callbacks/aliyun/{channel}/report", answering_refusals(aliyun_report), methods=["POST"]),
        Route("/callbacks/aliyun/{channel}/up", answering_refusals(aliyun_up), methods=["POST"]),
    ]
