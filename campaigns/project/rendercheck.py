"""``nurture check``'s template findings: every step's templates rendered for every
customer archetype its campaign can reach, and the unsubscribe links of marketing email.

Each template is rendered as the worker renders it (:class:`TemplateRenderer`,
:func:`build_context`) with the real campaign name and step, for each archetype of
:mod:`campaigns.project.archetypes`. A failure is an error naming the template's file and
line, the archetypes it fails for and the step's line in config.toml. When the campaign's
audience expression, segment, step condition or stage trigger may rule those archetypes
out (check cannot evaluate them without a database), the failure is a warning instead;
a failure for the typical customer is always an error.

A marketing campaign reaching email must give every recipient a way out in the body, not
only in the ``List-Unsubscribe`` header some clients hide: a template whose text and HTML
parts show neither ``{{ unsubscribe_url }}`` nor ``{{ preferences_url }}`` is a warning.
The links are rendered as stand-in URLs and looked for in the output, so a link behind a
condition that holds (``{% if unsubscribe_url %}``) counts and one in a comment does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from campaigns.config.campaigns import CampaignConfig
from campaigns.config.schema import AppConfig
from campaigns.config.tomlpos import KeyLines
from campaigns.config.vocabulary import CHANNEL_FAMILY
from campaigns.customers.loyalty.coupons import sample_coupon
from campaigns.customers.loyalty.referral_codes import sample_referral
from campaigns.errors import ConfigIssue, RenderError
from campaigns.feedback.surveys import step_survey
from campaigns.project.archetypes import TYPICAL, Archetype, narrowed_by, reachable
from campaigns.project.loading import format_location
from campaigns.sending.bodylinks import BodyLinks, missing_links_reason
from campaigns.sending.recommendationcontext import (
    PRODUCT_FIELDS,
    MessageRecommendations,
    SampleRecommendations,
)
from campaigns.sending.rendering import TemplateRenderer, build_context

#: The send key check renders with (a real one is a 64-character digest).
CHECK_SEND_KEY = "0" * 64
#: Where the stand-in links point when ``[api] public_url`` is unset.
STAND_IN_BASE = "https://nurture.invalid"
#: What check seals its stand-in score links with (never a real secret: the links are
#: only rendered, and name no message).
CHECK_SURVEY_SECRET = "nurture-check-stand-in"
#: The body parts of an email (the subject is not a body).
BODY_PARTS = ("txt", "html")


@dataclass
class TemplateFindings:
    """What rendering the templates found: errors, warnings (both located in config.toml)
    and how many step templates rendered for every archetype they can reach."""

    errors: list[ConfigIssue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rendered: int = 0


def stand_in_links(config: AppConfig) -> BodyLinks:
    """The links check renders with: under ``public_url`` when set, so a template that
    slices or compares them sees their real shape; distinct, so each can be found."""
    base = (config.api.public_url or STAND_IN_BASE).rstrip("/")
    return BodyLinks(unsubscribe_url=f"{base}/u/check-unsubscribe-token",
                     preferences_url=f"{base}/u/check-preferences-token")


def template_findings(config: AppConfig, path: str | Path, lines: KeyLines) -> TemplateFindings:
    """Render every step template of ``config`` for its campaign's archetypes."""
    findings = TemplateFindings()
    renderer = TemplateRenderer.from_config(config.templates)
    links = stand_in_links(config)
    now = datetime.now(UTC)
    templates_with_links: set[str] = set()
    templates_recommending: set[str] = set()
    for c_index, campaign in enumerate(config.campaigns):
        archetypes = reachable(config, campaign)
        reaches_email = any(CHANNEL_FAMILY.get(config.channels[name].recipient) == "email"
                            for name in campaign.channels if name in config.channels)
        for s_index, step in enumerate(campaign.steps):
            key = ("campaigns", c_index, "steps", s_index, "template")

            def issue(message: str, key: tuple[str | int, ...] = key) -> ConfigIssue:
                return ConfigIssue(str(path), lines.line_of(key), format_location(key), message)

            no_links = missing_links_reason(config.api)
            if step.survey and reaches_email and no_links:
                # What the unsubscribe links need, the score links need too.
                survey_key = ("campaigns", c_index, "steps", s_index, "survey")
                findings.warnings.append(str(ConfigIssue(
                    str(path), lines.line_of(survey_key), format_location(survey_key),
                    f"the score links (survey.links) of this step are empty in every message "
                    f"({no_links.split(': unsubscribe_url', 1)[0]}): email recipients can only answer by replying")))

            for template in step.templates:
                failures: dict[str, list[Archetype]] = {}
                typical: dict[str, str] | None = None
                recommends = False
                for archetype in archetypes:
                    # Sample products of any category asked for: every attribute a template
                    # reads of a recommended product is rendered.
                    products = SampleRecommendations()
                    try:
                        parts = renderer.render(template, _context(config, campaign, s_index, archetype, now, links,
                                                                   products))
                    except RenderError as exc:
                        failures.setdefault(str(exc), []).append(archetype)
                        continue
                    finally:
                        recommends = recommends or products.called
                    if archetype.name == TYPICAL:
                        typical = parts
                if recommends:
                    templates_recommending.add(template)
                if recommends and not step.min_recommendations and archetypes:
                    # Most customers have no recommendation before the first refresh, and
                    # some never do: such a message must render too (or the step require some).
                    first = next((a for a in archetypes if a.name == TYPICAL), archetypes[0])
                    try:
                        renderer.render(template, _context(config, campaign, s_index, first, now, links,
                                                           MessageRecommendations(())))
                    except RenderError as exc:
                        findings.errors.append(issue(
                            f"template does not render for a customer without recommended products: {exc} (test "
                            "{% if recommendations() %} first, or give the step min_recommendations = 1 so that "
                            "such customers are skipped)"))
                for error, failed in failures.items():
                    message, fatal = _failure(campaign, step_index=s_index, error=error, failed=failed,
                                              recommends=recommends)
                    if fatal:
                        findings.errors.append(issue(message))
                    else:
                        findings.warnings.append(str(issue(message)))
                if not any(_is_fatal(campaign, s_index, failed) for failed in failures.values()):
                    findings.rendered += 1
                if typical is None:
                    continue
                if any(url in text for text in typical.values() for url in (links.unsubscribe_url,
                                                                            links.preferences_url)):
                    templates_with_links.add(template)
                if campaign.purpose == "marketing" and reaches_email and not _body_links(typical, links):
                    findings.warnings.append(str(issue(
                        f"marketing email template {template!r} has no unsubscribe or preference link in its "
                        "body: add {{ unsubscribe_url }} or {{ preferences_url }} to its text or HTML part "
                        "(the List-Unsubscribe header alone is not shown by every mail client)")))
    if templates_recommending and not config.recommendations.enabled:
        findings.warnings.append(
            f"{len(templates_recommending)} template(s) show recommendations() but [recommendations] enabled is "
            "false: nothing refreshes them on a schedule, so customers have only what `nurture recommend refresh` "
            "last wrote (none before it first runs)")
    reason = missing_links_reason(config.api)
    if templates_with_links and reason:
        findings.warnings.append(f"{reason} ({len(templates_with_links)} template(s) use them)")
    return findings


