"""Reading a score out of a reply (every accepted form, and what stays text), the
``survey`` template variable, and the survey token: pure, no database."""

from __future__ import annotations

import pytest

from campaigns.feedback.surveys import ParsedReply, parse_score, survey_context
from campaigns.sending.tokens import (
    make_open_token,
    make_survey_token,
    make_unsubscribe_token,
    verify_click_token,
    verify_open_token,
    verify_survey_token,
    verify_unsubscribe_token,
)

SECRET = "survey-secret-for-tests"


@pytest.mark.parametrize(("text", "score", "comment"), [
    ("9", 9, None), ("９", 9, None), ("9分", 9, None), ("９分", 9, None), ("9 分", 9, None), ("10/10", 10, None),
    ("１０／１０", 10, None), ("10 / 10", 10, None), ("score: 7", 7, None), ("Score：７", 7, None),
    ("NPS 9", 9, None), ("评分：8", 8, None), ("打分 8", 8, None), (" 8 ", 8, None), ("9.", 9, None),
    ("10分！", 10, None), ("9 points", 9, None), ("0", 0, None), ("十分", 10, None), ("十", 10, None),
    ("九分", 9, None), ("零分", 0, None), ("9，送货很快", 9, "送货很快"), ("3 - late again", 3, "late again"),
    ("9 Great!", 9, "Great!"), ("10/10 would buy again", 10, "would buy again"),
])
def test_every_accepted_nps_form(text: str, score: int, comment: str | None) -> None:
    assert parse_score(text, "nps") == ParsedReply(score, comment)


@pytest.mark.parametrize("text", [
    "11", "-1", "7 or 8", "7-8", "8.5", "9 but 3 days late", "8/5", "十分满意", "great service", "9x", "十一",
    "nine", "100",
])
def test_off_scale_and_ambiguous_replies_stay_text(text: str) -> None:
    assert parse_score(text, "nps") == ParsedReply(None, text)


@pytest.mark.parametrize(("text", "expected"), [
    ("4/5", ParsedReply(4, None)), ("5分", ParsedReply(5, None)), ("CSAT=4", ParsedReply(4, None)),
    ("一", ParsedReply(1, None)), ("0", ParsedReply(None, "0")), ("7", ParsedReply(None, "7")),
    ("9/10", ParsedReply(None, "9/10")), ("十分", ParsedReply(None, "十分")),
])
def test_csat_takes_its_own_scale_only(text: str, expected: ParsedReply) -> None:
    assert parse_score(text, "csat") == expected


def test_an_empty_reply_is_nothing() -> None:
    assert parse_score("   ", "nps") == ParsedReply(None, None)


def test_the_template_variable() -> None:
    survey = survey_context("csat", send_key="c:0:7:once", public_url="https://t.example/", secret=SECRET)
    assert (survey["question"], survey["scores"], survey["low"], survey["high"]) == ("csat", [1, 2, 3, 4, 5], 1, 5)
    assert sorted(survey["links"]) == [1, 2, 3, 4, 5]
    for score, url in survey["links"].items():
        assert url.startswith("https://t.example/s/")
        assert verify_survey_token(url.rsplit("/", 1)[1], SECRET) == ("c:0:7:once", score)
    assert "1 (very unsatisfied) to 5 (very satisfied)" in survey["reply_hint"]
    # without a public URL or a secret every link is empty, as the unsubscribe links are
    assert set(survey_context("nps", send_key="k", public_url=None, secret=SECRET)["links"].values()) == {""}
    assert set(survey_context("nps", send_key="k", public_url="https://t", secret=None)["links"].values()) == {""}


def test_a_survey_token_is_bound_to_its_message_score_and_kind() -> None:
    token = make_survey_token("nps:1:3:once", 9, SECRET)
    assert verify_survey_token(token, SECRET) == ("nps:1:3:once", 9)
    assert make_survey_token("nps:1:3:once", 9, SECRET) == token  # deterministic: retried sends agree
    assert make_survey_token("nps:1:3:once", 8, SECRET) != token
    assert verify_survey_token(token, "another-secret") is None
    # no other kind of token opens as a survey token, nor a survey token as another kind
    for other in (make_open_token("nps:1:3:once", SECRET), make_unsubscribe_token("nps:1:3:once", SECRET)):
        assert verify_survey_token(other, SECRET) is None
    assert verify_click_token(token, SECRET) is None
    assert verify_open_token(token, SECRET) is None
    assert verify_unsubscribe_token(token, SECRET) is None
    for bad in ("", "garbage", "A" * 5000, token[:-2]):
        assert verify_survey_token(bad, SECRET) is None
    with pytest.raises(ValueError):
        make_survey_token("k", 11, SECRET)
    with pytest.raises(ValueError):
        make_survey_token("k", 5, "")
