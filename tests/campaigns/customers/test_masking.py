"""Masking of addresses and secrets (campaigns.customers.masking): the pure functions, the logging
filter, and the process-wide installation the CLI and worker processes use."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from campaigns.customers.masking import (
    MaskingFilter,
    install_masking,
    mask_email,
    mask_phone,
    mask_text,
    register_secrets,
    secrets_from_config,
    uninstall_masking,
)
from campaigns.project.loading import parse_config


@pytest.fixture
def masking() -> Iterator[None]:
    """Masking installed for the test, the process's record factory restored after."""
    before = logging.getLogRecordFactory()
    yield
    uninstall_masking()
    logging.setLogRecordFactory(before)


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("alice@example.com", "a***@example.com"),
        ("Bob.Smith@Example.co.uk", "B***@Example.co.uk"),
        ("x@y.cn", "x***@y.cn"),
        ("@example.com", "***@example.com"),
        ("not-an-address", "***"),
    ],
)
def test_mask_email_keeps_the_first_character_and_the_domain(address: str, masked: str) -> None:
    assert mask_email(address) == masked


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+8613812345678", "+86*******5678"),
        ("13812345678", "*******5678"),
        ("+1 415-555-0100", "+1******0100"),
        ("+44 20 7946 0958", "+44******0958"),
        ("+35312345678", "+353****5678"),
        ("1234", "****"),
    ],
)
def test_mask_phone_keeps_the_country_code_and_last_four_digits(number: str, masked: str) -> None:
    assert mask_phone(number) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("550 5.1.1 <alice@example.com>: Recipient address rejected",
         "550 5.1.1 <a***@example.com>: Recipient address rejected"),
        ("send to +8613812345678 failed", "send to +86*******5678 failed"),
        ("手机13812345678无效", "手机*******5678无效"),
        ("numbers 13812345678, 13912345678", "numbers *******5678, *******5678"),
        # A numeric QQ mailbox is an email, not a phone number.
        ("13812345678@qq.com bounced", "1***@qq.com bounced"),
        ("+27821234567 and +353871234567", "+27*****4567 and +353*****4567"),
        # A request URL's query string (httpx logs them): the + is percent-encoded.
        ("GET https://dysmsapi.aliyuncs.com/?PhoneNumbers=%2B8613812345678&Action=SendSms",
         "GET https://dysmsapi.aliyuncs.com/?PhoneNumbers=+86*******5678&Action=SendSms"),
        ("GET /track?email=bob%40example.com&x=1", "GET /track?email=b***@example.com&x=1"),
        ("redis://:hunter22@cache:6379/0 down", "redis://:***@cache:6379/0 down"),
        ("postgresql://app:pw-1@db/nurture", "postgresql://app:***@db/nurture"),
    ],
)
def test_mask_text_finds_emails_and_phone_numbers_in_free_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "delivery 1234567 of customer C13812345678",  # an identifier, not a number
        "at 2026-03-02T10:00:00+08:00 took 1700000000123 ms",  # a time and a 13-digit number
        "send key win_back:0:42:once, HTTP 503",
        "",
    ],
)
def test_mask_text_leaves_text_without_addresses_alone(text: str) -> None:
    assert mask_text(text) == text


def test_mask_text_is_idempotent() -> None:
    once = mask_text("alice@example.com +8613812345678 13912345678")
    assert mask_text(once) == once


