"""``[recommendations]``: the product recommendations refresh (what it computes, how many
per customer, what it leaves out) and when the scheduler runs it.

The refresh itself is :mod:`campaigns.recommendations`; docs/recommendations.md explains
the signals (co-purchase by lift, category affinity, popularity) and the evaluation.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from campaigns.config.base import Duration, StrictModel
from campaigns.config.values import FiniteFloat, check_cron, check_timezone

#: Most recommendations kept per customer: the table holds customers x top_n rows.
MAX_TOP_N = 100


class RecommendationsConfig(StrictModel):
    """The recommendations refresh. Off unless ``enabled = true``."""

    enabled: bool = False
    #: When the scheduler refreshes the tables, in ``timezone`` (a quiet hour: the refresh
    #: reads every paid order's items); ``""`` refreshes only by hand
    #: (``nurture recommend refresh``).
    cron: str = "0 4 * * *"
    timezone: str = "Asia/Shanghai"
    #: Recommendations kept per customer, best first.
    top_n: int = Field(default=10, ge=1, le=MAX_TOP_N)
    #: An association "bought X, later bought Y" counts only when at least this many
    #: customers did it (below, lift is noise: one customer makes a lift in the hundreds).
    min_support: int = Field(default=5, ge=1, le=1_000_000_000)
    #: How associations are ranked: ``lift`` (confidence over Y's base rate, so a
    #: best-seller everyone buys anyway scores about 1) or ``confidence`` (the share of
    #: X's buyers who later bought Y, which favours best-sellers).
    score: Literal["lift", "confidence"] = "lift"
    #: An association is a candidate only with a lift above this (1 is chance: an
    #: association barely above it is noise, yet its tier would rank it above every
    #: category and popular candidate; 1.5 did better than 1 on the demo data).
    min_lift: FiniteFloat = Field(default=1.5, ge=0)
    #: Products the customer bought: ``always`` left out, ``never`` left out, or
    #: ``repurchase``: left out until ``repurchase_after`` (or their category's entry in
    #: ``repurchase_categories``) has passed since the last purchase (consumables).
    exclude_bought: Literal["always", "never", "repurchase"] = "always"
    #: With ``exclude_bought = "repurchase"``: a product bought longer ago than this may be
    #: recommended again; unset, only the categories of ``repurchase_categories`` come back.
    repurchase_after: Duration | None = None
    #: With ``exclude_bought = "repurchase"``: the repurchase window by category
    #: (``{ coffee = "14d", diapers = "30d" }``), instead of ``repurchase_after``.
    repurchase_categories: dict[str, Duration] = Field(default_factory=dict)
    #: Products of a category a message showed the customer within this long
    #: (``recommendation_sent``) are left out, so the next message shows something else;
    #: ``"0s"`` turns the rule off.
    recent_category_window: Duration = timedelta(days=7)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return check_cron(value, example="0 4 * * *") if value else value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("repurchase_categories")
    @classmethod
    def _category_names(cls, value: dict[str, timedelta]) -> dict[str, timedelta]:
        for name, window in value.items():
            if not name or len(name) > 128 or name != name.strip() or re.search(r"[\x00-\x1f]", name):
                raise ValueError(f"category {name[:40]!r}: 1-128 characters, no surrounding spaces")
            if not window:
                raise ValueError(f"{name}: a repurchase window of 0 recommends what was just bought; "
                                 "give a duration such as '30d', or set exclude_bought = \"never\"")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RecommendationsConfig:
        repurchase = self.repurchase_after is not None or bool(self.repurchase_categories)
        if self.exclude_bought == "repurchase" and not repurchase:
            raise ValueError('exclude_bought = "repurchase" needs repurchase_after (e.g. "30d") '
                             "or repurchase_categories (e.g. { coffee = \"14d\" })")
        if self.exclude_bought != "repurchase" and repurchase:
            raise ValueError(f"repurchase_after and repurchase_categories are read only with "
                             f'exclude_bought = "repurchase" (it is "{self.exclude_bought}")')
        if self.repurchase_after is not None and not self.repurchase_after:
            raise ValueError("repurchase_after: a window of 0 recommends what was just bought; "
                             'give a duration such as "30d", or set exclude_bought = "never"')
        return self


__all__ = ["MAX_TOP_N", "RecommendationsConfig"]
