"""Our tracked links: ``GET /c/{token}`` (click redirect) and ``GET /o/{token}.gif`` (open pixel).

* The click token (:mod:`campaigns.sending.tokens`) seals the send key and the target URL
  together (AES-SIV: neither is readable in the URL or an access log), so the redirect
  only ever goes where one of our messages pointed (never an open redirect); a bad token
  is a 404 without a Location.
* The open pixel is a 1x1 transparent GIF answered to every request (the image must never
  break a mail), recording an ``opened`` response only for a valid token
  (:func:`campaigns.sending.tokens.make_open_token`).

Both tokens are keyed by ``[api] link_secret_env`` (default :data:`LINK_SECRET_ENV`), read
at request time; while it is unset, ``/c/`` answers 404 and the pixel records nothing.
Clicks and opens, the many small requests, are recorded through the app's group-commit
:class:`~workers.http.batching.ResponseWriter`; a repeated open, or click of the same
link in the same message, is stored once.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from campaigns.config.schema import AppConfig
from campaigns.config.secretvalues import read_secret
from campaigns.customers.masking import mask_text
from campaigns.responses.preferences import WEB_PROVIDER
from campaigns.responses.recording import InboundResponse
from campaigns.sending.tokens import verify_click_token, verify_open_token
from workers.http.batching import ResponseWriter
from workers.http.errors import guarded
from workers.http.privacy import PRIVATE_HEADERS

logger = logging.getLogger("nurture.http.links")

#: Environment variable holding the HMAC key of click and open tokens.
LINK_SECRET_ENV = "NURTURE_LINK_SECRET"
#: A 1x1 transparent GIF (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def click_ref(send_key: str, url: str) -> str:
    """The dedupe ref of a click: one per link per message, however often it is clicked."""
    return f"{send_key}:{hashlib.sha256(url.encode('utf-8')).hexdigest()[:16]}"


def pixel_answer() -> Response:
    """The open pixel, answered whatever happened."""
    return Response(PIXEL, media_type="image/gif", headers=PRIVATE_HEADERS)


def click_endpoint(*, config: AppConfig, writer: ResponseWriter, clock: Callable[[], datetime]
                   ) -> Callable[[Request], Awaitable[Response]]:
    """``GET /c/{token}``: record a click and redirect to the sealed URL; ``clock`` gives
    the aware current time."""

    async def click(request: Request) -> Response:
        """Record a click and redirect to the signed URL."""
        secret = read_secret(config.api.link_secret_env)
        if secret is None:
            logger.warning("click refused: %s is not set, no click token can be verified", config.api.link_secret_env)
        verified = verify_click_token(request.path_params["token"], secret or "")
        if verified is None:
            return PlainTextResponse("Not found\n", status_code=404, headers=PRIVATE_HEADERS)
        send_key, url = verified
        item = InboundResponse(
            kind="clicked", provider=WEB_PROVIDER, provider_ref=click_ref(send_key, url), occurred_at=clock(),
            send_key=send_key, payload={"url": mask_text(url)[:2048]},
        )
        try:
            await writer.record([item])
        except Exception:
            # The reader came for the page, not for our statistics.
            logger.exception("could not record a click")
        return RedirectResponse(url, status_code=302, headers=PRIVATE_HEADERS)

    return guarded(click, lambda: PlainTextResponse("Not found\n", status_code=404),
                   logger=logger)


def open_pixel_endpoint(*, config: AppConfig, writer: ResponseWriter, clock: Callable[[], datetime]
                        ) -> Callable[[Request], Awaitable[Response]]:
    """``GET /o/{token}.gif``: record an open; always the transparent GIF."""

    async def pixel(request: Request) -> Response:
        """Record an open; always a transparent GIF."""
        send_key = verify_open_token(request.path_params["token"], read_secret(config.api.link_secret_env) or "")
        if send_key is not None:
            item = InboundResponse(kind="opened", provider=WEB_PROVIDER, provider_ref=send_key, occurred_at=clock(),
                                   send_key=send_key)
            try:
                await writer.record([item])
            except Exception:
                logger.exception("could not record an open")
        return pixel_answer()

    return guarded(pixel, pixel_answer, logger=logger)
