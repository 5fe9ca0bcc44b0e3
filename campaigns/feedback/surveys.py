"""Survey steps: what a survey message's template sees (``survey``), and reading a score
out of a customer's reply; pure functions, no I/O.

A step with ``survey = "nps"`` (0-10) or ``survey = "csat"`` (1-5) asks a question. Over
email the template shows one signed link per score (``survey.links[9]``, or a loop over
``survey.scores``), each ``{public_url}/s/{token}``, the token sealing the message's send
key and the score (:func:`campaigns.sending.tokens.make_survey_token`): a link can be
neither moved to another message nor edited to another score. Over SMS and WeChat the
template asks for a reply (``survey.reply_hint``), and :func:`parse_score` reads it.

Accepted reply forms (docs/feedback.md), after Unicode NFKC folding (full-width ``９``
and ``／`` become ``9`` and ``/``), case and surrounding space ignored:

* a bare number: ``9``, ``9.``, ``９``, `` 8 ``;
* a number and a unit: ``9分``, ``9 points``, ``9 pts``;
* a number out of the scale's top: ``10/10``, ``4/5`` (only the question's own top);
* a label: ``score: 7``, ``NPS 9``, ``CSAT=4``, ``评分：8``, ``打分 8``;
* a Chinese numeral alone, with or without 分: ``九``, ``九分``, ``十分``, ``零分``
  (``十分`` alone is ten points; in a sentence, ``十分满意`` is "very satisfied", and
  is text, not a score);
* any of these followed by a comment after a space or punctuation: ``9，送货很快``,
  ``3 - late again``, as long as the comment holds no other digit.

Anything else is free text without a score: a number off the scale (``11`` for NPS,
``0`` for CSAT), a fraction of another scale (``8/5``), a decimal (``8.5``), a range or
two numbers (``7-8``, ``7 or 8``, ``9 but 3 days late``), or words alone.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined

from campaigns.config.feedback import SCALES
from campaigns.config.schema import AppConfig
from campaigns.sending.tokens import make_survey_token

#: The path of the score links on ``[api] public_url``.
SURVEY_PATH = "/s/"
#: The Chinese numerals a whole reply may be (一 to 十, and 零).
_CHINESE = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
            "九": 9, "十": 10}
_NUMBER = r"(?P<n>\d{1,2})"
_UNIT = r"(?:\s*(?:分|points?|pts?))?"
_LABEL = r"(?:score|nps|csat|rating|评分|打分|分数)\s*[:=]?\s*"
#: A score form at the start of the reply; what follows (if anything) is the comment.
_FORMS = (
    re.compile(rf"{_LABEL}{_NUMBER}{_UNIT}(?:\s*/\s*(?P<top>\d{{1,2}}))?"),
    re.compile(rf"{_NUMBER}\s*/\s*(?P<top>\d{{1,2}})"),
    re.compile(rf"{_NUMBER}{_UNIT}"),
)
#: What may separate a leading score from a comment.
_SEPARATOR = re.compile(r"[\s,.;:!?~\-–—()\[\]、，。；：！？（）]+")


@dataclass(frozen=True)
class ParsedReply:
    """A reply read as a survey answer: its score (None when it holds none, or an
    ambiguous or off-scale one) and its free text (None when the reply was the score alone)."""

    score: int | None
    text: str | None


def parse_score(text: str, question: str) -> ParsedReply:
    """Read ``text`` as an answer to ``question`` (``nps`` 0-10 or ``csat`` 1-5).

    >>> parse_score("９分", "nps")
    ParsedReply(score=9, text=None)
    >>> parse_score("10/10 great", "nps")
    ParsedReply(score=10, text='great')
    >>> parse_score("7 or 8", "nps")
    ParsedReply(score=None, text='7 or 8')
    """
    low, high = SCALES[question]
    original = text.strip()
    folded = unicodedata.normalize("NFKC", text).strip().lower()
    if not folded:
        return ParsedReply(None, None)
    bare = folded.rstrip(".。!！")
    chinese = bare[:-1] if bare.endswith("分") and len(bare) > 1 else bare
    if chinese in _CHINESE:
        score = _CHINESE[chinese]
        return ParsedReply(score, None) if low <= score <= high else ParsedReply(None, original)
    for form in _FORMS:
        match = form.match(folded)
        if match is None:
            continue
        rest = folded[match.end():]
        if rest and (rest[0].isdigit() or not _SEPARATOR.match(rest)):
            continue  # "8.5", "7-8" read on; "9x" is no form
        score = int(match.group("n"))
        top = match.groupdict().get("top")
        if (top is not None and int(top) != high) or not low <= score <= high or re.search(r"\d", rest):
            return ParsedReply(None, original)
        # The comment as written (capitals, full-width), when folding kept every character
        # in place (it nearly always does), else as folded.
        written = original[match.end():] if len(folded) == len(original) else rest
        lead = _SEPARATOR.match(written)
        comment = written[lead.end():] if lead else written
        return ParsedReply(score, comment.strip() or None)
    return ParsedReply(None, original)


def reply_hint(question: str, *, language: str = "en") -> str:
    """How a text message asks for the answer: the scale and what to reply."""
    low, high = SCALES[question]
    if language == "zh":
        return f"请回复 {low}-{high} 的数字打分（{high} 为最满意）"
    if question == "nps":
        return f"Reply with a number from {low} (not likely) to {high} (very likely)"
    return f"Reply with a number from {low} (very unsatisfied) to {high} (very satisfied)"


def survey_context(question: str, *, send_key: str, public_url: str | None, secret: str | None) -> dict[str, Any]:
    """What the template of a survey step sees as ``survey``: ``question`` (nps or csat),
    ``scores`` (the scale, lowest first), ``low`` and ``high``, ``links`` (score -> signed
    one-click URL; every link an empty string without ``[api] public_url`` or the link
    secret, as the unsubscribe links are), ``reply_hint`` and ``reply_hint_zh``."""
    low, high = SCALES[question]
    scores = list(range(low, high + 1))
    base = (public_url or "").rstrip("/")
    links = {score: (f"{base}{SURVEY_PATH}{make_survey_token(send_key, score, secret)}"
                     if base and secret and send_key else "") for score in scores}
    return {
        "question": question, "scores": scores, "low": low, "high": high, "links": links,
        "reply_hint": reply_hint(question), "reply_hint_zh": reply_hint(question, language="zh"),
    }


def step_survey(config: AppConfig, campaign: str, step: int, *, send_key: str, public_url: str | None,
                secret: str | None) -> dict[str, Any] | None:
    """:func:`survey_context` of step ``step`` of ``campaign`` for the message ``send_key``,
    or None when that step asks no question (or the campaign is gone from config)."""
    campaigns = [c for c in config.campaigns if c.name == campaign]
    if not campaigns or not 0 <= step < len(campaigns[0].steps) or campaigns[0].steps[step].survey is None:
        return None
    question = campaigns[0].steps[step].survey
    assert question is not None
    return survey_context(question, send_key=send_key, public_url=public_url, secret=secret)


#: ``survey`` in a step that asks no question: undefined, with the reason in the error.
SURVEY_OFF = StrictUndefined(hint="'survey' is undefined: this step asks no survey question "
                                  "(add survey = \"nps\" or \"csat\" to its [[campaigns.steps]])", name="survey")
