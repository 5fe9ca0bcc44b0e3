"""What every receiver endpoint needs from HTTP: a body read within a limit, and the
bearer-key check of the APIs called by our own systems (``/events``, ``/bounces``)."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse

from campaigns.config.schema import read_secret


class BodyTooLarge(Exception):
    """The request body exceeds the endpoint's limit."""


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, read in chunks and refused (:class:`BodyTooLarge`) as soon as it passes
    ``limit``: a client lying about, or omitting, Content-Length cannot make us buffer more."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def bearer_refusal(request: Request, key_env: str, *, api: str) -> JSONResponse | None:
    """None when ``Authorization: Bearer <key>`` carries the value of ``key_env``
    (compared in constant time); else the answer: 503 while the variable is unset (the
    ``api`` refuses everyone rather than anyone), 401 for a missing or wrong key."""
    expected = read_secret(key_env)
    if expected is None:
        return JSONResponse({"error": f"{api} disabled: set the environment variable {key_env} "
                                      "(named by [api] key_env) to the key clients must send"}, status_code=503)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return JSONResponse({"error": "missing or wrong API key (Authorization: Bearer <key>)"},
                            status_code=401, headers={"WWW-Authenticate": "Bearer"})
    return None
