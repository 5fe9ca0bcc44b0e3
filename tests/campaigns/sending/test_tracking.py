"""Click and open tracking in HTML parts: links routed through signed redirects that the
receiver verifies, our own links and non-web links left alone, one pixel per message."""

from __future__ import annotations

import re

from campaigns.sending.tokens import verify_click_token, verify_open_token
from campaigns.sending.tracking import track_html

BASE, SECRET, KEY = "https://t.example.com", "link-secret", "spring:0:42:once"

HTML = """<html><body>
<p><a href="https://shop.example.com/sale?utm=1&amp;x=2">Sale</a>
<a HREF='http://shop.example.com/b'>B</a>
<a href="mailto:help@example.com">Mail us</a> <a href="#top">Top</a>
<a href="https://t.example.com/u/TOKEN">Unsubscribe</a></p>
</body></html>"""


def test_web_links_become_signed_redirects_to_the_original_url():
    tracked = track_html(HTML, send_key=KEY, base_url=BASE, secret=SECRET)
    redirects = re.findall(r'href=["\']https://t\.example\.com/c/([^"\']+)["\']', tracked, re.IGNORECASE)
    assert [verify_click_token(token, SECRET) for token in redirects] == [
        (KEY, "https://shop.example.com/sale?utm=1&x=2"),  # the entity is decoded, as a browser would
        (KEY, "http://shop.example.com/b"),
    ]
    assert 'href="mailto:help@example.com"' in tracked and 'href="#top"' in tracked
    assert 'href="https://t.example.com/u/TOKEN"' in tracked  # our own links need no redirect


def test_one_open_pixel_before_the_end_of_the_body():
    tracked = track_html(HTML, send_key=KEY, base_url=BASE + "/", secret=SECRET)
    [token] = re.findall(r'<img src="https://t\.example\.com/o/([^"]+)\.gif"', tracked)
    assert verify_open_token(token, SECRET) == KEY
    assert tracked.index("<img") < tracked.lower().index("</body>")
    assert "<img" not in track_html(HTML, send_key=KEY, base_url=BASE, secret=SECRET, opens=False)


def test_a_fragment_without_a_body_gets_the_pixel_at_the_end():
    assert track_html("<p>Hi</p>", send_key=KEY, base_url=BASE, secret=SECRET).startswith("<p>Hi</p><img ")
