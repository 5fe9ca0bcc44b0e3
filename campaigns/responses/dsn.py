"""Delivery status notifications (RFC 3464 bounces): parsing and classification, no I/O.

An MTA that cannot deliver a message mails a report back to the envelope sender::

    Content-Type: multipart/report; report-type=delivery-status; boundary="..."

    --...  text/plain                 what a human reads ("I'm sorry to have to inform you")
    --...  message/delivery-status    one block of per-message fields (Reporting-MTA,
                                      Original-Envelope-Id, Arrival-Date), then one block
                                      per recipient (Final-Recipient, Action, Status,
                                      Diagnostic-Code, Last-Attempt-Date)
    --...  message/rfc822 or text/rfc822-headers   the returned message, or its headers

:func:`parse_dsn` reads that into a :class:`DsnReport`. It also collects what tells us
which of our messages bounced, since the SMTP channel (``workers/channels/smtp.py``)
carries no send key in clear on the wire:

* the returned ``Message-ID`` is ``<tag@domain>``, the tag an HMAC of the send key under
  the installation secret (:func:`campaigns.config.keys.message_tag`);
* a VERP envelope sender (``envelope_from = "bounce+{send_key_hash}@example.com"``)
  comes back as the report's ``To`` (:func:`verp_hash` extracts the same tag);
* ``X-Nurture-Send-Key`` (the outbox channel's header) or an ``Original-Envelope-Id``
  may carry the send key itself: parsed, but proof of nothing (send keys are guessable).

Turning a tag into a delivery, and checking that the tag is the keyed one of that
delivery, needs the ledger and the secret, so that is the receiver's job.

Classification (CHANNELS.md §6) is per recipient, by :func:`classify_status`: ``5.1.x``
(no such mailbox or domain) and ``5.2.1`` (disabled) are hard bounces whose address is
suppressed; ``5.7.x`` is a policy or authentication refusal (DMARC, SPF, blocklists) that
says nothing about the recipient and never suppresses; ``4.x.x`` and ``5.2.2`` (mailbox
full) are soft; a ``delayed`` report is only a warning (the MTA keeps trying).
"""

from __future__ import annotations

import binascii
import email
import email.policy
import hashlib
import quopri
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from campaigns.customers.masking import mask_text
from campaigns.responses.recording import EARLIEST_PROVIDER_TIME, LATEST_PROVIDER_TIME

#: Severities :func:`classify_status` returns.
HARD, SOFT, POLICY, FAILED, DELAYED, DELIVERED = "hard", "soft", "policy", "failed", "delayed", "delivered"

#: The header our outbox channel writes the send key into (and a relay may keep).
SEND_KEY_HEADER = "X-Nurture-Send-Key"

# RFC 3463 status: class.subject.detail, each at most three digits.
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# An address, with its angle brackets when it has them ("<bob@x>: Recipient address rejected").
_ADDRESS = re.compile(r"<[^\s<>@]+@[^\s<>]+>|[^\s<>@;:,\"'()\[\]]+@[^\s<>@;:,\"'()\[\]]+")
_HASH = re.compile(r"[0-9a-f]{32}")
#: Longest diagnostic kept, in characters (MTAs quote whole remote answers).
MAX_DIAGNOSTIC = 300


#: Report dates outside this window are refused: forged or broken, and stored they break
#: every conversion to a local time zone (the window every receiver shares).
EARLIEST_DATE, LATEST_DATE = EARLIEST_PROVIDER_TIME, LATEST_PROVIDER_TIME


class DsnError(ValueError):
    """The input is not a delivery status notification we can read."""


