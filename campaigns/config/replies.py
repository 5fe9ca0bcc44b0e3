"""``[replies]``: how inbound replies that are not opt-outs are classified (question,
complaint, positive, other) and where complaints alert staff.

Rules are tried in order; the first whose keyword occurs in the reply gives its label,
none gives ``other``. Text and keywords are compared NFKC-normalised and case-folded, so
full-width ``？``/``ＲＥＦＵＮＤ`` match ``?``/``refund``. A keyword made of Latin letters,
digits and spaces matches whole words (``how`` is not in ``show``); ending it with ``*``
matches any word it begins (``refund*``: refunds, refunded). Other keywords (Chinese,
punctuation) match anywhere in the text::

    [replies]
    alert_channel = "care"        # a [staff_channels.NAME]: complaints alert there

    [[replies.rules]]
    name = "late_delivery"
    label = "complaint"
    keywords = ["还没到", "没收到", "where is my order"]

Giving ``rules`` replaces the defaults (:data:`DEFAULT_RULES`) as a whole, so the order
is what the file says. See docs/feedback.md, "Reply classification".
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator

from campaigns.config.base import Duration, StrictModel
from campaigns.config.staff import staff_channel_references

#: What a reply can be classified as.
ReplyLabelName = Literal["question", "complaint", "positive", "other"]
#: The label of a reply no rule matched.
FALLBACK_LABEL = "other"


def normalise_text(text: str) -> str:
    """``text`` as rules compare it: NFKC (full-width to half-width, compatibility forms
    folded) and case-folded, whitespace runs made one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


class ReplyRule(StrictModel):
    """One classification rule: replies containing any of ``keywords`` get ``label``."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    label: ReplyLabelName
    keywords: list[str] = Field(min_length=1, max_length=1000)

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: list[str]) -> list[str]:
        for index, keyword in enumerate(value):
            normalised = normalise_text(keyword).removesuffix("*").strip()
            if not normalised:
                raise ValueError(f"keyword {index} is empty (after trimming spaces and a trailing '*')")
            if len(keyword) > 100:
                raise ValueError(f"keyword {index} is longer than 100 characters")
        return value


#: The default rules: complaints first (a complaint often asks something: "怎么还没退款？"),
#: then questions, then praise. "不满意" is a complaint before "满意" is praise.
DEFAULT_RULES: tuple[ReplyRule, ...] = (
    ReplyRule(name="complaint", label="complaint", keywords=[
        "投诉", "差评", "退款", "退货", "太差", "很差", "不满意", "失望", "垃圾", "骗", "坑人", "假货", "质量问题",
        "complain*", "refund*", "terrible", "awful", "broken", "scam", "fraud", "disappointed", "worst",
        "not happy",
    ]),
    ReplyRule(name="question", label="question", keywords=[
        "吗", "?", "怎么", "如何", "多少", "什么时候", "哪里", "能不能", "可以吗", "请问",
        "how", "when", "what", "where", "why", "can i", "could you", "is there",
    ]),
    ReplyRule(name="positive", label="positive", keywords=[
        "谢谢", "感谢", "好评", "满意", "喜欢", "很好", "不错", "赞", "👍",
        "thanks", "thank you", "great", "love", "loved", "awesome", "excellent", "perfect",
    ]),
)


class RepliesConfig(StrictModel):
    """``[replies]``: the classification rules and the complaints' staff channel."""

    #: Classify replies at all (the scheduler's step; opt-outs are never classified).
    enabled: bool = True
    #: Ordered rules; the first match wins. Replaces :data:`DEFAULT_RULES` when given.
    rules: list[ReplyRule] = Field(default_factory=lambda: list(DEFAULT_RULES), min_length=1)
    #: The ``[staff_channels.NAME]`` complaints alert; None: complaints are only labelled.
    alert_channel: str | None = None
    #: Complaints older than this when classified are labelled but not alerted (the first
    #: run over an old database must not page staff about last year's replies).
    alert_max_age: Duration = timedelta(days=2)


def replies_issues(raw: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Cross-key problems of the raw ``[replies]`` table: duplicate rule names and an
    ``alert_channel`` that names no staff channel (run on the raw data so they are
    reported with every other problem, located at the key)."""
    replies = raw.get("replies")
    if not isinstance(replies, dict):
        return
    rules = replies.get("rules") if isinstance(replies.get("rules"), list) else []
    seen: dict[str, int] = {}
    for index, rule in enumerate(rules):
        name = rule.get("name") if isinstance(rule, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            yield ("replies", "rules", index, "name"), (
                f"duplicate rule name {name!r} (first defined as replies.rules[{seen[name]}])")
        else:
            seen[name] = index
    yield from staff_channel_references(raw, [(("replies", "alert_channel"), replies.get("alert_channel"))])


__all__ = ["DEFAULT_RULES", "FALLBACK_LABEL", "RepliesConfig", "ReplyLabelName", "ReplyRule", "normalise_text",
           "replies_issues"]