def record(msg: object, *args: object, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("nurture.test", logging.ERROR, __file__, 1, msg, args or None, exc_info)  # type: ignore[arg-type]


def test_filter_masks_the_formatted_message_and_removes_secrets() -> None:
    masking = MaskingFilter(secrets=["s3cr3t-api-key", "pw/with space"])
    entry = record("login %s with %s failed for %s (%s)", "bob@example.com", "s3cr3t-api-key",
                   "+8613812345678", "pw%2Fwith%20space")
    assert masking.filter(entry) is True  # never drops a record
    assert entry.getMessage() == "login b***@example.com with *** failed for +86*******5678 (***)"


def test_filter_removes_bearer_tokens_and_secret_query_parameters() -> None:
    entry = record("GET https://qyapi.weixin.qq.com/send?key=abcd-1234&debug=1 and ?access_token=XYZ "
                   "Authorization: Bearer eyJhbGciOi.abc send_key=keep")
    MaskingFilter().filter(entry)
    assert entry.getMessage() == ("GET https://qyapi.weixin.qq.com/send?key=***&debug=1 and ?access_token=*** "
                                  "Authorization: Bearer *** send_key=keep")


def test_filter_leaves_clean_records_untouched() -> None:
    entry = record("campaign %s planned %d deliveries", "win_back", 30)
    MaskingFilter(secrets=["unrelated-secret"]).filter(entry)
    assert entry.args == ("win_back", 30)


def test_filter_masks_exception_text_and_stack() -> None:
    try:
        raise RuntimeError("550 <carol@example.com> rejected, token tok-123456")
    except RuntimeError:
        import sys

        entry = record("send failed", exc_info=sys.exc_info())
    entry.stack_info = "Stack (most recent call last):\n  for dave@example.com"
    MaskingFilter(secrets=["tok-123456"]).filter(entry)
    text = logging.Formatter().format(entry)
    assert "RuntimeError: 550 <c***@example.com> rejected, token ***" in text
    assert "d***@example.com" in text
    assert "carol@example.com" not in text and "tok-123456" not in text and "dave@" not in text


def test_short_secrets_are_not_replaced_everywhere() -> None:
    masking = MaskingFilter(secrets=["ab", ""])
    assert masking.secrets == ()
    assert masking.redact("about a tab") == "about a tab"


def test_secrets_from_config_reads_every_env_variable_it_names_and_url_passwords() -> None:
    config = parse_config("""
[database]
url = "postgresql://app:db-password@127.0.0.1/nurture"
[broker]
url = "redis://:redis-password@127.0.0.1:6379/0"
[api]
key_env = "T_API_KEY"
[channels.hook]
kind = "webhook"
url = "https://crm.example.com/hook"
secret_env = "T_HOOK_SECRET"
[channels.mail]
kind = "smtp"
host = "smtp.example.com"
from = "news@example.com"
username = "news"
password_env = "T_SMTP_PASSWORD"
unsubscribe_url = "https://u.example.com/u/{token}"
unsubscribe_secret_env = "T_UNSUB"
[channels.unset]
kind = "webhook"
url = "https://crm.example.com/other"
secret_env = "T_NOT_SET"
""")
    environ = {"T_API_KEY": "api-key-1", "T_HOOK_SECRET": "hook-secret-1", "T_SMTP_PASSWORD": "smtp-pw-1",
               "T_UNSUB": "unsub-secret-1", "T_UNRELATED": "not-a-secret"}
    assert sorted(secrets_from_config(config, environ=environ)) == sorted([
        "api-key-1", "hook-secret-1", "smtp-pw-1", "unsub-secret-1", "db-password", "redis-password"])


@pytest.mark.usefixtures("masking")
def test_installed_masking_covers_every_logger_and_handler_even_non_propagating_ones() -> None:
    # Like uvicorn's loggers: own handler, no propagation to the root.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("nurture.test.isolated")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        install_masking(secrets=["first-secret"])
        assert register_secrets(["second-secret"]) is True
        assert install_masking() is install_masking()  # installing again reuses the filter
        logger.error("to %s with %s and %s", "erin@example.com", "first-secret", "second-secret")
        try:
            raise ValueError("bad number 13812345678")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    output = stream.getvalue()
    assert "ERROR to e***@example.com with *** and ***" in output
    assert "ValueError: bad number *******5678" in output
    assert "erin@" not in output and "secret" not in output and "13812345678" not in output


def test_registering_secrets_without_masking_installed_changes_nothing() -> None:
    assert getattr(logging.getLogRecordFactory(), "nurture_masking_filter", None) is None
    assert register_secrets(["some-secret"]) is False


def test_callback_token_and_link_secret_are_masked_like_every_configured_secret():
    # The callback token travels in URLs (?token=...), which access logs print.
    from campaigns.config.schema import AppConfig

    secrets = secrets_from_config(AppConfig(), environ={"NURTURE_CALLBACK_TOKEN": "cb-token-123456",
                                                        "NURTURE_LINK_SECRET": "link-secret-987654",
                                                        "NURTURE_SECRET": "installation-secret-24680"})
    assert {"cb-token-123456", "link-secret-987654", "installation-secret-24680"} <= set(secrets)


def test_filter_masks_arguments_one_by_one_so_formatters_can_still_read_them() -> None:
    # uvicorn's access line: AccessFormatter unpacks record.args as a 5-tuple.
    entry = record('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST",
                   "/callbacks/aliyun/sms/report?token=tok-123456&to=bob@example.com", "1.1", 200)
    MaskingFilter(secrets=["tok-123456"]).filter(entry)
    assert entry.args == ("127.0.0.1:5000", "POST", "/callbacks/aliyun/sms/report?token=***&to=b***@example.com",
                          "1.1", 200)
    assert entry.getMessage() == '127.0.0.1:5000 - "POST /callbacks/aliyun/sms/report?token=***&to=b***@example.com HTTP/1.1" 200'


def test_filter_replaces_the_message_whole_when_arguments_alone_cannot_be_masked() -> None:
    # "Bearer" and the token are separate arguments: only the whole message shows the token.
    entry = record("Authorization: %s %s", "Bearer", "eyJhbGciOi.abc")
    MaskingFilter().filter(entry)
    assert entry.getMessage() == "Authorization: Bearer ***"
