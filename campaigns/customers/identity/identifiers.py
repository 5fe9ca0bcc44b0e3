"""Identifiers in the one form they are stored and matched in.

A customer is recognised by ``(kind, value)`` pairs (:data:`campaigns.config.identity.
IDENTIFIER_KINDS`). Two systems rarely write the same phone or email the same way, so
every value is normalised before it is stored or looked up:

* ``phone``: E.164 (``+8613800138000``) by ``phonenumbers``; a number without ``+`` is
  read in ``[identity] default_region``; an unparsable or impossible number is no
  identifier at all (it may still be the customer's ``phone`` for sending).
* ``email``: trimmed and lower-cased; in the domains of ``[identity]
  email_dotless_domains`` (Gmail documents it) dots in the local part are dropped. Plus
  tags are kept: no provider documents them as one address for everyone.
* ``id``: ``<source>:<id>`` for a named source (``pos:88``), the bare id otherwise.
* ``openid``: ``<app>:<openid>`` (an openid is only unique within one WeChat app).
* ``unionid``: as given, trimmed.

A reference on the command line or in an order or event file names a customer by any
identifier: ``phone:+86 138 0013 8000``, ``email:a@b.cn``, ``unionid:o6_bm...``,
``openid:wechat:oX...``, ``id:pos:88``, or a bare ``customer_id`` (see :func:`parse_reference`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import phonenumbers

from campaigns.config.identity import IDENTIFIER_KINDS, IdentityConfig

#: Longest stored value (the column's size); longer values are no identifier.
MAX_VALUE_LENGTH = 320


class Identifier(NamedTuple):
    """One normalised ``(kind, value)``.

    A named tuple rather than a dataclass: an import hashes and compares a few million of
    them, and a tuple does both in C."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


#: A mainland China mobile number as tills and web shops write it: 11 ASCII digits from
#: ``1[3-9]``, perhaps after ``+86``, with spaces or hyphens. For every such text
#: phonenumbers gives ``+86`` and the 11 digits (a property test holds the two to it), so
#: imports skip its parser (~15 us a number, a tenth of a customer import) for them.
_CN_MOBILE = re.compile(r"(?:\+86)?(1[3-9][0-9]{9})", re.ASCII)


def normalize_phone(raw: str, *, region: str = "CN") -> str | None:
    """E.164 of ``raw``, or None when it is not a possible number (``raw`` without ``+``
    is read in ``region``); the same as :func:`library_e164`, faster for mainland mobiles."""
    text = raw.strip()
    if not text:
        return None
    compact = text.replace(" ", "").replace("-", "")
    found = _CN_MOBILE.fullmatch(compact)
    if found is not None and (region == "CN" or compact.startswith("+")):
        return "+86" + found.group(1)
    return library_e164(text, region=region)


def library_e164(raw: str, *, region: str = "CN") -> str | None:
    """E.164 of ``raw`` by phonenumbers alone, or None when it is not a possible number."""
    text = raw.strip()
    if not text:
        return None
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str, *, dotless_domains: tuple[str, ...] = ()) -> str | None:
    """Trimmed, lower-case; dots dropped from the local part in ``dotless_domains``.
    None when it is not ``local@domain``."""
    text = raw.strip().lower()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or " " in text:
        return None
    if domain in dotless_domains:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def normalize(kind: str, raw: str | None, *, rules: IdentityConfig, source: str | None = None) -> Identifier | None:
    """The stored form of one identifier, or None when ``raw`` is empty or not valid for
    ``kind``. ``source`` prefixes ``id`` values; its ``wechat_app`` prefixes openids."""
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    value: str | None
    if kind == "phone":
        value = normalize_phone(text, region=rules.default_region)
    elif kind == "email":
        value = normalize_email(text, dotless_domains=rules.email_dotless_domains)
    elif kind == "id":
        value = f"{source}:{text}" if source else text
    elif kind == "openid":
        value = f"{rules.source(source).wechat_app}:{text}"
    elif kind == "unionid":
        value = text
    else:
        raise ValueError(f"unknown identifier kind {kind!r}; kinds: {', '.join(IDENTIFIER_KINDS)}")
    if value is None or len(value) > MAX_VALUE_LENGTH:
        return None
    return Identifier(kind, value)


def parse_reference(text: str, *, rules: IdentityConfig) -> list[Identifier]:
    """The identifiers a reference may mean, most specific first.

    ``kind:value`` names one kind (``phone:+86...``, ``id:pos:88``); a bare value is tried
    as an ``id`` first, then as whatever it parses as (a phone, an email), so
    ``nurture customer 13800138000`` and ``nurture customer C000007`` both work.
    """
    text = text.strip()
    kind, colon, rest = text.partition(":")
    if colon and kind in IDENTIFIER_KINDS:
        if kind == "openid":
            # openid:<app>:<openid> is already in stored form; openid:<openid> is the default app.
            value = rest.strip() if ":" in rest else f"{rules.source(None).wechat_app}:{rest.strip()}"
            return [Identifier("openid", value)] if rest.strip() else []
        found = normalize(kind, rest, rules=rules)
        return [found] if found else []
    candidates = [Identifier("id", text)] if text else []
    if "@" in text:
        email = normalize("email", text, rules=rules)
        if email:
            candidates.append(email)
    else:
        phone = normalize("phone", text, rules=rules)
        if phone:
            candidates.append(phone)
    if text and "@" not in text:
        candidates.append(Identifier("unionid", text))
    return candidates


__all__ = [
    "MAX_VALUE_LENGTH",
    "Identifier",
    "normalize",
    "normalize_email",
    "library_e164",
    "normalize_phone",
    "parse_reference",
]