@dataclass(frozen=True)
class DsnRecipient:
    """One per-recipient block of a report."""

    #: The address the report is about (Final-Recipient, without the ``rfc822;`` type).
    final_recipient: str
    #: failed, delayed, delivered, relayed or expanded (lower-case).
    action: str
    #: The RFC 3463 status, e.g. ``5.1.1`` (from Status, else from Diagnostic-Code).
    status: str
    #: Diagnostic-Code without its type, e.g. ``550 5.1.1 <bob@x>: Recipient address rejected``.
    diagnostic: str | None
    #: Original-Envelope-Id of the report (the same for every recipient of one report).
    original_envelope_id: str | None
    #: Original-Recipient, when the MTA rewrote the address (an alias, a forward).
    original_recipient: str | None = None
    #: Last-Attempt-Date, else the report's Arrival-Date, as aware UTC.
    attempted_at: datetime | None = None
    #: Remote-MTA (``dns; mx.example.org``), for the record.
    remote_mta: str | None = None

    @property
    def severity(self) -> str:
        """hard, soft, policy, failed, delayed or delivered: see :func:`classify_status`."""
        return classify_status(self.action, self.status)

    @property
    def permanent(self) -> bool:
        """A hard bounce: the address itself is bad and must be suppressed."""
        return self.severity == HARD

    def masked_error(self) -> str:
        """``status diagnostic`` with every address removed, for ``delivery.last_error``."""
        text = self.status
        if self.diagnostic:
            text += " " + redact(self.diagnostic)
        return text[:MAX_DIAGNOSTIC]


@dataclass(frozen=True)
class DsnReport:
    """A parsed report: its recipients and every clue to the message it is about."""

    recipients: tuple[DsnRecipient, ...]
    #: Original-Envelope-Id (ENVID given at MAIL FROM), if the MTA reported one.
    original_envelope_id: str | None = None
    #: Message-ID of the returned message, angle brackets kept (as the ledger stores it).
    original_message_id: str | None = None
    #: X-Nurture-Send-Key of the returned message.
    send_key_header: str | None = None
    #: Recipients of the report itself (To, Delivered-To, X-Original-To): our VERP address.
    report_to: tuple[str, ...] = ()
    #: Message-ID of the report itself.
    report_message_id: str | None = None
    #: Reporting-MTA, e.g. ``dns; mx.example.com``.
    reporting_mta: str | None = None
    #: sha256 of the raw report: a dedupe key of last resort.
    digest: str = ""

    def message_ref(self) -> str:
        """A stable name for the bounced message: its Message-ID, the envelope id, the
        report's own Message-ID, or the report's digest; at most 128 characters."""
        ref = (self.original_message_id or self.original_envelope_id or self.report_message_id
               or f"sha256:{self.digest}")
        if len(ref) > 128:
            ref = "sha256:" + hashlib.sha256(ref.encode("utf-8")).hexdigest()
        return ref


def classify_status(action: str, status: str) -> str:
    """The severity of one recipient's outcome (CHANNELS.md §6).

    >>> classify_status("failed", "5.1.1"), classify_status("failed", "5.7.26")
    ('hard', 'policy')
    >>> classify_status("failed", "4.2.2"), classify_status("delayed", "4.4.1")
    ('soft', 'delayed')
    """
    action = action.lower()
    if action in ("delivered", "relayed", "expanded"):
        return DELIVERED
    if action == "delayed":
        return DELAYED
    match = _STATUS.search(status)
    if match is None:
        return FAILED
    klass, subject, detail = match.groups()
    if klass == "2":
        return DELIVERED
    if klass == "4":
        # A report with action failed and a 4.x.x status: the MTA gave up retrying a
        # transient condition (mailbox full, host down); the address may well work later.
        return SOFT
    if subject == "1" or (subject == "2" and detail == "1"):
        return HARD
    if subject == "7":
        # Policy or authentication (5.7.26 DMARC, 5.7.1 blocklisted sender): our problem,
        # not the recipient's, so suppressing them would punish the wrong party.
        return POLICY
    if subject == "2" and detail == "2":
        return SOFT  # mailbox full: suppress only after repeats, not on one report
    return FAILED


def redact(text: str) -> str:
    """``text`` on one line with email addresses replaced by ``<address>`` and phone
    numbers masked: MTAs quote the recipient in their diagnostics."""
    return mask_text(_ADDRESS.sub("<address>", " ".join(text.split())))


