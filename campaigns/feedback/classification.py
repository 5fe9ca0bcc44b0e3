"""Reply classification: every inbound reply that is not an opt-out gets one label
(question, complaint, positive, other) by the ``[replies]`` keyword rules, and a
complaint queues a staff alert.

:func:`classify_replies` runs at every scheduler tick over the ``replied`` responses
recorded since (whatever recorded them: a provider's push, ``nurture reply``, an email
reply), so the receivers' hot path (P7) does no extra work. Each reply is labelled once:
``reply_label`` is keyed by the response (``INSERT ... ON CONFLICT DO NOTHING``), and only
a label this call wrote queues its complaint's alert (``reply:<response id>``, itself
UNIQUE), so two schedulers overlapping classify and alert once.

An opt-out reply (``TD``, ``退订``, ``STOP`` ...) is never classified: recording it already
suppressed the address (:mod:`campaigns.responses.recording`), and the same test,
:func:`~campaigns.responses.optout.is_opt_out`, tells it here. A reply to a test send is
the marketer's, not a customer's, and is skipped too. A survey answer ("9") is labelled
like any reply (usually ``other``); its score is read by the survey code, which the label
does not affect.

Which replies are new: those after the highest labelled response id, less
:data:`LOOKBACK_IDS` (a reply committed late with a lower id than one already labelled is
still found), that have no label yet.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.config.replies import FALLBACK_LABEL, RepliesConfig, ReplyRule, normalise_text
from campaigns.feedback.alerts import queue_staff_alert
from campaigns.responses.optout import is_opt_out
from campaigns.store.db import dialect_insert
from campaigns.store.models import Customer, Delivery, ReplyLabel, Response

#: Replies read per transaction.
BATCH_SIZE = 500
#: How far below the highest labelled response id unlabelled replies are looked for.
LOOKBACK_IDS = 10_000
#: Characters of a reply an alert quotes.
ALERT_TEXT_CHARS = 500

_LATIN_WORD = re.compile(r"[a-z0-9 ]+")


def _keyword_pattern(keyword: str) -> str:
    text = normalise_text(keyword)
    prefix = text.endswith("*")
    text = text.rstrip("*").strip()
    if not _LATIN_WORD.fullmatch(text):
        return re.escape(text)  # Chinese, punctuation, emoji: anywhere in the text
    # Whole Latin words: "how" is not in "show"; a CJK neighbour is a boundary ("退款refund").
    return r"(?<![a-z0-9])" + re.escape(text) + ("" if prefix else r"(?![a-z0-9])")


class Classifier:
    """The ``[replies]`` rules compiled once: :meth:`label` gives a text's label and rule."""

    def __init__(self, *, rules: Sequence[ReplyRule]) -> None:
        self._rules = [(rule.name, rule.label, re.compile("|".join(_keyword_pattern(k) for k in rule.keywords)))
                       for rule in rules]

    def label(self, text: str | None) -> tuple[str, str | None]:
        """``(label, rule name)`` of the first rule matching ``text``; ``("other", None)``
        when none does (or there is no text)."""
        normalised = normalise_text(text or "")
        if normalised:
            for name, label, pattern in self._rules:
                if pattern.search(normalised):
                    return label, name
        return FALLBACK_LABEL, None


@dataclass
class ClassifyReport:
    """What one :func:`classify_replies` call did."""

    #: New labels by label.
    labelled: dict[str, int] = field(default_factory=dict)
    #: Opt-out replies passed over (never labelled).
    opt_outs: int = 0
    #: Complaint alerts queued.
    alerts: int = 0

    @property
    def total(self) -> int:
        """Replies labelled by this call."""
        return sum(self.labelled.values())


def classify_replies(engine: Engine, replies: RepliesConfig, *, now: datetime,
                     batch_size: int = BATCH_SIZE) -> ClassifyReport:
    """Label every reply not labelled yet (not opt-outs, not test sends') and queue an
    alert for each new complaint no older than ``replies.alert_max_age``."""
    report = ClassifyReport()
    if not replies.enabled:
        return report
    classifier = Classifier(rules=replies.rules)
    with engine.connect() as conn:
        highest = conn.execute(sa.select(sa.func.max(ReplyLabel.response_id))).scalar()
    after = max(0, int(highest or 0) - LOOKBACK_IDS)
    while True:
        with engine.begin() as conn:
            rows = _unlabelled(conn, after, batch_size)
            if not rows:
                break
            after = rows[-1].id
            _label_batch(conn, rows, classifier, replies, now=now, report=report)
        if len(rows) < batch_size:
            break
    return report


def _unlabelled(conn: Connection, after: int, limit: int) -> list[Any]:
    r, d, c, label = Response.__table__, Delivery.__table__, Customer.__table__, ReplyLabel.__table__
    return list(conn.execute(
        sa.select(r.c.id, r.c.customer_id, r.c.provider, r.c.occurred_at, r.c.payload, d.c.campaign, d.c.step,
                  d.c.channel, c.c.external_id, c.c.name)
        .select_from(r.outerjoin(d, d.c.id == r.c.delivery_id).outerjoin(c, c.c.id == r.c.customer_id))
        .where(r.c.id > after, r.c.kind == "replied",
               sa.or_(d.c.id.is_(None), d.c.is_test.is_(False)),
               ~sa.exists().where(label.c.response_id == r.c.id))
        .order_by(r.c.id)
        .limit(limit)
    ))


def _label_batch(conn: Connection, rows: list[Any], classifier: Classifier, replies: RepliesConfig, *,
                 now: datetime, report: ClassifyReport) -> None:
    labels: list[dict[str, Any]] = []
    by_id: dict[int, Any] = {}
    for row in rows:
        text = (row.payload or {}).get("text")
        if isinstance(text, str) and is_opt_out(text):
            report.opt_outs += 1
            continue
        label, rule = classifier.label(text if isinstance(text, str) else None)
        labels.append({"response_id": row.id, "label": label, "rule": rule, "classified_at": now})
        by_id[row.id] = row
    if not labels:
        return
    table = ReplyLabel.__table__
    # Only the labels this statement wrote: a concurrent classifier's are its to alert.
    new = conn.execute(
        dialect_insert(conn, table).on_conflict_do_nothing(index_elements=["response_id"])
        .returning(table.c.response_id, table.c.label, table.c.rule),
        labels,
    ).all()
    oldest = now - replies.alert_max_age
    for response_id, label, rule in sorted(new):
        report.labelled[label] = report.labelled.get(label, 0) + 1
        row = by_id[response_id]
        if label != "complaint" or replies.alert_channel is None or row.occurred_at < oldest:
            continue
        if queue_staff_alert(conn, channel=replies.alert_channel, key=f"reply:{response_id}", kind="complaint",
                             customer_id=row.customer_id, payload=complaint_payload(row, rule), now=now):
            report.alerts += 1


def complaint_payload(row: Any, rule: str | None) -> dict[str, Any]:
    """What a complaint's alert says: who, what they wrote (masked when recorded), when,
    and the campaign, step and channel of the message it answers (None when unknown)."""
    text = (row.payload or {}).get("text")
    return {
        "response_id": row.id,
        "customer": {"id": row.customer_id, "external_id": row.external_id, "name": row.name},
        "text": text[:ALERT_TEXT_CHARS] if isinstance(text, str) else None,
        "label": "complaint",
        "rule": rule,
        "campaign": row.campaign,
        "step": row.step,
        "channel": row.channel,
        "provider": row.provider,
        "replied_at": row.occurred_at.isoformat(),
    }


@dataclass(frozen=True)
class LabelledReply:
    """A classified reply, as ``nurture replies`` lists it."""

    response_id: int
    label: str
    rule: str | None
    replied_at: datetime
    classified_at: datetime
    customer: str | None
    text: str | None
    campaign: str | None
    step: int | None
    channel: str | None
    #: The complaint's staff alert: queued, sent or failed; None without one.
    alert: str | None

    def as_dict(self) -> dict[str, Any]:
        """The reply as JSON-ready data."""
        return {"response_id": self.response_id, "label": self.label, "rule": self.rule,
                "replied_at": self.replied_at, "classified_at": self.classified_at, "customer": self.customer,
                "text": self.text, "campaign": self.campaign, "step": self.step, "channel": self.channel,
                "alert": self.alert}


def labelled_replies(engine: Engine, *, labels: Sequence[str] = (), since: datetime | None = None,
                     limit: int = 50) -> tuple[list[LabelledReply], int]:
    """The newest classified replies (of ``labels`` when given, written at or after
    ``since``), at most ``limit``, and how many match in all."""
    from campaigns.store.models import StaffAlert

    r, d, c, label = Response.__table__, Delivery.__table__, Customer.__table__, ReplyLabel.__table__
    alert = StaffAlert.__table__
    conditions = []
    if labels:
        conditions.append(label.c.label.in_(sorted(set(labels))))
    if since is not None:
        conditions.append(r.c.occurred_at >= since)
    joined = label.join(r, r.c.id == label.c.response_id)
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(joined).where(*conditions)).scalar_one()
        rows = conn.execute(
            sa.select(label.c.response_id, label.c.label, label.c.rule, label.c.classified_at, r.c.occurred_at,
                      r.c.payload, c.c.external_id, d.c.campaign, d.c.step, d.c.channel, alert.c.status)
            .select_from(joined.outerjoin(d, d.c.id == r.c.delivery_id).outerjoin(c, c.c.id == r.c.customer_id)
                         .outerjoin(alert, alert.c.alert_key == sa.literal("reply:") + sa.cast(label.c.response_id,
                                                                                                sa.String)))
            .where(*conditions)
            .order_by(r.c.occurred_at.desc(), label.c.response_id.desc())
            .limit(limit)
        ).all()
    return [LabelledReply(response_id=row.response_id, label=row.label, rule=row.rule, replied_at=row.occurred_at,
                          classified_at=row.classified_at, customer=row.external_id,
                          text=(row.payload or {}).get("text"), campaign=row.campaign, step=row.step,
                          channel=row.channel, alert=row.status) for row in rows], int(total)
