"""The errors nurture raises, as one small tree.

::

    NurtureError
    ├── ConfigError            the configuration is invalid (carries every issue found)
    ├── DataImportError        an import file cannot be read at all (bad rows are not errors)
    ├── RenderError            a template failed to compile or render (permanent for a delivery)
    ├── UnknownCampaignError   config.toml has no campaign by that name (also a KeyError)
    ├── UnknownCustomerError   no customer has the customer_id given (``nurture forget``)
    ├── AmbiguousCustomerError a customer reference names two customers (``nurture consent 138...``)
    ├── PredictionError        a prediction cannot be made as asked (a date before any order)
    └── DeliveryError          a channel could not deliver one message
        ├── RetryableDeliveryError   try again later (network, timeout, 429, 5xx)
        └── PermanentDeliveryError   never retry (bad address, rejected request)

User mistakes are reported through these classes so the CLI can print them without a
traceback; anything else is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass


class NurtureError(Exception):
    """Root of every error nurture raises on purpose."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file, located as precisely as we can."""

    file: str
    line: int | None
    key_path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.key_path}:" if self.key_path else ""
        return f"{where}:{key} {self.message}"


class ConfigError(NurtureError):
    """The configuration is invalid; ``issues`` lists every problem found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class DataImportError(NurtureError):
    """An import file cannot be processed at all (missing, unknown format, no header)."""


class RenderError(NurtureError):
    """A template failed to compile or render; retrying will not help."""

    def __init__(self, template: str, message: str, *, lineno: int | None = None) -> None:
        self.template = template
        self.lineno = lineno
        where = f"{template}:{lineno}" if lineno else template
        super().__init__(f"{where}: {message}")


class UnknownCampaignError(NurtureError, KeyError):
    """config.toml defines no campaign by the name a command or page was given.

    A KeyError too, since it is a failed look-up by name (the dashboard answers 404 on it).
    """

    def __init__(self, name: str, *, known: list[str]) -> None:
        self.name = name
        super().__init__(f"no campaign named {name!r} (campaigns: {', '.join(known) or 'none'})")

    def __str__(self) -> str:  # KeyError's own quotes the message
        return str(self.args[0])


class UnknownCustomerError(NurtureError):
    """No customer has the ``customer_id`` (external id) a command was given."""

    def __init__(self, external_id: str) -> None:
        self.external_id = external_id
        super().__init__(f"no customer with customer_id {external_id!r}")


class AmbiguousCustomerError(NurtureError):
    """A customer reference names more than one customer: a bare value that is one
    customer's id and another's phone (or unionid). Acting on either would be a guess, so
    the command asks for the kind to be written out."""

    def __init__(self, reference: str, *, matches: list[str]) -> None:
        self.reference = reference
        #: The identifiers that matched, one per customer (``id:13800138000``, ``phone:+86...``).
        self.matches = matches
        super().__init__(f"customer {reference!r} is ambiguous: it matches {len(matches)} customers "
                         f"({', '.join(matches)}); give one of those instead")


class PredictionError(NurtureError):
    """The purchase models cannot be fitted or scored as asked: a date before any paid
    order, a holdout period that ends before it starts."""


class DeliveryError(NurtureError):
    """A channel could not deliver one message."""


class RetryableDeliveryError(DeliveryError):
    """Delivery failed for a reason that may pass: try again after ``retry_after_s``."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class PermanentDeliveryError(DeliveryError):
    """Delivery failed for a reason that will not pass: never retry."""