def verp_hash(address: str, template: str) -> str | None:
    """The 32-hex-digit message hash in ``address`` if it is ``template``
    (``bounce+{send_key_hash}@example.com``) filled in, else None.

    The local part is compared case-insensitively: some MTAs lower-case it.
    """
    if "{send_key_hash}" not in template:
        return None
    prefix, _, suffix = template.partition("{send_key_hash}")
    candidate = address.strip().strip("<>").lower()
    prefix, suffix = prefix.lower(), suffix.lower()
    if not (candidate.startswith(prefix) and candidate.endswith(suffix)):
        return None
    middle = candidate[len(prefix) : len(candidate) - len(suffix)]
    return middle if _HASH.fullmatch(middle) else None


def parse_dsn(raw: bytes, *, content_type: str | None = None) -> DsnReport:
    """Parse a bounce as received (headers and body) into a :class:`DsnReport`.

    ``content_type`` is the HTTP Content-Type the bounce arrived with: when it is
    ``multipart/report`` and ``raw`` has no headers of its own (only the MIME body), it
    supplies the missing header.

    Raises:
        DsnError: ``raw`` is not a ``multipart/report; report-type=delivery-status``
            message with at least one per-recipient block.
    """
    if not raw.strip():
        raise DsnError("empty message")
    # compat32: plain string header values; the modern policy's header classes can raise
    # on the odd headers MTAs write, and nothing here needs them decoded.
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    if not _is_report(message) and content_type and content_type.lower().startswith("multipart/report"):
        message = email.message_from_bytes(
            b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + raw,
            policy=email.policy.compat32,
        )
    if not _is_report(message):
        raise DsnError("not a delivery status notification (multipart/report; report-type=delivery-status)")
    if b"\x00" in raw:
        # No MTA writes NUL into a report, and no database column can hold one.
        raise DsnError("the report contains NUL bytes")
    status_part = returned = None
    for part in message.get_payload():
        if not isinstance(part, Message):
            continue
        kind = part.get_content_type()
        if kind in ("message/delivery-status", "message/global-delivery-status") and status_part is None:
            status_part = part
        elif kind in ("message/rfc822", "text/rfc822-headers", "message/global",
                      "message/global-headers") and returned is None:
            returned = part
    if status_part is None:
        raise DsnError("the report has no message/delivery-status part")
    blocks = _status_blocks(status_part)
    if len(blocks) < 2:
        raise DsnError("the delivery-status part has no per-recipient fields")
    per_message = blocks[0]
    envelope_id = _clean(per_message.get("Original-Envelope-Id"))
    arrival = _date(per_message.get("Arrival-Date"), "Arrival-Date")
    recipients = []
    for block in blocks[1:]:
        recipient = _recipient(block, envelope_id=envelope_id, arrival=arrival)
        if recipient is not None:
            recipients.append(recipient)
    if not recipients:
        raise DsnError("no per-recipient block names a Final-Recipient")
    original = _returned_headers(returned)
    report_to = tuple(
        address for _, address in getaddresses(
            [str(value) for name in ("To", "Delivered-To", "X-Original-To") for value in message.get_all(name, [])]
        ) if address
    )
    return DsnReport(
        recipients=tuple(recipients),
        original_envelope_id=envelope_id,
        original_message_id=_message_id(original.get("Message-ID") if original else None),
        send_key_header=_clean(original.get(SEND_KEY_HEADER)) if original else None,
        report_to=report_to,
        report_message_id=_message_id(message.get("Message-ID")),
        reporting_mta=_clean(per_message.get("Reporting-MTA")),
        digest=hashlib.sha256(raw).hexdigest(),
    )


def _is_report(message: Message) -> bool:
    return (message.get_content_type() == "multipart/report" and message.is_multipart()
            and str(message.get_param("report-type", "")).lower() == "delivery-status")


