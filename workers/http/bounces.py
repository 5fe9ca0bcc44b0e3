"""``POST /bounces``: bounce (RFC 3464 DSN) intake.

A bounce as received, e.g. piped from the MTA that receives mail for the VERP address,
authenticated like ``POST /events`` with ``Authorization: Bearer <value of [api] key_env>``;
parsed by :mod:`campaigns.responses.dsn` and recorded by
:func:`campaigns.responses.bounces.record_bounce`. Anyone can mail the bounce address, so a
report is only believed when it carries the keyed tag of one of our messages (VERP or
Message-ID, :func:`campaigns.config.keys.message_tag`) and its Final-Recipient is the
address that message went to; it then affects that one address only. Anything else is a
422 that records nothing; without the installation secret (``[security] secret_env``)
every bounce is refused (503).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from campaigns.config.keys import MIN_SECRET_LENGTH, installation_secret
from campaigns.config.schema import AppConfig
from campaigns.responses.bounces import record_bounce
from campaigns.responses.dsn import DsnError, parse_dsn
from workers.http.errors import bearer_refusal, guarded, json_error, read_limited

logger = logging.getLogger("nurture.http.bounces")

#: Largest request body accepted, in bytes (a bounce quoting a big message is cut by the
#: MTA long before this).
MAX_BODY_BYTES = 1024 * 1024


def bounce_endpoint(*, config: AppConfig, engine: Engine, clock: Callable[[], datetime]
                    ) -> Callable[[Request], Awaitable[Response]]:
    """``POST /bounces`` over ``engine``; ``clock`` gives the aware current time."""
    key_env = config.api.key_env

    async def bounces(request: Request) -> Response:
        """Record a DSN (bounce) as received."""
        refused = bearer_refusal(request, key_env, api="bounce API")
        if refused is not None:
            return refused
        content_type = request.headers.get("content-type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in ("message/rfc822", "multipart/report"):
            return json_error(415, "send the bounce as received, as message/rfc822 or multipart/report")
        secret = installation_secret(config)
        if secret is None:
            logger.warning("bounce refused: %s is not set (or shorter than %d characters), no bounce can be "
                           "verified", config.security.secret_env, MIN_SECRET_LENGTH)
            return json_error(503, f"{config.security.secret_env} is not set (or shorter than {MIN_SECRET_LENGTH} "
                                   "characters): bounces cannot be verified")
        body = await read_limited(request, MAX_BODY_BYTES)
        try:
            report = parse_dsn(body, content_type=content_type)
        except DsnError as exc:
            return json_error(400, str(exc))
        summary = await run_in_threadpool(record_bounce, engine, config, report, secret=secret, now=clock())
        if summary is None:
            return json_error(422, "the bounce names none of our messages (no Message-ID or VERP tag signed with "
                                   "this installation's secret); nothing was recorded")
        return JSONResponse(summary, status_code=202)

    return guarded(bounces, lambda: json_error(500, "internal error; please try again"),
                   logger=logger, body_limit=MAX_BODY_BYTES)
