"""Tokens that name one message in a URL or a mail header: click, open and one-click
unsubscribe (RFC 8058); pure functions with no I/O.

Each token identifies a delivery by its send key and proves we issued it, so the
endpoints that take one need no cookie or login (RFC 8058 §3.1). A click token also
carries the target URL. Both are secret (a send key names a customer, its occurrence
part can be the source's own event id, e.g. one containing an email; a URL may carry an
email or a phone number in its query), and tokens land in messages, mail headers and
access logs, so since format 2 a token is authenticated encryption of its fields
(:mod:`campaigns.sending.sealing`)::

    key       = HKDF-SHA256(secret, info = b"nurture/" + purpose), 64 bytes
    plaintext = len(send_key) (2 bytes) + send_key [+ len(url) (2 bytes) + url],
                zero-padded to a multiple of 32 bytes (the length says little)
    token     = base64url(0x02 + AES-SIV(key).encrypt(plaintext, [associated data]))

    click:        purpose click-token-v2,       associated data b"nurture-click-v2", link secret
    open:         purpose open-token-v2,        associated data b"nurture-open-v2",  link secret
    unsubscribe:  purpose unsubscribe-token-v2, associated data b"nurture-unsubscribe-v2",
                  the channel's unsubscribe secret
    survey:       purpose survey-token-v2,      associated data b"nurture-survey-v2", link secret;
                  the plaintext's second field is the score (docs/feedback.md)

AES-SIV (RFC 5297) is deterministic: the same link in a retried send gets the same token,
and the only thing two tokens reveal is whether they are equal. Each kind has its own
key, so no token of one kind opens as another; tampering with any byte fails
authentication. Nobody can record a click for another delivery or turn the redirect into
an open redirect. The SMTP channel puts the unsubscribe token in ``List-Unsubscribe``;
the receivers call the ``verify_*`` functions to get the send key back (and from it the
delivery, customer and campaign).

Format 1 is no longer issued. Tokens of that format are still accepted, and verified with
their HMAC as before, because they are in mail already delivered: refusing them would
break every link in every message sent before the upgrade (and an unsubscribe link must
keep working for as long as the mail is kept), while accepting them discloses nothing the
token does not already show to whoever holds it::

    click:              base64url(len(send_key) (2 bytes) + send_key + url + mac),
                        mac = HMAC-SHA256(secret, b"nurture-click-v1:" + payload)
    open, unsubscribe:  base64url(send_key + mac),
                        mac = HMAC-SHA256(secret, context + send_key), context
                        b"nurture-open-v1:" or b"nurture-unsubscribe-v1:"

The fixed prefixes keep a token from doubling as a MAC for anything else signed with the
same secret. They age out with the mail; remove :func:`_verify_legacy_click` and
:func:`_verify_signed_send_key` once old campaigns no longer matter.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlsplit

from campaigns.sending import sealing

#: Purpose labels of the keys (campaigns.config.keys.derive_key) and associated data of format 2.
CLICK_PURPOSE, OPEN_PURPOSE = "click-token-v2", "open-token-v2"
CLICK_AD, OPEN_AD = b"nurture-click-v2", b"nurture-open-v2"
UNSUBSCRIBE_PURPOSE, UNSUBSCRIBE_AD = "unsubscribe-token-v2", b"nurture-unsubscribe-v2"
#: Domain-separation prefixes of the MACs of format-1 (legacy) tokens.
CLICK_CONTEXT = b"nurture-click-v1:"
OPEN_CONTEXT = b"nurture-open-v1:"
UNSUBSCRIBE_CONTEXT = b"nurture-unsubscribe-v1:"
#: Longest target URL a token carries (browsers and mail clients balk beyond ~2,000).
MAX_URL_LENGTH = 2048
#: Longest send key, in bytes (the ledger's column holds 255 characters).
MAX_SEND_KEY_BYTES = 255
_MAC_BYTES = hashlib.sha256().digest_size
_LENGTH_BYTES = 2
#: Longest token :func:`verify_click_token` decodes, in characters (the largest payload:
#: a URL of non-ASCII characters takes up to 4 bytes each).
MAX_CLICK_TOKEN_LENGTH = max(
    sealing.token_length(2 * _LENGTH_BYTES + MAX_SEND_KEY_BYTES + 4 * MAX_URL_LENGTH),
    -(-(_LENGTH_BYTES + MAX_SEND_KEY_BYTES + 4 * MAX_URL_LENGTH + _MAC_BYTES) // 3) * 4,  # format 1
)
SURVEY_PURPOSE, SURVEY_AD = "survey-token-v2", b"nurture-survey-v2"
_MAX_OPEN_TOKEN = 512
_MAX_SURVEY_TOKEN = sealing.token_length(2 * _LENGTH_BYTES + MAX_SEND_KEY_BYTES + 2)
_MAX_UNSUBSCRIBE_TOKEN = 4096


def _web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _send_key_bytes(send_key: str) -> bytes:
    key = send_key.encode("utf-8")
    if not key or len(key) > MAX_SEND_KEY_BYTES:
        raise ValueError(f"the send key must be 1 to {MAX_SEND_KEY_BYTES} bytes")
    return key


def _text(fields: list[bytes] | None) -> list[str] | None:
    if fields is None or not fields[0]:
        return None
    try:
        return [field.decode("utf-8") for field in fields]
    except UnicodeDecodeError:
        return None


def _mac(context: bytes, payload: bytes, secret: str) -> bytes:
    """The format-1 MAC of ``payload`` under ``context``."""
    return hmac.new(secret.encode("utf-8"), context + payload, hashlib.sha256).digest()


# --------------------------------------------------------------------------------------
# Click and open tokens (tracked links and the open pixel)


def make_click_token(send_key: str, url: str, secret: str) -> str:
    """The URL-safe, opaque token for a click on ``url`` in the message ``send_key``.

    Raises:
        ValueError: no secret, an empty send key, or ``url`` is not an absolute http(s)
            URL of at most :data:`MAX_URL_LENGTH` characters (a ``javascript:`` link is
            never worth tracking).
    """
    if not secret:
        raise ValueError("a click-token secret is required")
    key = _send_key_bytes(send_key)
    if len(url) > MAX_URL_LENGTH or not _web_url(url):
        raise ValueError(f"not an absolute http(s) URL of at most {MAX_URL_LENGTH} characters: {url[:80]!r}")
    return sealing.seal(secret, CLICK_PURPOSE, CLICK_AD, [key, url.encode("utf-8")])


def verify_click_token(token: str, secret: str) -> tuple[str, str] | None:
    """``(send_key, url)`` sealed in ``token`` with ``secret``, else None.

    Never raises for malformed input: garbage, a tampered token, a token of another
    secret, an open or unsubscribe token all simply fail. Format-1 tokens (in mail sent
    before format 2) are still verified, with their HMAC: see the module docstring.
    """
    data = sealing.decode(token, MAX_CLICK_TOKEN_LENGTH) if secret else None
    if not data:
        return None
    if not sealing.is_sealed(data):
        return _verify_legacy_click(data, secret)
    fields = _text(sealing.unseal(data, secret, CLICK_PURPOSE, CLICK_AD, 2))
    return (fields[0], fields[1]) if fields else None


def _verify_legacy_click(data: bytes, secret: str) -> tuple[str, str] | None:
    """A format-1 click token: ``payload + HMAC-SHA256(secret, CLICK_CONTEXT + payload)``."""
    if len(data) <= _LENGTH_BYTES + _MAC_BYTES:
        return None
    payload, mac = data[:-_MAC_BYTES], data[-_MAC_BYTES:]
    # Verify before parsing: nothing of an unsigned payload is looked at.
    if not hmac.compare_digest(mac, _mac(CLICK_CONTEXT, payload, secret)):
        return None
    size = int.from_bytes(payload[:_LENGTH_BYTES], "big")
    fields = _text([payload[_LENGTH_BYTES : _LENGTH_BYTES + size], payload[_LENGTH_BYTES + size :]])
    if fields is None or len(fields[0].encode("utf-8")) != size:
        return None
    return fields[0], fields[1]


def make_open_token(send_key: str, secret: str) -> str:
    """The URL-safe, opaque token of the open pixel of message ``send_key``.

    Put it in a message as ``<img src="https://t.example.com/o/{token}.gif" ...>``.
    """
    if not secret:
        raise ValueError("an open-token secret is required")
    return sealing.seal(secret, OPEN_PURPOSE, OPEN_AD, [_send_key_bytes(send_key)])


def verify_open_token(token: str, secret: str) -> str | None:
    """The send key sealed in an open token with ``secret``, else None; never raises for
    malformed input. Format-1 open tokens (``base64url(send_key + HMAC)``) still verify."""
    return _verify_send_key(token, secret, purpose=OPEN_PURPOSE, associated=OPEN_AD,
                            legacy_context=OPEN_CONTEXT, max_length=_MAX_OPEN_TOKEN)


# --------------------------------------------------------------------------------------
# Survey tokens (one-click score links)


def make_survey_token(send_key: str, score: int, secret: str) -> str:
    """The URL-safe, opaque token of the link that answers the survey in message
    ``send_key`` with ``score``: one per score, sealed together, so a link can neither
    be moved to another message nor edited to another score.

    Raises:
        ValueError: no secret, an empty send key, or a score outside 0-10.
    """
    if not secret:
        raise ValueError("a survey-token secret is required")
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10:
        raise ValueError(f"a survey score is from 0 to 10, not {score!r}")
    return sealing.seal(secret, SURVEY_PURPOSE, SURVEY_AD, [_send_key_bytes(send_key), str(score).encode("ascii")])


def verify_survey_token(token: str, secret: str) -> tuple[str, int] | None:
    """``(send_key, score)`` sealed in a survey token with ``secret``, else None; never
    raises for malformed input (a click, open or unsubscribe token fails too)."""
    data = sealing.decode(token, _MAX_SURVEY_TOKEN) if secret else None
    if not data or not sealing.is_sealed(data):
        return None
    fields = _text(sealing.unseal(data, secret, SURVEY_PURPOSE, SURVEY_AD, 2))
    if not fields or not fields[1].isdigit() or not 0 <= int(fields[1]) <= 10:
        return None
    return fields[0], int(fields[1])


# --------------------------------------------------------------------------------------
# One-click unsubscribe tokens (RFC 8058)


def make_unsubscribe_token(send_key: str, secret: str) -> str:
    """The URL-safe, opaque token for ``send_key`` sealed with ``secret``."""
    if not secret:
        raise ValueError("an unsubscribe secret is required")
    if not send_key:
        raise ValueError("the send key must not be empty")
    return sealing.seal(secret, UNSUBSCRIBE_PURPOSE, UNSUBSCRIBE_AD, [send_key.encode("utf-8")])


def verify_unsubscribe_token(token: str, secret: str) -> str | None:
    """The send key in ``token`` if it was sealed (or, format 1, signed) with ``secret``,
    else None.

    Never raises for malformed input: any garbage simply fails verification.
    """
    return _verify_send_key(token, secret, purpose=UNSUBSCRIBE_PURPOSE, associated=UNSUBSCRIBE_AD,
                            legacy_context=UNSUBSCRIBE_CONTEXT, max_length=_MAX_UNSUBSCRIBE_TOKEN)


def unsubscribe_url(template: str, send_key: str, secret: str) -> str:
    """``template`` (e.g. ``https://u.example.com/u/{token}``) with the signed token filled in.

    Also suitable for the visible unsubscribe link in a message body.
    """
    return template.replace("{token}", make_unsubscribe_token(send_key, secret))


def unsubscribe_mailto(address: str, send_key: str, secret: str) -> str:
    """A ``mailto:`` URI for ``address`` carrying the token in the subject.

    The token rides in the subject rather than the local part because it is longer
    than the 64 octets RFC 5321 allows a local part.
    """
    token = make_unsubscribe_token(send_key, secret)
    return f"mailto:{address}?subject={quote('unsubscribe ' + token)}"


# --------------------------------------------------------------------------------------
# A send key alone (open and unsubscribe tokens)


def _verify_send_key(token: str, secret: str, *, purpose: str, associated: bytes,
                     legacy_context: bytes, max_length: int) -> str | None:
    """The send key in a token naming one message (unsubscribe, open pixel): sealed under
    ``purpose`` and ``associated`` (format 2), or signed under ``legacy_context`` (format 1,
    still in delivered mail); None for anything else. Never raises for malformed input."""
    data = sealing.decode(token, max_length) if secret else None
    if not data:
        return None
    if not sealing.is_sealed(data):
        return _verify_signed_send_key(data, legacy_context, secret)
    fields = sealing.unseal(data, secret, purpose, associated, 1)
    if not fields or not fields[0]:
        return None
    try:
        return fields[0].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _verify_signed_send_key(data: bytes, context: bytes, secret: str) -> str | None:
    """The send key of decoded format-1 token bytes, ``send_key + HMAC-SHA256(secret,
    context + send_key)``, if ``secret`` signed it under ``context``; else None."""
    if len(data) <= _MAC_BYTES:
        return None
    raw, mac = data[:-_MAC_BYTES], data[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(context, raw, secret)):
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