def _status_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if isinstance(payload, list) and encoding not in ("base64", "quoted-printable"):
        return [block for block in payload if isinstance(block, Message)]
    if isinstance(payload, list):
        # The parser splits a delivery-status part into header blocks whatever its
        # transfer encoding, so a base64 or quoted-printable one comes out as nonsense
        # blocks: put the text back together, decode it, and split it ourselves.
        encoded = "\n".join(block.as_string() for block in payload if isinstance(block, Message)).encode("ascii", "replace")
        try:
            data = binascii.a2b_base64(encoded) if encoding == "base64" else quopri.decodestring(encoded)
        except (binascii.Error, ValueError):
            return []
    else:
        data = part.get_payload(decode=True) or b""
    text = data.decode("utf-8", "replace").replace("\r\n", "\n")
    return [email.message_from_string(chunk.strip() + "\n", policy=email.policy.compat32)
            for chunk in re.split(r"\n[ \t]*\n", text) if chunk.strip()]


def _recipient(block: Message, *, envelope_id: str | None, arrival: datetime | None) -> DsnRecipient | None:
    final = _typed_address(block.get("Final-Recipient"))
    if not final:
        return None
    action = (_clean(block.get("Action")) or "").lower()
    diagnostic = _typed_value(block.get("Diagnostic-Code"))
    status_match = _STATUS.search(_clean(block.get("Status")) or "") or _STATUS.search(diagnostic or "")
    if status_match:
        status = ".".join(status_match.groups())
    else:
        # No usable status: infer the class from the action (RFC 3464 makes Status
        # mandatory, but not every MTA reads RFCs).
        status = {"failed": "5.0.0", "delayed": "4.0.0"}.get(action, "2.0.0")
    return DsnRecipient(
        final_recipient=final,
        action=action or "failed",
        status=status,
        diagnostic=diagnostic,
        original_envelope_id=envelope_id,
        original_recipient=_typed_address(block.get("Original-Recipient")),
        attempted_at=_date(block.get("Last-Attempt-Date"), "Last-Attempt-Date") or arrival,
        remote_mta=_clean(block.get("Remote-MTA")),
    )


def _returned_headers(part: Message | None) -> Message | None:
    if part is None:
        return None
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]  # message/rfc822: the parser already made it a message
    data = part.get_payload(decode=True) or b""
    return email.message_from_bytes(data, policy=email.policy.compat32)


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _typed_value(value: object) -> str | None:
    """``rfc822; bob@x`` -> ``bob@x``; ``smtp; 550 ...`` -> ``550 ...`` (RFC 3464 type;value)."""
    text = _clean(value)
    if text is None:
        return None
    kind, sep, rest = text.partition(";")
    if sep and re.fullmatch(r"[A-Za-z0-9-]+", kind.strip()):
        text = rest.strip()
    return text or None


def _typed_address(value: object) -> str | None:
    text = _typed_value(value)
    if text is None:
        return None
    return text.strip("<>").strip() or None


def _message_id(value: object) -> str | None:
    text = _clean(value)
    if text is None:
        return None
    match = re.search(r"<[^<>\s]+>", text)
    return match.group(0) if match else f"<{text.strip('<>')}>"


def _date(value: object, name: str) -> datetime | None:
    """The date of header ``name``; None when absent or unreadable; DsnError for a date
    outside :data:`EARLIEST_DATE`..:data:`LATEST_DATE` (year 0001 cannot even be
    converted to UTC)."""
    text = _clean(value)
    if text is None:
        return None
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # "-0000" or no zone: RFC 5322 says UTC, unknown local
        parsed = parsed.replace(tzinfo=UTC)
    try:
        moment = parsed.astimezone(UTC)
    except OverflowError:
        moment = None
    if moment is None or not EARLIEST_DATE <= moment < LATEST_DATE:
        raise DsnError(f"{name}: out of range (expected a date between {EARLIEST_DATE.year} and {LATEST_DATE.year})")
    return moment
