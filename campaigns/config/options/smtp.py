"""Options of the ``smtp`` channel: email through an SMTP relay.

```toml
[channels.email]
kind = "smtp"
host = "smtp.example.com"          # port 587 + STARTTLS by default
from = "Shop <news@example.com>"
username = "news@example.com"
password_env = "SMTP_PASSWORD"
unsubscribe_url = "https://u.example.com/u/{token}"
unsubscribe_mailto = "unsubscribe@example.com"
unsubscribe_secret_env = "NURTURE_UNSUBSCRIBE_SECRET"
```

``security`` defaults to ``"starttls"``; ``port`` defaults from it: 587 for
``starttls``, 465 for ``ssl`` (implicit TLS), 25 for ``none``. Nothing is guessed from
the port: an explicit ``security`` always wins.
"""

from __future__ import annotations

from datetime import timedelta
from email.utils import parseaddr
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from campaigns.config.base import Duration, RecipientField, StrictModel

#: Port used when ``port`` is not given, per ``security``.
DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "ssl": 465, "none": 25}


class SmtpChannelConfig(StrictModel):
    """Sends multipart email through an SMTP server, one reused connection per worker thread."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["smtp"]
    host: str = Field(min_length=1)
    #: Defaults from ``security`` (see :data:`DEFAULT_PORTS`).
    port: int = Field(default=0, ge=0, le=65535)
    #: ``starttls`` (upgrade after EHLO), ``ssl`` (implicit TLS from the first byte) or ``none``.
    security: Literal["starttls", "ssl", "none"] = "starttls"
    #: Log in (AUTH) when set; the password comes from ``password_env``.
    username: str | None = None
    password_env: str | None = None
    #: The From header (``from`` in the file), e.g. ``"Shop <news@example.com>"``.
    sender: str = Field(alias="from")
    #: Envelope sender (MAIL FROM, where bounces go); defaults to the From address.
    #: ``{send_key_hash}`` is replaced per message for VERP, e.g. ``bounce+{send_key_hash}@example.com``.
    envelope_from: str | None = None
    #: Socket timeout for connect and every SMTP command.
    timeout: Duration = timedelta(seconds=30)
    recipient: RecipientField = "email"
    #: Right-hand side of Message-ID; defaults to the From address's domain.
    message_id_domain: str | None = None
    #: One-click unsubscribe URL (RFC 8058: must be https), ``{token}`` = signed per-recipient token.
    unsubscribe_url: str | None = None
    #: Optional mailto address for List-Unsubscribe; the token goes in the subject.
    unsubscribe_mailto: str | None = None
    #: Environment variable holding the HMAC key that signs unsubscribe tokens.
    unsubscribe_secret_env: str | None = None
    #: Verify the server's certificate (turn off only for a test relay with a self-signed one).
    verify_tls: bool = True

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("port"):
            security = data.get("security", "starttls")
            if security in DEFAULT_PORTS:
                data = {**data, "port": DEFAULT_PORTS[security]}
        return data

    @field_validator("sender")
    @classmethod
    def _address(cls, value: str) -> str:
        _, address = parseaddr(value)
        if "@" not in address:
            raise ValueError(f"from must be an email address, e.g. 'Shop <news@example.com>', not {value!r}")
        return value

    @field_validator("unsubscribe_url")
    @classmethod
    def _https_with_token(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if any(ch.isspace() for ch in value) or any(ch in value for ch in "<>,"):
            raise ValueError("unsubscribe_url must not contain spaces, '<', '>' or ','")
        if not value.startswith("https://"):
            raise ValueError("unsubscribe_url must be an https:// URL (RFC 8058 one-click)")
        if "{token}" not in value:
            raise ValueError("unsubscribe_url must contain {token}, e.g. 'https://u.example.com/u/{token}'")
        return value

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _plain_address(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith("mailto:") or "@" not in value or any(c in value for c in "<>,?") or any(
            c.isspace() for c in value
        ):
            raise ValueError("unsubscribe_mailto is a bare address, e.g. 'unsubscribe@example.com'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SmtpChannelConfig:
        if (self.unsubscribe_url or self.unsubscribe_mailto) and not self.unsubscribe_secret_env:
            raise ValueError("unsubscribe_url/unsubscribe_mailto need unsubscribe_secret_env (the token's HMAC key)")
        if self.password_env and not self.username:
            raise ValueError("password_env is set but username is not")
        return self

    @property
    def from_address(self) -> str:
        """The bare address of ``from``."""
        return parseaddr(self.sender)[1]

    @property
    def id_domain(self) -> str:
        """The domain used in Message-ID."""
        return self.message_id_domain or self.from_address.rpartition("@")[2] or "localhost"
