"""Survey answers in figures: ``nurture report feedback`` (docs/feedback.md).

For the answers received in ``[since, until)``:

* **NPS** = promoters % - detractors % of the answers with a score (-100 to 100), and
  **CSAT** = the mean score and the share satisfied (answers in the promoter band, 4-5
  by default), with the counts of each band, overall and by campaign, channel, stage,
  segment and period (ISO weeks from Monday, or calendar months, in the report's zone).
  Bands are those stored with each answer, decided when its score came in;
* **responses**: per campaign and channel, the survey messages sent in the range, the
  answers to them, those with a score, and the response rate;
* **detractors answered**: of the detractors scored in the range, how many were
  answered (by staff or by their follow-up), and how many within ``[feedback]
  answer_within`` of their score.

Two ``GROUP BY`` statements and two counts, whatever the number of answers: the answers
are grouped by (question, campaign, channel, stage, segment, period, band, score), and
the dimensions are summed from those groups here. Period limits are worked out in Python
(local midnights as UTC instants) and applied with one ``CASE``, as the loyalty report does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.schema import AppConfig
from campaigns.errors import NurtureError
from campaigns.feedback.followups import mark_followups_answered
from campaigns.feedback.scores import survey_steps
from campaigns.store.models import Customer, Delivery, Feedback
from campaigns.store.sqltime import plus_interval

#: The periods a report can group by.
Period = Literal["week", "month"]
#: Periods in the default range (the one holding ``until`` and those before it).
DEFAULT_PERIODS = 12
#: The most periods one report covers (each is a branch of the bucketing CASE).
MAX_PERIODS = 520
#: The dimensions answers are grouped by, in the order reports show them.
DIMENSIONS = ("campaign", "channel", "stage", "segment", "period")
#: What a missing stage or segment (a customer without a profile yet) is shown as.
NONE_LABEL = "(none)"


@dataclass
class Figures:
    """The answers of one group to one question."""

    question: str
    #: Answers received (with or without a score).
    answers: int = 0
    #: Of those, with a score; the bands add up to it.
    scored: int = 0
    detractors: int = 0
    passives: int = 0
    promoters: int = 0
    score_sum: int = 0

    def add(self, *, band: str | None, score: int | None, count: int) -> None:
        """Count ``count`` answers of this band and score."""
        self.answers += count
        if score is None:
            return
        self.scored += count
        self.score_sum += score * count
        if band == "detractor":
            self.detractors += count
        elif band == "passive":
            self.passives += count
        elif band == "promoter":
            self.promoters += count

    def to_dict(self) -> dict[str, Any]:
        """The counts, and NPS (for nps) or the mean and share satisfied (for csat)."""
        shares = {
            "detractors_share": self.detractors / self.scored if self.scored else None,
            "promoters_share": self.promoters / self.scored if self.scored else None,
        }
        data: dict[str, Any] = {"question": self.question, "answers": self.answers, "scored": self.scored,
                                "detractors": self.detractors, "passives": self.passives,
                                "promoters": self.promoters, **shares}
        if self.question == "nps":
            data["nps"] = (round(100 * (self.promoters - self.detractors) / self.scored, 1)
                           if self.scored else None)
        else:
            data["mean"] = round(self.score_sum / self.scored, 2) if self.scored else None
            data["satisfied_share"] = shares["promoters_share"]
        return data


@dataclass
class FeedbackReport:
    """Everything ``report feedback`` shows."""

    since: datetime
    until: datetime
    by: str
    timezone: str
    answer_within: timedelta
    periods: list[str]
    totals: dict[str, Figures] = field(default_factory=dict)
    #: dimension -> (value, question) -> figures.
    groups: dict[str, dict[tuple[str, str], Figures]] = field(default_factory=dict)
    #: (campaign, channel) -> asked, answers, scored.
    responses: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    detractors: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (times as datetimes; the caller formats them)."""
        return {
            "since": self.since, "until": self.until, "by": self.by, "timezone": self.timezone,
            "answer_within_seconds": int(self.answer_within.total_seconds()), "periods": self.periods,
            "totals": {question: figures.to_dict() for question, figures in sorted(self.totals.items())},
            **{f"by_{dimension}": [{dimension: value, **figures.to_dict()}
                                   for (value, _), figures in sorted(self.groups.get(dimension, {}).items(),
                                                                     key=lambda item: (item[0][1], item[0][0]))]
               for dimension in DIMENSIONS},
            "responses": [{"campaign": campaign, "channel": channel, **counts,
                           "response_rate": counts["answers"] / counts["asked"] if counts["asked"] else None}
                          for (campaign, channel), counts in sorted(self.responses.items())],
            "detractors": self.detractors,
        }


