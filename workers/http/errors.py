"""What every receiver endpoint needs from HTTP: a body read within a limit, the
bearer-key check of the APIs called by our own systems (``/events``, ``/bounces``), the
JSON error answer, the guard that answers instead of raising, and refusals raised
as :class:`Refused` and answered by :func:`answering_refusals`."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from campaigns.config.secretvalues import read_secret


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


def json_error(status: int, message: str, **headers: str) -> JSONResponse:
    """The JSON error answer of every API endpoint: ``{"error": message}`` with ``status``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def guarded(handler: Callable[[Request], Awaitable[Response]], fallback: Callable[[], Response], *,
            logger: logging.Logger, body_limit: int | None = None) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` answering ``fallback()`` instead of raising: a customer clicking a link
    must never see a traceback, and neither must a mail provider.

    A body past ``body_limit`` (:class:`BodyTooLarge`, for handlers that read one) is a
    413 and a client gone mid-body a 400; anything else is logged on ``logger`` with its
    traceback.
    """

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except BodyTooLarge:
            return json_error(413, f"request body larger than {body_limit} bytes" if body_limit is not None
                              else "request body too large")
        except ClientDisconnect:
            return json_error(400, "client disconnected")
        except Exception:
            logger.exception("%s %s failed", request.method, request.url.path.split("/", 2)[1])
            return fallback()

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


class Refused(Exception):
    """A request refused on purpose: ``status`` and a reason safe to return to the caller
    (raise it anywhere below a handler wrapped by :func:`answering_refusals`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def answering_refusals(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` answering a :class:`Refused` it raises with :func:`json_error`, so the
    checks it calls can refuse by raising, however deep they sit."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Refused as refused:
            return json_error(refused.status, refused.message)

    endpoint.__name__ = endpoint.__qualname__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint
