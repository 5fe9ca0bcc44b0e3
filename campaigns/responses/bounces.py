"""Bounces (RFC 3464 DSNs) as our own responses: which message a report is about, and what
it records.

Anyone can mail the bounce address, so a report is only believed when it carries the
keyed tag of one of our messages (the local part of the returned Message-ID, or the VERP
tag in the report's own address: :func:`campaigns.config.keys.message_tag`) and its
Final-Recipient is the address that message went to; it then affects that one address
only. The report itself is parsed by :mod:`campaigns.responses.dsn`; the HTTP intake is
``workers.http.bounces``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.keys import derive_key, keyed_hex, tags_match
from campaigns.config.options.smtp import SmtpChannelConfig
from campaigns.config.schema import AppConfig
from campaigns.customers.addresses import normalize_address
from campaigns.customers.masking import mask_email
from campaigns.responses.dsn import (
    DELAYED,
    DELIVERED,
    HARD,
    SOFT,
    DsnRecipient,
    DsnReport,
    verp_hash,
)
from campaigns.responses.recording import InboundResponse, record_responses
from campaigns.store.models import Customer, Delivery

#: Purpose label (campaigns.config.keys) of the key hashing a bounced address into its response ref.
BOUNCE_REF_PURPOSE = "bounce-ref"
#: Provider name of the responses a bounce records.
EMAIL_PROVIDER = "email"

#: A Message-ID as our SMTP channel writes it: ``<tag@id_domain>``.
_TAG = re.compile(r"<([0-9a-fA-F]{32})@([^<>@\s]+)>")


@dataclass(frozen=True)
class BouncedMessage:
    """The delivery a bounce report is about, and the address it went to."""

    delivery_id: int
    send_key: str
    provider_message_id: str | None
    email: str | None


@dataclass(frozen=True)
class BouncePart:
    """What one recipient block of a report comes to."""

    recipient: DsnRecipient
    #: The response to record, or None when the block is ignored.
    response: InboundResponse | None
    #: True when the block is about the address the bounced message went to.
    matched: bool
    #: Why the block is ignored (None when it is recorded).
    ignored: str | None


def match_bounced_message(engine: Engine, config: AppConfig, report: DsnReport, secret: str
                          ) -> BouncedMessage | None:
    """The delivery a bounce is about, found by the keyed tag it carries: the local part
    of the returned Message-ID, or the VERP tag in the report's own address.

    The tag must be ``message_tag(secret, send_key)`` of the delivery it names. Send keys
    are guessable (``win_back:0:<customer id>:once``), so a send key in clear
    (X-Nurture-Send-Key, Original-Envelope-Id) or an unkeyed SHA-256 of one (what was
    sent before the installation secret existed) proves nothing and is not accepted.
    """
    smtp = [ch for ch in config.channels.values() if isinstance(ch, SmtpChannelConfig)]
    tags: dict[str, str] = {}  # provider message id -> tag
    if report.original_message_id:
        found = _TAG.fullmatch(report.original_message_id)
        for channel in smtp if found else ():
            if found.group(2).lower() == channel.id_domain.lower():  # type: ignore[union-attr]
                tag = found.group(1).lower()  # type: ignore[union-attr]
                tags[f"<{tag}@{channel.id_domain}>"] = tag
    for channel in smtp:
        if not channel.envelope_from:
            continue
        for address in report.report_to:
            digest = verp_hash(address, channel.envelope_from)
            if digest:
                # The SMTP channel's Message-ID is <tag@id_domain> with the same tag.
                tags[f"<{digest}@{channel.id_domain}>"] = digest
    if not tags:
        return None
    columns = (Delivery.id, Delivery.send_key, Delivery.provider_message_id, Customer.email)
    base = sa.select(*columns).join(Customer, Customer.id == Delivery.customer_id)
    with engine.connect() as conn:
        rows = conn.execute(
            base.where(Delivery.provider_message_id.in_(sorted(tags))).order_by(Delivery.id.desc())
        ).all()
    for row in rows:
        if tags_match(secret, row.send_key, tags[row.provider_message_id]):
            return BouncedMessage(row.id, row.send_key, row.provider_message_id, row.email)
    return None


def bounce_parts(report: DsnReport, message: BouncedMessage, *, now: datetime, ref_key: bytes) -> list[BouncePart]:
    """Per recipient block of ``report``: the response it records, or why it is ignored.

    ``ref_key`` keys the hash of the bounced address in each response's ref.
    """
    out: list[BouncePart] = []
    for recipient in report.recipients:
        severity = recipient.severity
        # Only the block about the very address the matched message went to counts (its
        # Final-Recipient; an Original-Recipient is whatever the report says it is): one
        # bounce affects one address, the one in our ledger, never one the report names.
        ours = bool(message.email) and normalize_address(message.email or "") == normalize_address(
            recipient.final_recipient)
        if not ours:
            out.append(BouncePart(recipient, None, False, "not the address the bounced message was sent to"))
            continue
        if severity == DELAYED:
            # A warning: the MTA is still trying. The final report will follow.
            out.append(BouncePart(recipient, None, True, "delayed: the MTA is still retrying"))
            continue
        if severity == DELIVERED:
            kind = "delivered"
        elif severity == SOFT:
            kind = "undelivered"
        else:
            # hard, policy (5.7.x) and other permanent failures: the message bounced; only
            # a hard bounce of our own recipient suppresses (``blocked`` would suppress).
            kind = "bounced"
        # No address in the ref, not even its plain SHA-256 (guessable back from a list of
        # addresses): forgetting a customer erases payloads, not refs.
        recipient_hash = keyed_hex(ref_key, normalize_address(recipient.final_recipient))[:16]
        attempted = recipient.attempted_at
        item = InboundResponse(
            kind=kind,
            provider=EMAIL_PROVIDER,
            provider_ref=f"{report.message_ref()}:{recipient_hash}:{recipient.status}",
            occurred_at=min(attempted, now) if attempted is not None else now,
            provider_message_id=message.provider_message_id,
            send_key=message.send_key,
            address=message.email,
            family="email",
            error=recipient.masked_error() if kind != "delivered" else None,
            permanent=severity == HARD,
            payload={"status": recipient.status, "action": recipient.action, "severity": severity},
        )
        out.append(BouncePart(recipient, item, ours, None))
    return out


def record_bounce(engine: Engine, config: AppConfig, report: DsnReport, *, secret: str, now: datetime
                  ) -> dict[str, Any] | None:
    """Record what ``report`` says about one of our messages; the summary of what was
    recorded (recipients masked), or None when the report names no message of ours.

    ``secret`` is the installation secret (``[security] secret_env``) keying message tags.
    """
    message = match_bounced_message(engine, config, report, secret)
    if message is None:
        return None
    parts = bounce_parts(report, message, now=now, ref_key=derive_key(secret, BOUNCE_REF_PURPOSE))
    items = [part.response for part in parts if part.response is not None]
    results = iter(record_responses(engine, items, now=now) if items else [])
    summary: list[dict[str, Any]] = []
    for part in parts:
        recipient, item = part.recipient, part.response
        entry: dict[str, Any] = {"recipient": mask_email(recipient.final_recipient), "status": recipient.status,
                                 "action": recipient.action, "severity": recipient.severity, "matched": part.matched}
        if item is None:
            entry["ignored"] = part.ignored
        else:
            result = next(results)
            entry.update(kind=item.kind, permanent=item.permanent, duplicate=result.duplicate,
                         suppressed=result.suppressed)
        summary.append(entry)
    recorded = [e for e in summary if "kind" in e]
    return {
        "recipients": summary,
        "recorded": sum(1 for e in recorded if not e["duplicate"]),
        "duplicates": sum(1 for e in recorded if e["duplicate"]),
        "suppressed": sum(1 for e in recorded if e["suppressed"]),
    }
