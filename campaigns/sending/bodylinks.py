"""The unsubscribe and preference links a template puts in a message body:
``{{ unsubscribe_url }}`` and ``{{ preferences_url }}``; pure functions.

Both are ``{public_url}/u/{token}``: the page of ``nurture serve`` where the recipient sees
which channels they get marketing on and unticks any (``workers/http/preferences.py``).
A link in a body opens that page rather than unsubscribing at once, because mail scanners
follow every link of a message (RFC 8058's one-click unsubscribe is a POST, and the SMTP
channel offers it in the ``List-Unsubscribe`` header). The two variables are the same URL
today; templates name the one that fits their wording, so the page can split later.

The token is an unsubscribe token (:func:`campaigns.sending.tokens.make_unsubscribe_token`)
sealing the message's send key, so each link is signed, per recipient and per message, and
shows nothing of the customer. It is sealed with the ``[api]`` link secret, like the click
and open tokens of the same ``public_url`` (its own purpose keeps the kinds apart), rather
than an SMTP channel's unsubscribe secret, so SMS, WeChat, webhook and outbox messages get
working links too. The preference page verifies either.

Without ``[api] public_url`` or with the link secret unset both variables are empty
strings (a template can test ``{% if unsubscribe_url %}``), and ``nurture check`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from campaigns.config.secretvalues import read_secret
from campaigns.sending.tokens import make_unsubscribe_token

if TYPE_CHECKING:
    from campaigns.config.runtime import ApiConfig

#: The template variables this module fills.
LINK_VARIABLES = ("unsubscribe_url", "preferences_url")


@dataclass(frozen=True)
class BodyLinks:
    """What ``{{ unsubscribe_url }}`` and ``{{ preferences_url }}`` hold in one message."""

    unsubscribe_url: str = ""
    preferences_url: str = ""


#: The links of a message when they cannot be made (no ``public_url`` or no secret).
NO_LINKS = BodyLinks()


def body_link_secret(api: ApiConfig) -> str | None:
    """The secret body links are sealed with: the link secret, once ``public_url`` is set
    (read once per batch by the caller, not per message)."""
    return read_secret(api.link_secret_env) if api.public_url else None


def make_body_links(send_key: str, *, public_url: str | None, secret: str | None) -> BodyLinks:
    """The links of the message ``send_key``: ``{public_url}/u/{token}``, or :data:`NO_LINKS`
    without a public URL or a secret."""
    if not public_url or not secret or not send_key:
        return NO_LINKS
    url = f"{public_url.rstrip('/')}/u/{make_unsubscribe_token(send_key, secret)}"
    return BodyLinks(unsubscribe_url=url, preferences_url=url)


def missing_links_reason(api: ApiConfig) -> str | None:
    """Why every message's links are empty under this ``[api]`` section, or None when
    they are made: phrased for ``nurture check``, with the key to fix."""
    if not api.public_url:
        return ("api.public_url is not set: unsubscribe_url and preferences_url are empty in every message; "
                "set it to the address `nurture serve` is reachable at (e.g. https://t.example.com)")
    if not read_secret(api.link_secret_env):
        return (f"api.link_secret_env: environment variable {api.link_secret_env} is not set: unsubscribe_url "
                "and preferences_url are empty in every message (they are signed with it) until it is")
    return None
