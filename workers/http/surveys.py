"""Survey score links: ``GET /s/{token}`` records a score, ``POST /s/{token}`` a comment.

The token (:func:`campaigns.sending.tokens.make_survey_token`) seals a message's send key
and one score with the ``[api]`` link secret, so it is the whole authorisation: no
cookie, no login. ``GET`` records the score as the message's answer (the first answer is
the one kept: :mod:`campaigns.feedback.scores`) and shows a short thank-you page with an
optional comment box; ``POST`` keeps the comment with the answer. A token that does not
verify, or names a message that asks no question, is the "link not valid" page (404).
The pages are the autoescaped templates of ``preference_templates/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from campaigns.config.feedback import SCALES
from campaigns.config.schema import AppConfig
from campaigns.config.secretvalues import read_secret
from campaigns.feedback.scores import add_comment, record_click
from campaigns.sending.tokens import verify_survey_token
from workers.http.errors import guarded, json_error, read_limited
from workers.http.forms import parse_form
from workers.http.preferences import Endpoint, PreferencePages

logger = logging.getLogger("nurture.http.surveys")

#: Largest comment form accepted, in bytes.
MAX_BODY_BYTES = 64 * 1024
#: Longest comment kept, in characters.
MAX_COMMENT_CHARS = 2000
_TITLE = "Thank you for your answer"


def _verified(config: AppConfig, token: str) -> tuple[str, int] | None:
    secret = read_secret(config.api.link_secret_env)
    if secret is None:
        logger.warning("survey link refused: %s is not set, no survey token can be verified",
                       config.api.link_secret_env)
        return None
    return verify_survey_token(token, secret)


def survey_answer_endpoint(*, config: AppConfig, engine: Engine, clock: Callable[[], datetime],
                           pages: PreferencePages) -> Endpoint:
    """``GET /s/{token}``: record the link's score; the thank-you page."""

    async def survey_answer(request: Request) -> Response:
        """Record the score of a one-click survey link."""
        verified = _verified(config, request.path_params["token"])
        if verified is None:
            return pages.not_found()
        send_key, score = verified
        answer = await run_in_threadpool(record_click, engine, config, send_key=send_key, score=score, now=clock())
        if answer is None:
            return pages.not_found()
        return pages.render("survey.html", title=_TITLE, recorded=answer.scored, score=answer.score,
                            high=SCALES[answer.question][1], comment_saved=False)

    return guarded(survey_answer, pages.failure, logger=logger, body_limit=MAX_BODY_BYTES)


def survey_comment_endpoint(*, config: AppConfig, engine: Engine, clock: Callable[[], datetime],
                            pages: PreferencePages) -> Endpoint:
    """``POST /s/{token}``: keep the thank-you page's comment with the answer."""

    async def survey_comment(request: Request) -> Response:
        """Keep a comment with the message's answer."""
        body = await read_limited(request, MAX_BODY_BYTES)
        verified = _verified(config, request.path_params["token"])
        if verified is None:
            return pages.not_found()
        fields = parse_form(request.headers.get("content-type"), body)
        if fields is None or "comment" not in fields:
            return json_error(400, "expected the form field comment")
        comment = "\n".join(fields["comment"]).strip()[:MAX_COMMENT_CHARS]
        send_key, score = verified
        saved = bool(comment) and await run_in_threadpool(add_comment, engine, config, send_key=send_key,
                                                          text=comment, now=clock())
        if comment and not saved:
            return pages.not_found()
        return pages.render("survey.html", title=_TITLE, recorded=True, score=score, high=None,
                            comment_saved=saved)

    return guarded(survey_comment, pages.failure, logger=logger, body_limit=MAX_BODY_BYTES)
