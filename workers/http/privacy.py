"""The headers of every answer to a URL carrying a customer's token (``/u/``, ``/c/``,
``/o/``): what a page about one customer may not do once it leaves us."""

from __future__ import annotations

#: No caching (a pixel must be fetched on every open; a preference page must not linger in
#: a shared cache) and no Referer (the token is in our URL).
PRIVATE_HEADERS = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
    "Referrer-Policy": "no-referrer",
}
#: :data:`PRIVATE_HEADERS` and, for an HTML page, no framing (clickjacking the
#: checkboxes), no script and no sniffing.
PAGE_HEADERS = {
    **PRIVATE_HEADERS,
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