def period_starts(zone: ZoneInfo, by: Period, *, since: datetime, until: datetime) -> list[date]:
    """The first local days of the periods overlapping ``[since, until)``: Mondays for
    weeks, the 1st for months."""
    first = since.astimezone(zone).date()
    last = (until - timedelta(microseconds=1)).astimezone(zone).date()
    start = first - timedelta(days=first.weekday()) if by == "week" else first.replace(day=1)
    starts = [start]
    while True:
        following = _next(starts[-1], by)
        if following > last:
            return starts
        starts.append(following)
        if len(starts) > MAX_PERIODS:
            raise NurtureError(f"a report covers {MAX_PERIODS} periods at most: narrow --since/--until "
                               "or use --by month")


def _next(start: date, by: Period) -> date:
    if by == "week":
        return start + timedelta(days=7)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


def _label(start: date, by: Period) -> str:
    if by == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{start:%Y-%m}"


def default_since(zone: ZoneInfo, by: Period, until: datetime) -> datetime:
    """The start of the :data:`DEFAULT_PERIODS` periods ending with the one holding ``until``."""
    last = (until - timedelta(microseconds=1)).astimezone(zone).date()
    start = last - timedelta(days=last.weekday()) if by == "week" else last.replace(day=1)
    for _ in range(DEFAULT_PERIODS - 1):
        start = (start - timedelta(days=7) if by == "week"
                 else date(start.year - (start.month == 1), (start.month - 2) % 12 + 1, 1))
    return datetime.combine(start, time(0), tzinfo=zone).astimezone(UTC)


def _bucket(column: sa.ColumnElement[datetime], limits: list[tuple[str, datetime]]) -> sa.ColumnElement[str]:
    """The period label of ``column``: ``limits`` are (label, the period's end) in order;
    rows are filtered to the range first, so the last period is the ``else``."""
    if len(limits) == 1:
        return sa.literal(limits[0][0])
    return sa.case(*((column < end, label) for label, end in limits[:-1]), else_=limits[-1][0])


def feedback_report(engine: Engine, config: AppConfig, *, until: datetime, since: datetime | None = None,
                    by: Period = "week", zone: ZoneInfo | None = None) -> FeedbackReport:
    """The survey answers received in ``[since, until)`` (by default the
    :data:`DEFAULT_PERIODS` weeks or months up to ``until``), periods in ``zone``
    (``[profiles] timezone`` by default)."""
    zone = zone or ZoneInfo(config.profiles.timezone)
    since = since or default_since(zone, by, until)
    if since >= until:
        raise NurtureError(f"--since {since.isoformat()} is not before --until {until.isoformat()}")
    starts = period_starts(zone, by, since=since, until=until)
    ends = [*starts[1:], _next(starts[-1], by)]
    limits = [(_label(start, by), datetime.combine(end, time(0), tzinfo=zone).astimezone(UTC))
              for start, end in zip(starts, ends, strict=True)]
    within = config.feedback.answer_within
    report = FeedbackReport(since=since, until=until, by=by, timezone=zone.key, answer_within=within,
                            periods=[label for label, _ in limits])
    # Follow-ups sent since the last tick answer their detractors before they are counted.
    mark_followups_answered(engine, config)
    table = Feedback.__table__
    in_range = sa.and_(table.c.received_at >= since, table.c.received_at < until)
    period = _bucket(table.c.received_at, limits).label("period")
    grouped = (
        sa.select(table.c.question, table.c.campaign, table.c.channel, table.c.stage, table.c.segment, period,
                  table.c.band, table.c.score, sa.func.count().label("answers"))
        .where(in_range)
        .group_by(table.c.question, table.c.campaign, table.c.channel, table.c.stage, table.c.segment, period,
                  table.c.band, table.c.score)
    )
    answered = table.c.answered_at.is_not(None)
    in_time = sa.and_(answered, table.c.answered_at <= plus_interval(
        engine.dialect.name, table.c.scored_at, within, table.c.answered_at.type))
    detractors = (
        sa.select(sa.func.count(), sa.func.count().filter(answered), sa.func.count().filter(in_time))
        .where(table.c.band == "detractor", table.c.scored_at >= since, table.c.scored_at < until)
    )
    steps = survey_steps(config)
    with engine.connect() as conn:
        rows = list(conn.execute(grouped))
        total, answered_count, in_time_count = conn.execute(detractors).one()
        asked = list(conn.execute(
            sa.select(Delivery.campaign, Delivery.channel, sa.func.count())
            .where(sa.or_(*[sa.and_(Delivery.campaign == c, Delivery.step == s) for c, s in sorted(steps)]),
                   Delivery.sent_at >= since, Delivery.sent_at < until, sa.not_(Delivery.is_test))
            .group_by(Delivery.campaign, Delivery.channel)
        )) if steps else []
    _fill(report, rows)
    for campaign, channel, count in asked:
        report.responses.setdefault((campaign, channel), {"asked": 0, "answers": 0, "scored": 0})["asked"] = count
    report.detractors = {
        "count": int(total), "answered": int(answered_count), "answered_in_time": int(in_time_count),
        "share_answered_in_time": int(in_time_count) / int(total) if total else None,
    }
    return report


