"""The outbox channel: each message a file named after its send key, with the customer's
external id in place of the internal row id."""

from __future__ import annotations

import email
from pathlib import Path

import pytest

from campaigns.config.channels import OutboxChannelConfig
from campaigns.sending.messages import OutboundMessage, Outcome
from workers.channels.outbox import OutboxChannel, message_stem, remove_messages


def step_of(send_key: str) -> int:
    """The step in a planned send key (``campaign:step:row:occurrence``), else 0."""
    field = send_key.split(":")[1]
    return int(field) if field.isdigit() else 0


def message(send_key: str = "win_back:0:197:once", external_id: str = "C199", **parts: str) -> OutboundMessage:
    return OutboundMessage(
        send_key=send_key, delivery_id=1, campaign="win_back", step=step_of(send_key), channel="x",
        recipient="li@example.com", customer_external_id=external_id, parts=parts or {"txt": "hello"},
    )


def test_outbox_writes_a_multipart_email_named_after_the_customers_external_id(tmp_path):
    channel = OutboxChannel(name="mail", options=OutboxChannelConfig(kind="outbox", dir=tmp_path))
    result = channel.send(message(subject="Welcome, 李", txt="plain", html="<b>rich</b>"))
    assert result.outcome is Outcome.OK
    # Row 197 is customer C199: the name says C199, the id a marketer knows (issue #14).
    written = tmp_path / "win_back" / "win_back_0_C199_once.eml"
    parsed = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    assert parsed["To"] == "li@example.com" and parsed["Subject"] == "Welcome, 李"
    assert parsed.get_body(("plain",)).get_content().strip() == "plain"
    assert parsed.get_body(("html",)).get_content().strip() == "<b>rich</b>"
    # Writing the same send key again replaces the file: one message, not two.
    channel.send(message(subject="Welcome", txt="plain"))
    assert len(list((tmp_path / "win_back").iterdir())) == 1


def test_outbox_write_failure_is_retryable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    channel = OutboxChannel(name="mail", options=OutboxChannelConfig(kind="outbox", dir=blocker))
    assert channel.send(message()).outcome is Outcome.RETRY


#: External ids a file name cannot hold as they are, or that differ only in what a
#: sanitised name would drop: each must still get a name of its own.
AWKWARD_IDS = ["a/b", "a_b", "a b", "a:b", "a.b", "../etc", ".hidden", "-x", "C_1", "C-1", "客户7", "客户_7",
               "李" * 120, "x" * 300, ""]


def test_awkward_external_ids_get_safe_distinct_names_inside_the_campaign_folder(tmp_path):
    channel = OutboxChannel(name="mail", options=OutboxChannelConfig(kind="outbox", dir=tmp_path))
    keys = [f"win_back:0:{row}:once" for row in range(len(AWKWARD_IDS))]
    keys.append("win_back:1:0:20261204T1000")  # another step and occurrence of the first customer
    ids = [*AWKWARD_IDS, AWKWARD_IDS[0]]
    for key, external_id in zip(keys, ids, strict=True):
        assert channel.send(message(key, external_id, txt="hi")).outcome is Outcome.OK

    files = sorted((tmp_path / "win_back").iterdir())
    assert len(files) == len(keys)  # one file per send key: no name was shared
    for path in files:
        assert len(path.name.encode("utf-8")) <= 200 and not path.name.startswith(".")
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        key = parsed["X-Nurture-Send-Key"]
        assert path.stem == message_stem(key, campaign="win_back", step=step_of(key),
                                         external_id=ids[keys.index(key)])
    assert not list(tmp_path.glob("*.eml")) and not (tmp_path / "etc").exists()
    assert (tmp_path / "win_back" / "win_back_0_C-1_once.eml").exists()  # plain ids stay as they are
    assert (tmp_path / "win_back" / "win_back_0_客户7_once.eml").exists()


@pytest.mark.parametrize(("key", "external_id"), [
    ("win_back:0:1:once", "C1"),
    ("win_back:0:2:once", "a_b"),
    ("test:win_back:0:0f8e2a4c", "C1"),  # a send key of another shape (a test send)
    ("win_back:0:3:" + "x" * 240, "李雷"),  # long enough for the header to be folded and encoded
])
def test_remove_messages_finds_files_by_the_send_key_they_carry(tmp_path, key, external_id):
    # `nurture forget` removes a customer's files after replacing the external id, so the
    # name cannot be recomputed: each file is recognised by its send key.
    email_box = OutboxChannel(name="mail", options=OutboxChannelConfig(kind="outbox", dir=tmp_path / "mail"))
    sms_box = OutboxChannel(name="sms", options=OutboxChannelConfig(kind="outbox", dir=tmp_path / "sms",
                                                                    recipient="phone"))
    for box in (email_box, sms_box):
        box.send(message(key, external_id, txt="hi"))
        box.send(message("win_back:0:99:once", "C99", txt="someone else"))
    theirs = tmp_path / "mail" / "win_back" / "not_ours.eml"
    theirs.write_text("To: old@example.com\nSubject: old\n\nold\n")

    for box in ("mail", "sms"):
        assert remove_messages(tmp_path / box, [("win_back", key), ("other_campaign", key)]) == 1

    left = {path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*") if path.is_file()}
    assert left == {"mail/win_back/win_back_0_C99_once.eml", "sms/win_back/win_back_0_C99_once.txt",
                    "mail/win_back/not_ours.eml"}


def test_remove_messages_in_a_missing_folder_removes_nothing(tmp_path: Path):
    assert remove_messages(tmp_path / "nowhere", [("win_back", "win_back:0:1:once")]) == 0
