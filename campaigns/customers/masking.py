"""Masking of personal data and secrets in text, and a logging filter that applies it.

Logs travel further than the database (terminals, log shippers, bug reports), so no log
line may carry a customer's full email address or phone number, nor a secret::

    mask_email("alice@example.com")  -> "a***@example.com"
    mask_phone("+8613812345678")     -> "+86*******5678"
    mask_phone("13812345678")        -> "*******5678"
    mask_text("bounce for bob@example.com") -> "bounce for b***@example.com"

The domain of an email and the last four digits of a number stay, which is what an
operator needs to tell two failures apart, and not enough to contact anyone.

:class:`MaskingFilter` rewrites a log record's message (``msg % args``), its formatted
exception and stack: addresses are masked, registered secret values become ``***``, as
do URL passwords (``redis://:pw@host``), ``Bearer`` tokens and secret-looking query
parameters (``access_token=...``). :func:`install_masking` applies it to every record
the process creates, whichever handler later writes it.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from campaigns.config.schema import AppConfig

#: What every secret value is replaced by.
REDACTED = "***"
#: Secrets shorter than this are not replaced: replacing "ab" in every log line would
#: garble the logs while protecting a secret too short to protect anything.
MIN_SECRET_LENGTH = 4

# Emails first (a QQ address such as 13812345678@qq.com must not become a phone number),
# then phone numbers. The classes exclude "*", so masked text is never masked again.
# The @ may be percent-encoded, as in a query string (email=bob%40example.com).
_EMAIL = re.compile(r"[\w.%+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")
# E.164 (+ and 8 to 15 digits), optionally grouped by single spaces or dashes; the + may
# be percent-encoded, as in a request URL's query string (PhoneNumbers=%2B8613812345678).
_E164 = re.compile(r"(?<![\w+])(?:\+|%2[Bb])\d(?:[ -]?\d){7,14}(?![\w])")
# A mainland China mobile number written without country code: 1[3-9] and 9 more digits,
# not part of a longer number or an identifier (ASCII only: "手机13812345678" is a phone).
_CN_MOBILE = re.compile(r"(?<![0-9A-Za-z_+])1[3-9]\d{9}(?![0-9A-Za-z_])")
# scheme://user:password@host: the password (redis://:pw@host, postgresql://u:pw@db/x).
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)([^\s@/]+)@")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+")
# Secret-looking query parameters and key=value pairs (WeChat's access_token, a robot key).
_SECRET_PARAM = re.compile(
    r"(?i)(?<![\w])((?:access_token|token|key|secret|password|passwd|api_key|apikey|signature|sig)=)[^&\s\"',;]+"
)

#: Two-digit E.164 country codes; 1 and 7 are the one-digit ones, the rest have three.
_TWO_DIGIT_CODES = frozenset({
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47", "48",
    "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65", "66", "81",
    "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
})


def mask_email(address: str) -> str:
    """``alice@example.com`` -> ``a***@example.com``: the first character and the domain.

    Anything without an ``@`` is masked whole.
    """
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return REDACTED
    return f"{local[:1]}{REDACTED}@{domain}"


def _country_code_length(digits: str) -> int:
    if digits[:1] in ("1", "7"):
        return 1
    return 2 if digits[:2] in _TWO_DIGIT_CODES else 3


def mask_phone(number: str) -> str:
    """Keep a ``+`` country code and the last four digits, one ``*`` per other digit.

    ``+8613812345678`` -> ``+86*******5678``; ``13812345678`` -> ``*******5678``. Spaces
    and dashes are dropped; a number of four digits or fewer is masked whole.
    """
    text = number.strip()
    digits = re.sub(r"\D", "", text)
    if len(digits) <= 4:
        return "*" * max(len(digits), 3)
    prefix = ""
    if text.startswith("+") and len(digits) > 8:
        prefix = "+" + digits[: _country_code_length(digits)]
        digits = digits[len(prefix) - 1 :]
    return prefix + "*" * (len(digits) - 4) + digits[-4:]


def _unquote_plus_sign(number: str) -> str:
    return "+" + number[3:] if number[:3].upper() == "%2B" else number


def mask_text(text: str) -> str:
    """``text`` with every email address and phone number in it masked.

    Finds emails, E.164 numbers (``+8613812345678``, ``+1 415-555-0100``) and mainland
    China mobiles without country code (``13812345678``), and passwords in URLs.
    """
    if not text:
        return text
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)
    text = _EMAIL.sub(lambda match: mask_email(match.group(0).replace("%40", "@")), text)
    text = _E164.sub(lambda match: mask_phone(_unquote_plus_sign(match.group(0))), text)
    return _CN_MOBILE.sub(lambda match: mask_phone(match.group(0)), text)


class MaskingFilter(logging.Filter):
    """Masks addresses and removes secrets from log records; never drops a record.

    The record's message is formatted once (``msg % args``) and replaced by its masked
    text; the exception and stack are formatted into ``exc_text`` / ``stack_info``
    masked, which standard formatters print instead of formatting them again.

    Parameters:
        secrets: values to replace by ``***`` wherever they appear (API keys, passwords,
            tokens); more can be added with :meth:`add_secrets`.
    """

    def __init__(self, *, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        self.add_secrets(secrets)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The registered secret values (longest first)."""
        return self._secrets

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Register more secret values (also their URL-encoded form)."""
        values = set(self._secrets)
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LENGTH:
                values.update({secret, quote(secret, safe="")})
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = tuple(sorted(values, key=len, reverse=True))

    def redact(self, text: str) -> str:
        """``text`` with secrets removed and addresses masked."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = _BEARER.sub(rf"\1{REDACTED}", text)
        text = _SECRET_PARAM.sub(rf"\1{REDACTED}", text)
        return mask_text(text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place; always keep it."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: the handler reports it, as logging does
            return True
        masked = self.redact(message)
        if masked != message:
            self._mask_message(record, masked)
        if isinstance(record.exc_info, tuple) and record.exc_info[0] is not None and not record.exc_text:
            # Exception messages carry addresses too ("<bob@x>: Recipient address rejected").
            # Formatted as logging.Formatter.formatException does, which formatters then reuse.
            record.exc_text = self.redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True

    def _mask_message(self, record: logging.LogRecord, masked: str) -> None:
        """Make ``record`` format to ``masked``, keeping the shape of its ``args``.

        Formatters may read ``record.args`` themselves (uvicorn's AccessFormatter unpacks
        them as a 5-tuple), so the arguments are masked one by one, in place. Only when
        that does not give the masked message (a secret spread over two arguments, or an
        argument a format like ``%d`` needs unchanged) is the message replaced whole."""
        args = record.args
        if isinstance(args, tuple) and args:
            masked_args: tuple[object, ...] | Mapping[str, object] = tuple(self._mask_arg(a) for a in args)
        elif isinstance(args, Mapping) and args:
            masked_args = {key: self._mask_arg(value) for key, value in args.items()}
        else:
            masked_args = args or ()
        try:
            same = bool(masked_args) and (str(record.msg) % masked_args) == masked
        except (TypeError, ValueError, KeyError):
            same = False
        if same:
            record.args = masked_args  # type: ignore[assignment]
        else:
            record.msg, record.args = masked, ()

    def _mask_arg(self, value: object) -> object:
        """A string argument redacted; any other argument as it is (``%d`` needs an int)."""
        return self.redact(value) if isinstance(value, str) else value


def secrets_from_config(config: AppConfig, *, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret ``config`` refers to: the values of all ``*_env`` variables (channel
    passwords, keys and tokens, the unsubscribe secret, the events API key) and the
    passwords in the database and broker URLs."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and key.endswith("_env") and isinstance(value, str) and env.get(value):
                    found.append(env[value])
                else:
                    walk(value)
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item)

    walk(config.model_dump(mode="python"))
    for url in (config.database.url, config.broker.url):
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            found.append(password)
    return found


_FACTORY_ATTRIBUTE = "nurture_masking_filter"


def install_masking(*, secrets: Iterable[str] = ()) -> MaskingFilter:
    """Mask every log record this process creates from now on; returns the filter.

    Installed as a log-record factory rather than on handlers: uvicorn and Dramatiq
    configure their own handlers (some on loggers that do not propagate to the root),
    and a factory covers them all, including handlers added later. Installing again
    adds ``secrets`` to the filter already in place.
    """
    current = logging.getLogRecordFactory()
    existing: MaskingFilter | None = getattr(current, _FACTORY_ATTRIBUTE, None)
    if existing is not None:
        existing.add_secrets(secrets)
        return existing
    masking = MaskingFilter(secrets=secrets)

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        masking.filter(record)
        return record

    factory.nurture_masking_filter = masking  # type: ignore[attr-defined]
    factory.nurture_previous_factory = current  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
    return masking


def register_secrets(secrets: Iterable[str]) -> bool:
    """Add ``secrets`` to the masking installed by :func:`install_masking`, if any.

    For code that learns secrets late (the CLI, once it has read the config) without
    deciding for the whole process whether logs are masked; False when nothing is
    installed.
    """
    installed: MaskingFilter | None = getattr(logging.getLogRecordFactory(), _FACTORY_ATTRIBUTE, None)
    if installed is None:
        return False
    installed.add_secrets(secrets)
    return True


def uninstall_masking() -> None:
    """Undo :func:`install_masking` (tests use it to leave the process as they found it)."""
    current: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()
    previous = getattr(current, "nurture_previous_factory", None)
    if previous is not None:
        logging.setLogRecordFactory(previous)
