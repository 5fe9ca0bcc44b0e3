"""``nurture check``: everything that can be wrong before the first send, all at once.

Loading the config already validates keys, types, cron expressions, time zones, channel
references, template files and duplicate names. On top of that, every template a
campaign uses is compiled and rendered with StrictUndefined, as the worker renders it,
for each customer archetype the campaign can reach (:mod:`campaigns.project.archetypes`:
a typical customer, no orders, one order, many orders, no name, no attributes, no email,
no phone, no WeChat), so an undefined variable or a value that is None for some customers
is an error here rather than a failed send. A marketing email whose body has neither
``unsubscribe_url`` nor ``preferences_url`` is a warning, and so are links that would be
empty (:mod:`campaigns.sending.bodylinks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from campaigns.config.channels import WebhookChannelConfig
from campaigns.config.schema import AppConfig
from campaigns.config.secretvalues import read_secret, webhook_channel_key
from campaigns.config.staff import StaffWebhookConfig
from campaigns.config.tomlpos import KeyLines
from campaigns.errors import ConfigError, ConfigIssue
from campaigns.project.loading import format_location, load_config, secret_warnings
from campaigns.project.rendercheck import template_findings
from campaigns.sending.policy import earliest_in_windows


@dataclass
class CheckResult:
    """Errors (which fail the check) and warnings (which do not)."""

    config: AppConfig | None
    issues: list[ConfigIssue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    templates_rendered: int = 0

    @property
    def ok(self) -> bool:
        """True when there is no error."""
        return not self.issues


def check_config_file(path: str | Path) -> CheckResult:
    """Validate the config at ``path`` and render every template it uses."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        return CheckResult(config=None, issues=exc.issues)
    result = CheckResult(config=config, warnings=secret_warnings(config))
    lines = KeyLines(Path(path).read_text(encoding="utf-8"))
    result.issues.extend(_webhook_secret_issues(config, path, lines))
    for c_index in range(len(config.campaigns)):
        result.issues.extend(_window_issues(config, c_index, path, lines))
    templates = template_findings(config, path, lines)
    result.issues.extend(templates.errors)
    result.warnings.extend(templates.warnings)
    result.templates_rendered = templates.rendered
    return result


def _webhook_secret_issues(config: AppConfig, path: str | Path, lines: KeyLines) -> list[ConfigIssue]:
    """A webhook channel without a usable signing secret halts every send (nothing goes out
    unsigned): an error here, not a warning. The secret itself is never shown."""
    issues = []
    for name, channel in config.channels.items():
        if not isinstance(channel, WebhookChannelConfig):
            continue
        try:
            webhook_channel_key(channel.secret_env, read_secret(channel.secret_env))
            continue
        except ValueError as exc:
            message = str(exc)
        key = ("channels", name, "secret_env") if channel.secret_env else ("channels", name)
        issues.append(ConfigIssue(str(path), lines.line_of(key), format_location(key), message))
    # Staff webhooks are signed the same way; without a usable secret their alerts wait.
    for name, staff in config.staff_channels.items():
        if not isinstance(staff, StaffWebhookConfig):
            continue
        try:
            webhook_channel_key(staff.secret_env, read_secret(staff.secret_env))
            continue
        except ValueError as exc:
            message = str(exc).replace("sends through this channel halt", "alerts to this staff channel wait queued")
        key = ("staff_channels", name, "secret_env") if staff.secret_env else ("staff_channels", name)
        issues.append(ConfigIssue(str(path), lines.line_of(key), format_location(key), message))
    return issues


def _window_issues(config: AppConfig, c_index: int, path: str | Path, lines: KeyLines) -> list[ConfigIssue]:
    """A send window that never overlaps the campaign's other windows (or, for marketing,
    the hours outside quiet hours) would hold its messages forever: say so now."""
    campaign = config.campaigns[c_index]
    base: list[tuple[time, time]] = []
    if campaign.purpose == "marketing" and config.compliance.marketing_window:
        base.append(config.compliance.marketing_window)
    if campaign.window_bounds:
        base.append(campaign.window_bounds)
    checks: list[tuple[tuple[str | int, ...], list[tuple[time, time]]]] = [(("campaigns", c_index, "window"), base)]
    for s_index, step in enumerate(campaign.steps):
        if step.window_bounds:
            checks.append((("campaigns", c_index, "steps", s_index, "window"), [*base, step.window_bounds]))
    issues = []
    for key, windows in checks:
        if len(windows) > 1 and not windows_overlap(windows):
            issues.append(ConfigIssue(
                str(path), lines.line_of(key), format_location(key),
                "this send window never overlaps the campaign's other windows"
                + (f" or the marketing hours outside quiet hours {config.compliance.quiet_hours}"
                   if campaign.purpose == "marketing" and config.compliance.quiet_hours else "")
                + ": its messages would wait forever"))
    return issues


def windows_overlap(windows: list[tuple[time, time]]) -> bool:
    """True when some moment of the day lies inside every window (the send-time policy's
    own search, from an arbitrary day: only the local times matter)."""
    return earliest_in_windows(_ANY_DAY, _UTC, windows) is not None


_ANY_DAY = datetime(2026, 1, 1, tzinfo=UTC)
_UTC = ZoneInfo("UTC")
