"""``[identity]``: how imports recognise one person across the systems that feed nurture.

Every customer holds identifiers ``(kind, value)``: ``id`` (a source system's id, written
``<source>:<id>``, or the bare ``customer_id`` of an import without a source), ``phone``
(E.164), ``email``, ``openid`` (``<app>:<openid>``, one per WeChat app) and ``unionid``.
A source (``[identity.sources.pos]``) names which identifiers its rows are matched on;
a match on a strong identifier merges customers, one on a weak identifier (``email`` by
default, a shared family address is common) only opens a review item. See
docs/identity.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from campaigns.config.base import StrictModel

#: What a customer can be recognised by.
IdentifierKind = Literal["id", "phone", "email", "openid", "unionid"]
#: The kinds an import can match on (a row's own ``id`` is always matched).
MatchKind = Literal["phone", "email", "openid", "unionid"]
IDENTIFIER_KINDS: tuple[str, ...] = ("id", "phone", "email", "openid", "unionid")


class IdentitySourceConfig(StrictModel):
    """One system customers are imported from (``[identity.sources.<name>]``)."""

    #: Identifiers a row of this source is matched on, besides its own id.
    match: tuple[MatchKind, ...] = ()
    #: Identifiers this source has verified (a phone confirmed by SMS code at the till):
    #: a match on a verified phone is strong even when ``require_verified_phone`` is set.
    verified: tuple[MatchKind, ...] = ()
    #: The WeChat app (official account or mini program) whose openids this source holds.
    wechat_app: str = Field(default="wechat", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class IdentityConfig(StrictModel):
    """Matching rules shared by every source."""

    #: Kinds that never merge on their own: a match opens a review item instead.
    weak: tuple[MatchKind, ...] = ("email",)
    #: A phone merges only when at least one side has it verified; else it is weak.
    require_verified_phone: bool = True
    #: Country assumed for phone numbers written without ``+`` (ISO 3166 alpha-2).
    default_region: str = Field(default="CN", pattern=r"^[A-Z]{2}$")
    #: Email domains whose provider documents that dots in the local part are ignored
    #: (Gmail): ``a.b@gmail.com`` and ``ab@gmail.com`` are one address there.
    email_dotless_domains: tuple[str, ...] = ("gmail.com", "googlemail.com")
    #: The systems imports come from; ``nurture import --source NAME`` picks one.
    sources: dict[str, IdentitySourceConfig] = Field(default_factory=dict)

    @field_validator("sources")
    @classmethod
    def _source_names(cls, value: dict[str, IdentitySourceConfig]) -> dict[str, IdentitySourceConfig]:
        for name in value:
            if not name or len(name) > 32 or not all(ch.isalnum() or ch in "_-" for ch in name):
                raise ValueError(f"source name {name!r}: use 1-32 letters, digits, '_' or '-'")
        return value

    @field_validator("email_dotless_domains")
    @classmethod
    def _lower_domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(domain.strip().lower() for domain in value)

    def source(self, name: str | None) -> IdentitySourceConfig:
        """The rules of source ``name``; an unnamed or undeclared source matches on nothing
        but its own ids."""
        if name and name in self.sources:
            return self.sources[name]
        return IdentitySourceConfig()
