"""Click and open tracking in HTML messages; pure functions.

With ``[api] public_url`` (where ``nurture serve`` is reachable) and a link secret, every
``http(s)`` link of an HTML part is replaced by ``{public_url}/c/{token}``, the token
sealing the send key and the original URL together, encrypted and authenticated so that
neither shows in the message or an access log (:func:`campaigns.sending.tokens.make_click_token`),
and a 1x1 pixel ``{public_url}/o/{token}.gif`` is added before ``</body>``. The receiver
turns those into ``clicked`` and ``opened`` responses.

Left alone: links already pointing at ``public_url`` (the unsubscribe and preference
links, which must keep working without a redirect), ``mailto:``/``tel:`` and anchors,
and plain-text parts (a rewritten URL in a text mail looks like phishing).
"""

from __future__ import annotations

import html
import re

from campaigns.sending.tokens import MAX_URL_LENGTH, make_click_token, make_open_token

#: ``href="…"`` or ``href='…'`` in an HTML part, attribute name case-insensitive.
_HREF = re.compile(r"""(?P<prefix>\bhref\s*=\s*)(?P<quote>["'])(?P<url>[^"']*)(?P=quote)""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def track_html(text: str, *, send_key: str, base_url: str, secret: str, opens: bool = True) -> str:
    """``text`` with its web links routed through the click redirect and, with ``opens``,
    an open pixel added."""
    base = base_url.rstrip("/")

    def rewrite(match: re.Match[str]) -> str:
        url = html.unescape(match.group("url")).strip()
        if (not url.lower().startswith(("http://", "https://")) or url.startswith(base)
                or len(url) > MAX_URL_LENGTH):
            return match.group(0)
        tracked = f"{base}/c/{make_click_token(send_key, url, secret)}"
        return f"{match.group('prefix')}{match.group('quote')}{tracked}{match.group('quote')}"

    tracked = _HREF.sub(rewrite, text)
    if not opens:
        return tracked
    pixel = (f'<img src="{base}/o/{make_open_token(send_key, secret)}.gif" width="1" height="1" alt="" '
             'style="display:block;border:0;width:1px;height:1px">')
    ends = list(_BODY_END.finditer(tracked))
    if ends:
        last = ends[-1].start()
        return tracked[:last] + pixel + tracked[last:]
    return tracked + pixel
