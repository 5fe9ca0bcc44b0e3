"""Loading the project: ``config.toml`` validated into :class:`~campaigns.config.schema.AppConfig`
and cross-checked against the segments it defines and the templates it names.

:func:`load_config` reports every problem at once, each with file, line and key path
(:class:`~campaigns.errors.ConfigError`). Relative paths are resolved against the config
file's folder. This sits at the top of the domain, not in :mod:`campaigns.config`,
because the cross-checks use the audience language and the renderer, which themselves
read the config's vocabulary.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from campaigns.audience.segments import validate_segments
from campaigns.config.channels import OutboxChannelConfig, WebhookChannelConfig
from campaigns.config.feedback import feedback_issues
from campaigns.config.keys import MIN_SECRET_LENGTH, installation_secret
from campaigns.config.replies import replies_issues
from campaigns.config.runtime import BROKER_URL_ENV, DATABASE_URL_ENV, BrokerConfig
from campaigns.config.schema import AppConfig
from campaigns.config.secretvalues import pasted_secret_issues, read_secret
from campaigns.config.tomlguard import shape_problem
from campaigns.config.tomlpos import KeyLines
from campaigns.errors import ConfigError, ConfigIssue
from campaigns.sending.rendering import template_parts


def format_location(loc: tuple[str | int, ...]) -> str:
    """A key path as written in the file: ``("campaigns", 0, "steps")`` is ``campaigns[0].steps``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _clean_loc(raw: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Turn a pydantic error location into the key path as written in the file.

    Pydantic adds entries that are not keys (the tag of a discriminated union, validator
    names); they are dropped. A missing or unknown key ends the path: it is what to fix.
    """
    path: list[str | int] = []
    node = raw
    for part in loc:
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        elif isinstance(node, dict) and isinstance(part, str) and part != node.get("kind"):
            path.append(part)
            break
    return tuple(path)


#: Key names that look like an inline secret; the error says where secrets belong.
_SECRET_WORDS = ("secret", "password", "token", "api_key", "apikey", "access_key", "auth")


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(error["loc"][-1]) if error.get("loc") else ""
        if any(word in key.lower() for word in _SECRET_WORDS) and not key.endswith("_env"):
            return ("unknown key; secrets are never written in the file: put it in an environment "
                    f"variable and name that variable with {key}_env")
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _reference_issues(raw: dict[str, Any], base: Path) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Cross-key checks that pydantic cannot express per field; run on the raw data so they
    are reported even when other keys failed validation."""
    yield from validate_segments(raw)
    yield from pasted_secret_issues(raw)
    yield from replies_issues(raw)
    yield from feedback_issues(raw)
    channels = raw.get("channels") if isinstance(raw.get("channels"), dict) else {}
    templates = raw.get("templates") if isinstance(raw.get("templates"), dict) else {}
    template_dir = base / str(templates.get("dir", "templates"))
    limits = raw.get("rate_limits") if isinstance(raw.get("rate_limits"), dict) else {}
    for name in limits:
        if name not in channels:
            yield ("rate_limits", name), f"rate limit for unknown channel {name!r}"
    seen: dict[str, int] = {}
    campaigns = raw.get("campaigns") if isinstance(raw.get("campaigns"), list) else []
    for index, campaign in enumerate(campaigns):
        if not isinstance(campaign, dict):
            continue
        name = campaign.get("name")
        if isinstance(name, str):
            if name in seen:
                yield ("campaigns", index, "name"), f"duplicate campaign name {name!r} (first defined as campaigns[{seen[name]}])"
            else:
                seen[name] = index
        yield from _channel_issues(campaign, index, channels)
        yield from _template_issues(campaign, index, template_dir)


def _channel_issues(campaign: dict[str, Any], index: int,
                    channels: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """The channels campaign ``index`` names: defined, and able to carry its purpose."""
    for position, channel in enumerate(campaign.get("channels") or []):
        if isinstance(channel, str) and channel not in channels:
            known = ", ".join(sorted(channels)) or "none defined"
            yield ("campaigns", index, "channels", position), f"unknown channel {channel!r} (defined: {known})"
        elif isinstance(channel, str) and _smtp_without_unsubscribe(channels.get(channel)) and (
            campaign.get("purpose", "marketing") == "marketing"
        ):
            yield (("campaigns", index, "channels", position),
                   f"channel {channel!r} has no unsubscribe_url: marketing email must carry a one-click "
                   "unsubscribe (RFC 8058); set unsubscribe_url and unsubscribe_secret_env on the channel")
        elif isinstance(channel, str) and _refuses_marketing_raw(channels.get(channel)) and (
            campaign.get("purpose", "marketing") == "marketing"
        ):
            yield (("campaigns", index, "channels", position),
                   f"channel {channel!r} sends WeChat template/subscribe messages, which are for service "
                   "notices only: a marketing campaign cannot use it (set purpose = \"transactional\" "
                   "for a service notice)")


def _template_issues(campaign: dict[str, Any], index: int,
                     template_dir: Path) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """The templates of campaign ``index``'s steps and variants: each has its files."""
    for step_index, step in enumerate(campaign.get("steps") or []):
        if not isinstance(step, dict):
            continue
        named: list[tuple[tuple[str | int, ...], Any]] = [
            (("campaigns", index, "steps", step_index, "template"), step.get("template"))
        ]
        variants = step.get("variants") if isinstance(step.get("variants"), list) else []
        named += [
            (("campaigns", index, "steps", step_index, "variants", v, "template"), variant.get("template"))
            for v, variant in enumerate(variants) if isinstance(variant, dict)
        ]
        for key, template in named:
            if isinstance(template, str) and not template_parts(template_dir, template):
                yield (
                    key,
                    f"template {template!r} not found: expected files such as "
                    f"{template_dir / template}.txt.j2 or .json.j2",
                )


def _smtp_without_unsubscribe(channel: Any) -> bool:
    return isinstance(channel, dict) and channel.get("kind") == "smtp" and not channel.get("unsubscribe_url")


def _refuses_marketing_raw(channel: Any) -> bool:
    """:func:`campaigns.config.options.wechat.refuses_marketing` on the raw TOML table."""
    return (
        isinstance(channel, dict)
        and channel.get("kind") == "wechat_oa"
        and channel.get("message_type", "template") in ("template", "subscribe")
    )


def secret_warnings(config: AppConfig) -> list[str]:
    """Problems that do not stop loading but will stop a send (unset secret variables)."""
    warnings = []
    for name, channel in config.channels.items():
        for key, value in channel.model_dump(by_alias=False).items():
            if key == "secret_env" and isinstance(channel, WebhookChannelConfig):
                continue  # an error in nurture check (campaigns.project.check): webhooks are never sent unsigned
            if key.endswith("_env") and isinstance(value, str) and value and not os.environ.get(value):
                warnings.append(f"channels.{name}.{key}: environment variable {value} is not set")
    for name, staff in config.staff_channels.items():
        for key, value in staff.model_dump(by_alias=False).items():
            if key == "secret_env" and staff.kind == "webhook":
                continue  # an error in nurture check, as for the webhook channels
            if key.endswith("_env") and isinstance(value, str) and value and not os.environ.get(value):
                warnings.append(f"staff_channels.{name}.{key}: environment variable {value} is not set: alerts to "
                                "this channel wait in the queue until it is")
    # The same test the code that needs the secret applies, so the warning cannot disagree.
    if installation_secret(config) is None:
        secret_env = config.security.secret_env
        problem = f"shorter than {MIN_SECRET_LENGTH} characters" if read_secret(secret_env) else "not set"
        warnings.append(f"security.secret_env: environment variable {secret_env} is {problem}: nurture forget "
                        "and POST /bounces refuse, and VERP senders are not used, until it is")
        generating = [c.name for c in config.campaigns if c.coupon is not None and c.coupon.generated]
        if generating:
            warnings.append(f"security.secret_env: {', '.join(generating)} generate(s) coupon codes, which are keyed "
                            f"with {secret_env}: without it the campaign pauses at its first message")
        if config.loyalty.enabled and config.loyalty.referrals.enabled:
            warnings.append(f"security.secret_env: referral codes are keyed with {secret_env}: without it none is "
                            "issued, and a message showing referral.code to a customer who has none fails to render")
    return warnings


def parse_config(text: str, *, file: str = "config.toml", base: Path | None = None) -> AppConfig:
    """Validate TOML ``text``; raises :class:`ConfigError` listing every problem."""
    base = base or Path(".")
    # Bounded work first: tomllib is quadratic in a dotted key's parts and recursive in nesting.
    shape = shape_problem(text)
    if shape is not None:
        raise ConfigError([ConfigIssue(file, shape[0], "", shape[1])])
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        if line is None:
            # Before Python 3.14 the position is only in the message: "... (at line 3, column 7)".
            match = re.search(r"at line (\d+)", str(exc))
            line = int(match.group(1)) if match else None
        raise ConfigError([ConfigIssue(file, line, "", f"TOML syntax error: {exc}")]) from None

    lines = KeyLines(text)
    found: list[tuple[tuple[str | int, ...], str]] = []
    config: AppConfig | None = None
    try:
        config = AppConfig.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            found.append((_clean_loc(raw, tuple(error["loc"])), _message(error)))
    found.extend(_reference_issues(raw, base))
    if found:
        issues = sorted(
            {ConfigIssue(file, lines.line_of(loc), format_location(loc), message) for loc, message in found},
            key=lambda issue: (issue.line or 0, issue.key_path, issue.message),
        )
        raise ConfigError(issues)
    assert config is not None
    return _resolve_paths(config, base)


def _resolve_paths(config: AppConfig, base: Path) -> AppConfig:
    channels = {
        name: channel.model_copy(update={"dir": base / channel.dir})
        if isinstance(channel, OutboxChannelConfig) and not channel.dir.is_absolute()
        else channel
        for name, channel in config.channels.items()
    }
    templates = config.templates
    if not templates.dir.is_absolute():
        templates = templates.model_copy(update={"dir": base / templates.dir})
    database = config.database
    # A relative SQLite path in the file is relative to the file; in the environment, to
    # the working directory, as a shell user would expect.
    url = os.environ.get(DATABASE_URL_ENV) or database.url
    url_base = Path.cwd() if os.environ.get(DATABASE_URL_ENV) else base
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        url = "sqlite:///" + str(url_base / url[len("sqlite:///") :])
    broker = config.broker
    if os.environ.get(BROKER_URL_ENV):
        try:
            broker = BrokerConfig.model_validate({**broker.model_dump(), "url": os.environ[BROKER_URL_ENV]})
        except ValidationError as exc:
            raise ConfigError(
                [ConfigIssue(BROKER_URL_ENV, None, "", _message(e)) for e in exc.errors()]
            ) from None
    return config.model_copy(
        update={
            "channels": channels,
            "templates": templates,
            "database": database.model_copy(update={"url": url}),
            "broker": broker,
        }
    )


def load_config(path: str | os.PathLike[str]) -> AppConfig:
    """Read and validate the config file at ``path``.

    Raises:
        ConfigError: the file is missing, not TOML, or invalid; every issue is listed.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(str(file), None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(file), None, "", f"cannot read: {exc}")]) from None
    config = parse_config(text, file=str(file), base=file.resolve().parent)
    return config.model_copy(update={"source": file.resolve()})
