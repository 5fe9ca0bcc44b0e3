"""``[feedback]``: how survey scores are banded (NPS 0-10, CSAT 1-5), how soon staff must
answer a detractor, and the staff channel detractor alerts go to. See docs/feedback.md.

A score is a **detractor** up to ``detractor_max``, a **passive** up to ``passive_max``
and a **promoter** above it. The defaults are the usual ones: NPS 0-6 detractor, 7-8
passive, 9-10 promoter; CSAT 1-2 detractor (dissatisfied), 3 passive (neutral), 4-5
promoter (satisfied).

A campaign step asks a question with ``survey = "nps"`` or ``survey = "csat"`` on its
``[[campaigns.steps]]``; a follow-up campaign for detractors has
``trigger = { feedback = "detractor" }`` (:mod:`campaigns.config.triggers`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from campaigns.config.base import Duration, StrictModel

#: The questions a survey step can ask.
Question = Literal["nps", "csat"]
#: The scale of each question: (lowest, highest) score.
SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5)}
#: The bands a score falls in, lowest first.
BANDS = ("detractor", "passive", "promoter")


class ScaleBands(StrictModel):
    """Where a question's detractors end and its promoters begin."""

    #: Scores up to this one are detractors.
    detractor_max: int
    #: Scores above ``detractor_max`` and up to this one are passives; above it, promoters.
    passive_max: int

    def band(self, score: int) -> str:
        """``detractor``, ``passive`` or ``promoter`` for ``score``."""
        if score <= self.detractor_max:
            return "detractor"
        return "passive" if score <= self.passive_max else "promoter"


def _check_scale(bands: ScaleBands, question: str) -> ScaleBands:
    low, high = SCALES[question]
    if not low <= bands.detractor_max < high:
        raise ValueError(f"detractor_max must be from {low} to {high - 1} for {question} (scores {low}-{high})")
    if not bands.detractor_max <= bands.passive_max < high:
        raise ValueError(f"passive_max must be from detractor_max ({bands.detractor_max}) to {high - 1} for "
                         f"{question}, so that {high} is a promoter")
    return bands


class NpsBands(ScaleBands):
    """NPS (0-10): 0-6 detractors, 7-8 passives, 9-10 promoters by default."""

    detractor_max: int = 6
    passive_max: int = 8

    @model_validator(mode="after")
    def _on_scale(self) -> NpsBands:
        _check_scale(self, "nps")
        return self


class CsatBands(ScaleBands):
    """CSAT (1-5): 1-2 detractors (dissatisfied), 3 passive, 4-5 promoters (satisfied)."""

    detractor_max: int = 2
    passive_max: int = 3

    @model_validator(mode="after")
    def _on_scale(self) -> CsatBands:
        _check_scale(self, "csat")
        return self


class FeedbackConfig(StrictModel):
    """Survey bands, the time staff have to answer a detractor, and where alerts go."""

    nps: NpsBands = NpsBands()
    csat: CsatBands = CsatBands()
    #: A detractor is answered in time when staff mark it (``nurture feedback answer``) or
    #: its follow-up campaign's first message is sent within this long of the score.
    answer_within: Duration = timedelta(hours=24)
    #: The ``[staff_channels.<name>]`` detractor alerts go to; none: no alert is queued.
    alert_channel: str | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("answer_within")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("answer_within is how long staff have to answer a detractor, e.g. \"24h\": "
                             "it must be longer than zero")
        return value

    def bands(self, question: str) -> ScaleBands:
        """The bands of ``question`` (nps or csat)."""
        return self.nps if question == "nps" else self.csat

    def band(self, question: str, score: int) -> str:
        """The band of ``score`` on ``question``."""
        return self.bands(question).band(score)


def feedback_issues(raw: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Cross-key checks of ``[feedback]`` and the survey campaigns on the raw TOML (so they
    are reported even when other keys fail): the alert channel names a
    ``[staff_channels.<name>]``, and a ``feedback`` trigger has a survey step to follow."""
    campaigns = raw.get("campaigns") if isinstance(raw.get("campaigns"), list) else []
    asked = any(isinstance(step, dict) and step.get("survey") is not None
                for campaign in campaigns if isinstance(campaign, dict)
                for step in (campaign.get("steps") if isinstance(campaign.get("steps"), list) else []))
    for index, campaign in enumerate(campaigns):
        trigger = campaign.get("trigger") if isinstance(campaign, dict) else None
        if isinstance(trigger, dict) and "feedback" in trigger and not asked:
            yield (("campaigns", index, "trigger", "feedback"),
                   "no campaign asks a survey question: add survey = \"nps\" or \"csat\" to a "
                   "[[campaigns.steps]] of the campaign whose answers this follows up")
    feedback = raw.get("feedback")
    if not isinstance(feedback, dict):
        return
    channel = feedback.get("alert_channel")
    if not isinstance(channel, str) or not channel:
        return
    staff = raw.get("staff_channels")
    staff = staff if isinstance(staff, dict) else {}
    if channel not in staff:
        known = ", ".join(sorted(staff)) or "none defined"
        yield (("feedback", "alert_channel"),
               f"unknown staff channel {channel!r} (defined: {known}); add a [staff_channels.{channel}] section")
