"""``nurture check``: everything that can be wrong before the first send, all at once.

Loading the config already validates keys, types, cron expressions, time zones, channel
references, template files and duplicate names. On top of that, every template a
campaign uses is compiled and rendered against a sample customer with StrictUndefined,
so an undefined variable is an error here rather than a failed send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from campaigns.config import AppConfig, load_config, secret_warnings
from campaigns.errors import ConfigError, ConfigIssue, RenderError
from campaigns.rendering import TemplateRenderer, sample_context
from campaigns.tomlpos import KeyLines


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
    renderer = TemplateRenderer(directory=config.templates.dir)
    context = sample_context()
    for c_index, campaign in enumerate(config.campaigns):
        for s_index, step in enumerate(campaign.steps):
            key = ("campaigns", c_index, "steps", s_index, "template")
            try:
                for template in step.templates:
                    renderer.render(template, context)
                    result.templates_rendered += 1
            except RenderError as exc:
                result.issues.append(
                    ConfigIssue(
                        str(path),
                        lines.line_of(key),
                        f"campaigns[{c_index}].steps[{s_index}].template",
                        f"template does not render against a sample customer: {exc}",
                    )
                )
    return result