def _fill(report: FeedbackReport, rows: Iterable[Any]) -> None:
    """Sum the grouped answers into the totals, each dimension and the response counts."""
    groups: dict[str, dict[tuple[str, str], Figures]] = {dimension: {} for dimension in DIMENSIONS}
    responses: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"asked": 0, "answers": 0, "scored": 0})
    for row in rows:
        count = int(row.answers)
        report.totals.setdefault(row.question, Figures(row.question)).add(band=row.band, score=row.score,
                                                                           count=count)
        values = {"campaign": row.campaign, "channel": row.channel, "stage": row.stage or NONE_LABEL,
                  "segment": row.segment or NONE_LABEL, "period": row.period}
        for dimension, value in values.items():
            groups[dimension].setdefault((value, row.question), Figures(row.question)).add(
                band=row.band, score=row.score, count=count)
        counts = responses[(row.campaign, row.channel)]
        counts["answers"] += count
        counts["scored"] += count if row.score is not None else 0
    report.groups = groups
    report.responses = dict(responses)


@dataclass(frozen=True)
class AnswerRow:
    """One answer, as ``nurture feedback list`` shows it."""

    id: int
    customer: str
    campaign: str
    channel: str
    question: str
    score: int | None
    band: str | None
    text: str | None
    stage: str | None
    segment: str | None
    received_at: datetime
    scored_at: datetime | None
    answered_at: datetime | None
    answered_by: str | None
    #: When an unanswered detractor is due: ``scored_at + answer_within``.
    answer_due: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (times stay datetimes)."""
        return dict(self.__dict__)


def list_answers(engine: Engine, config: AppConfig, *, band: str | None = None, unanswered: bool = False,
                 campaign: str | None = None, limit: int = 50) -> tuple[int, list[AnswerRow]]:
    """The answers (newest first, at most ``limit``) of ``band``, only those not answered
    yet with ``unanswered``; returns (how many match, the rows)."""
    mark_followups_answered(engine, config)
    table = Feedback.__table__
    conditions = []
    if band is not None:
        conditions.append(table.c.band == band)
    if unanswered:
        conditions.append(table.c.answered_at.is_(None))
    if campaign is not None:
        conditions.append(table.c.campaign == campaign)
    where = sa.and_(sa.true(), *conditions)
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one()
        rows = conn.execute(
            sa.select(table, Customer.external_id).join(Customer, Customer.id == table.c.customer_id)
            .where(where).order_by(table.c.received_at.desc(), table.c.id.desc()).limit(limit)
        ).all()
    within = config.feedback.answer_within
    return int(total), [AnswerRow(
        id=row.id, customer=row.external_id, campaign=row.campaign, channel=row.channel, question=row.question,
        score=row.score, band=row.band, text=row.text, stage=row.stage, segment=row.segment,
        received_at=row.received_at, scored_at=row.scored_at, answered_at=row.answered_at,
        answered_by=row.answered_by,
        answer_due=row.scored_at + within if row.band == "detractor" and row.scored_at is not None else None,
    ) for row in rows]