def _context(config: AppConfig, campaign: CampaignConfig, step_index: int, archetype: Archetype, now: datetime,
             links: BodyLinks, products: MessageRecommendations) -> dict[str, Any]:
    """What the worker would give the template for ``archetype``, with sample coupon,
    referral and ``products``."""
    return build_context(customer=archetype.customer, stats=archetype.stats, campaign=campaign.name,
                         step=step_index, send_key=CHECK_SEND_KEY, now=now, links=links,
                         coupon=sample_coupon(campaign, step=step_index), loyalty=archetype.loyalty,
                         referral=sample_referral(config), recommendations=products,
                         # Score links of the real shape under the stand-in base; the send
                         # key is no message's, so they answer nothing.
                         survey=step_survey(config, campaign.name, step_index, send_key=CHECK_SEND_KEY,
                                            public_url=config.api.public_url or STAND_IN_BASE,
                                            secret=CHECK_SURVEY_SECRET))


def _body_links(parts: dict[str, str], links: BodyLinks) -> bool:
    """Whether a text or HTML part shows one of the links."""
    return any(url in parts.get(part, "") for part in BODY_PARTS
               for url in (links.unsubscribe_url, links.preferences_url))


def _is_fatal(campaign: CampaignConfig, step_index: int, failed: list[Archetype]) -> bool:
    """A failure is an error unless only archetypes the campaign's expressions may rule out fail."""
    return any(a.name == TYPICAL for a in failed) or not narrowed_by(campaign, campaign.steps[step_index])


def _failure(campaign: CampaignConfig, *, step_index: int, error: str, failed: list[Archetype],
             recommends: bool = False) -> tuple[str, bool]:
    """The message of one render failure, and whether it is an error."""
    # A template that fails for the typical customer fails for nearly everyone: listing
    # the other archetypes would only bury the error.
    if any(a.name == TYPICAL for a in failed):
        who = "a typical customer"
    else:
        who = failed[0].described if len(failed) == 1 else "customers with " + ", ".join(a.name for a in failed)
    message = f"template does not render for {who}: {error}"
    if "'None' has no attribute" in error or "NoneType" in error:
        message += (" (the value is None for such a customer: test it first, e.g. "
                    "{% if stats.last_order_at %}...{% endif %}, or give a default with `or`)")
    if recommends and "'dict object' has no attribute" in error:
        message += f" (a recommended product has {', '.join(PRODUCT_FIELDS)})"
    fatal = _is_fatal(campaign, step_index, failed)
    if not fatal:
        narrowed = " and ".join(narrowed_by(campaign, campaign.steps[step_index]))
        message += f"; fine only if {narrowed} rules such customers out"
    return message, fatal
