"""RFC 3464 bounces: parsing the shapes real MTAs send, and hard/soft/policy classification."""

from __future__ import annotations

import base64
import email
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from campaigns.responses.dsn import (
    DELAYED,
    DELIVERED,
    FAILED,
    HARD,
    POLICY,
    SOFT,
    DsnError,
    classify_status,
    parse_dsn,
    redact,
    verp_hash,
)
from workers.channels.smtp import message_hash

SEND_KEY = "3f" * 32
MESSAGE_ID = f"<{message_hash(SEND_KEY)}@shop.example>"
VERP = f"bounce+{message_hash(SEND_KEY)}@shop.example"


def build_dsn(recipients: list[dict[str, str]], *, envelope_id: str | None = None, returned: str = "headers",
              to: str = VERP, original_headers: dict[str, str] | None = None) -> bytes:
    """A bounce as Postfix writes one: a human part, the delivery-status part (one block
    per message, one per recipient) and the returned message's headers (or the message)."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "MAILER-DAEMON@mx.shop.example (Mail Delivery System)"
    report["To"] = to
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Message-ID"] = "<20260302100000.ABC123@mx.shop.example>"
    report.attach(MIMEText("I'm sorry to have to inform you that your message could not\nbe delivered.\n"))
    per_message = ["Reporting-MTA: dns; mx.shop.example", "X-Postfix-Queue-ID: ABC123",
                   "Arrival-Date: Mon, 2 Mar 2026 10:00:00 +0800"]
    if envelope_id:
        per_message.append(f"Original-Envelope-Id: {envelope_id}")
    # The email package models message/delivery-status as a list of header blocks.
    blocks = []
    for fields in [dict(line.split(": ", 1) for line in per_message), *recipients]:
        block = Message()
        for name, value in fields.items():
            block[name] = value
        blocks.append(block)
    status = Message()
    status["Content-Type"] = "message/delivery-status"
    status.set_payload(blocks)
    report.attach(status)
    headers = {"From": "Shop <news@shop.example>", "To": recipients[0].get("Final-Recipient", "").split(";")[-1].strip(),
               "Subject": "We miss you", "Message-ID": MESSAGE_ID, **(original_headers or {})}
    if returned == "headers":
        part = MIMEBase("text", "rfc822-headers")
        part.set_payload("".join(f"{name}: {value}\n" for name, value in headers.items()))
        report.attach(part)
    elif returned == "message":
        original = EmailMessage()
        for name, value in headers.items():
            original[name] = value
        original.set_content("Hello again")
        wrapper = MIMEBase("message", "rfc822")
        wrapper.set_payload([original])
        report.attach(wrapper)
    return report.as_bytes()


HARD_BOUNCE = {
    "Final-Recipient": "rfc822; bob@example.org",
    "Original-Recipient": "rfc822;bob@example.org",
    "Action": "failed",
    "Status": "5.1.1",
    "Remote-MTA": "dns; mx.example.org",
    "Diagnostic-Code": "smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown",
}
MAILBOX_FULL = {
    "Final-Recipient": "rfc822; carol@example.net",
    "Action": "failed",
    "Status": "4.2.2",
    "Diagnostic-Code": "smtp; 452 4.2.2 Mailbox full (carol@example.net), giving up after 5 days",
    "Last-Attempt-Date": "Sat, 7 Mar 2026 09:30:00 +0000",
}
DMARC = {
    "Final-Recipient": "rfc822; dave@gmail.example",
    "Action": "failed",
    "Status": "5.7.26",
    "Diagnostic-Code": ("smtp; 550-5.7.26 Unauthenticated email from shop.example is not accepted due to "
                        "domain's DMARC policy."),
}


def test_postfix_hard_bounce_is_hard_with_the_recipient_status_and_returned_message_id():
    report = parse_dsn(build_dsn([HARD_BOUNCE]))
    (recipient,) = report.recipients
    assert recipient.final_recipient == "bob@example.org"
    assert recipient.original_recipient == "bob@example.org"
    assert (recipient.action, recipient.status) == ("failed", "5.1.1")
    assert recipient.diagnostic.startswith("550 5.1.1")
    assert recipient.severity == HARD and recipient.permanent
    assert recipient.remote_mta == "dns; mx.example.org"
    # No Last-Attempt-Date: the report's Arrival-Date, in UTC.
    assert recipient.attempted_at == datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    assert report.original_message_id == MESSAGE_ID
    assert report.reporting_mta == "dns; mx.shop.example"
    assert report.report_to == (VERP,)
    assert report.message_ref() == MESSAGE_ID


def test_the_error_kept_for_the_ledger_names_no_address():
    (recipient,) = parse_dsn(build_dsn([HARD_BOUNCE])).recipients
    error = recipient.masked_error()
    assert error.startswith("5.1.1 550 5.1.1 <address>: Recipient address rejected")
    assert "bob" not in error and "example.org" not in error


def test_soft_bounce_4_2_2_mailbox_full_is_soft_and_not_permanent():
    (recipient,) = parse_dsn(build_dsn([MAILBOX_FULL])).recipients
    assert recipient.status == "4.2.2"
    assert recipient.severity == SOFT and not recipient.permanent
    assert recipient.attempted_at == datetime(2026, 3, 7, 9, 30, tzinfo=UTC)
    assert "carol" not in recipient.masked_error()


def test_dmarc_5_7_26_is_policy_and_never_permanent():
    (recipient,) = parse_dsn(build_dsn([DMARC])).recipients
    assert recipient.status == "5.7.26"
    assert recipient.severity == POLICY and not recipient.permanent


def test_one_report_for_several_recipients_gives_one_record_each():
    report = parse_dsn(build_dsn([HARD_BOUNCE, MAILBOX_FULL, DMARC], envelope_id="env-42"))
    assert [(r.final_recipient, r.severity) for r in report.recipients] == [
        ("bob@example.org", HARD), ("carol@example.net", SOFT), ("dave@gmail.example", POLICY)]
    assert {r.original_envelope_id for r in report.recipients} == {"env-42"}
    assert report.original_envelope_id == "env-42"


def test_returned_full_message_and_send_key_header_are_read():
    raw = build_dsn([HARD_BOUNCE], returned="message", original_headers={"X-Nurture-Send-Key": SEND_KEY})
    report = parse_dsn(raw)
    assert report.send_key_header == SEND_KEY
    assert report.original_message_id == MESSAGE_ID


def test_status_missing_falls_back_to_the_diagnostic_code_then_the_action():
    from_diagnostic = {"Final-Recipient": "rfc822; x@example.org", "Action": "failed",
                       "Diagnostic-Code": "smtp; 550 5.2.1 mailbox disabled"}
    bare = {"Final-Recipient": "rfc822; y@example.org", "Action": "failed"}
    first, second = parse_dsn(build_dsn([from_diagnostic, bare])).recipients
    assert (first.status, first.severity) == ("5.2.1", HARD)
    assert (second.status, second.severity) == ("5.0.0", FAILED)


def test_a_body_without_headers_is_read_with_the_http_content_type():
    raw = build_dsn([HARD_BOUNCE])
    _, _, body = raw.partition(b"\n\n")
    content_type = " ".join(str(email.message_from_bytes(raw)["Content-Type"]).split())
    report = parse_dsn(body, content_type=content_type)
    assert report.recipients[0].status == "5.1.1"


def test_base64_encoded_delivery_status_part_is_decoded():
    raw = build_dsn([MAILBOX_FULL]).decode()
    plain = ("Reporting-MTA: dns; mx.shop.example\n\nFinal-Recipient: rfc822; carol@example.net\n"
             "Action: failed\nStatus: 4.2.2\n")
    encoded = base64.encodebytes(plain.encode()).decode()
    start = raw.index("Content-Type: message/delivery-status")
    end = raw.index("--", start)
    raw = raw[:start] + ("Content-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
                         + encoded + "\n") + raw[end:]
    (recipient,) = parse_dsn(raw.encode()).recipients
    assert (recipient.final_recipient, recipient.status) == ("carol@example.net", "4.2.2")


@pytest.mark.parametrize("raw, reason", [
    (b"", "empty"),
    (b"From: someone@example.org\r\nSubject: hi\r\n\r\nJust a reply to the bounce address\r\n", "not a delivery"),
    (b"\x00\xff garbage \x80", "not a delivery"),
    (b"Content-Type: multipart/report; report-type=feedback-report; boundary=x\r\n\r\n--x\r\n\r\nhi\r\n--x--\r\n",
     "not a delivery"),
    ((b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n"
      b"Content-Type: text/plain\r\n\r\nhi\r\n--x--\r\n"), "no message/delivery-status"),
])
def test_what_is_not_a_dsn_is_refused_with_a_reason(raw, reason):
    with pytest.raises(DsnError, match=reason):
        parse_dsn(raw)


def test_a_report_without_recipient_blocks_is_refused():
    raw = (b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n"
           b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n--x--\r\n")
    with pytest.raises(DsnError, match="per-recipient"):
        parse_dsn(raw)


@pytest.mark.parametrize("action, status, expected", [
    ("failed", "5.1.1", HARD), ("failed", "5.1.10", HARD), ("failed", "5.2.1", HARD),
    ("failed", "5.2.2", SOFT), ("failed", "4.2.2", SOFT), ("failed", "4.7.1", SOFT),
    ("failed", "5.7.1", POLICY), ("failed", "5.7.26", POLICY), ("failed", "5.7.515", POLICY),
    ("failed", "5.3.4", FAILED), ("delayed", "4.4.1", DELAYED), ("delivered", "2.0.0", DELIVERED),
    ("relayed", "2.0.0", DELIVERED), ("FAILED", "5.1.2", HARD),
])
def test_classification_follows_channels_md(action, status, expected):
    assert classify_status(action, status) == expected


def test_verp_hash_matches_the_template_the_smtp_channel_fills():
    template = "bounce+{send_key_hash}@shop.example"
    assert verp_hash(VERP, template) == message_hash(SEND_KEY)
    assert verp_hash(f"<{VERP.upper()}>", template) == message_hash(SEND_KEY)
    assert verp_hash("bounce+nothex@shop.example", template) is None
    assert verp_hash(f"bounce+{message_hash(SEND_KEY)}@other.example", template) is None
    assert verp_hash(VERP, "bounce@shop.example") is None


def test_redact_removes_addresses_and_masks_numbers():
    assert redact("550 <bob@example.org> unknown;\n call +8613812345678") == "550 <address> unknown; call +86*******5678"
