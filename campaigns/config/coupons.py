"""A campaign's ``coupon``: the unique code each of its messages carries, drawn from an
imported pool or generated (docs/coupons.md)::

    coupon = { pool = "winback10" }              # codes imported with `nurture import coupons`
    coupon = { generate = "WB", length = 10 }    # WB + 10 keyed characters + a check character
    coupon = { pool = "winback10", steps = [1] } # only step 1's messages carry one

Generated codes are kept in a pool too (named after the campaign unless ``pool`` says
otherwise), so a redemption import finds them like imported ones. How codes are made:
:mod:`campaigns.customers.loyalty.coupon_codes`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from campaigns.config.base import StrictModel

#: A pool's name: as a campaign's, at most 64 characters.
POOL_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
#: Characters a generated code's random part may have, bounds included: 8 characters
#: are 40 bits (a guess among a million issued codes hits one in a million), 24 are 120.
MIN_LENGTH, MAX_LENGTH, DEFAULT_LENGTH = 8, 24, 10


class CouponConfig(StrictModel):
    """Where a campaign's coupon codes come from: an imported ``pool``, or ``generate``."""

    #: The pool codes are drawn from (imported), or kept in (generated; default: the
    #: campaign's name).
    pool: str | None = Field(default=None, pattern=POOL_PATTERN)
    #: Generate codes instead: this prefix (upper-case letters, digits and '-', may be
    #: empty) before ``length`` keyed characters and one check character.
    generate: str | None = Field(default=None, pattern=r"^[A-Z0-9-]{0,16}$")
    length: int = Field(default=DEFAULT_LENGTH, ge=MIN_LENGTH, le=MAX_LENGTH)
    #: The steps whose messages carry a coupon, from 0 (default: every step); the others
    #: take none from the pool and their templates see ``coupon`` as None.
    steps: list[Annotated[int, Field(ge=0, le=1000)]] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> CouponConfig:
        if self.generate is None and self.pool is None:
            raise ValueError('give coupon = { pool = "NAME" } (imported codes) or { generate = "PREFIX" }')
        if self.generate is None and "length" in self.model_fields_set:
            raise ValueError("length is the length of generated codes: give it with generate = \"PREFIX\"")
        return self

    @property
    def generated(self) -> bool:
        """True when codes are generated rather than drawn from an imported pool."""
        return self.generate is not None

    def carries(self, step: int) -> bool:
        """True when the messages of ``step`` carry a coupon."""
        return self.steps is None or step in self.steps

    def pool_name(self, campaign: str) -> str:
        """The pool this campaign's codes are in (``campaign`` names it when unset)."""
        return self.pool or campaign


__all__ = ["DEFAULT_LENGTH", "MAX_LENGTH", "MIN_LENGTH", "POOL_PATTERN", "CouponConfig"]
