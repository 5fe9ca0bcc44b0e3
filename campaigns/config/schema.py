"""``config.toml`` as one typed, frozen model: :class:`AppConfig`, the root that gathers
every section (each defined in the module named for it).

Loading the file, with every problem reported at once and the cross-checks against the
segments and templates, is :mod:`campaigns.project.loading`. Secrets never appear in
the file: a channel names the environment variable that holds each one
(``secret_env = "HOOK_SECRET"``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from campaigns.config.base import StrictModel
from campaigns.config.campaigns import CampaignConfig, TemplatesConfig
from campaigns.config.channels import ChannelConfig
from campaigns.config.compliance import ComplianceConfig
from campaigns.config.feedback import FeedbackConfig
from campaigns.config.identity import IdentityConfig
from campaigns.config.loyalty import LoyaltyConfig
from campaigns.config.profiles import LifecycleConfig, ProfilesConfig, RfmConfig
from campaigns.config.predictions import PredictionsConfig
from campaigns.config.recommendations import RecommendationsConfig
from campaigns.config.replies import RepliesConfig
from campaigns.config.runtime import (
    ApiConfig,
    BrokerConfig,
    DatabaseConfig,
    RateLimitConfig,
    SchedulerConfig,
    SecurityConfig,
    WorkerConfig,
)
from campaigns.config.staff import StaffChannelConfig
from campaigns.errors import UnknownCampaignError


class AppConfig(StrictModel):
    """The whole of ``config.toml``."""

    database: DatabaseConfig = DatabaseConfig()
    broker: BrokerConfig = BrokerConfig()
    worker: WorkerConfig = WorkerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    templates: TemplatesConfig = TemplatesConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    rfm: RfmConfig = RfmConfig()
    profiles: ProfilesConfig = ProfilesConfig()
    api: ApiConfig = ApiConfig()
    security: SecurityConfig = SecurityConfig()
    compliance: ComplianceConfig = ComplianceConfig()
    identity: IdentityConfig = IdentityConfig()
    loyalty: LoyaltyConfig = LoyaltyConfig()
    #: Survey bands, the time to answer a detractor, where alerts go (docs/feedback.md).
    feedback: FeedbackConfig = FeedbackConfig()
    #: Product recommendations: the refresh, its schedule and exclusions (docs/recommendations.md).
    recommendations: RecommendationsConfig = RecommendationsConfig()
    #: Purchase predictions: BG/NBD and Gamma-Gamma fits, the scores' horizons (docs/predictions.md).
    predictions: PredictionsConfig = PredictionsConfig()
    #: How inbound replies are classified, where complaints alert (docs/feedback.md).
    replies: RepliesConfig = RepliesConfig()
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    #: Where alerts for staff go (detractors, complaints): WeCom robots or webhooks.
    staff_channels: dict[str, StaffChannelConfig] = Field(default_factory=dict)
    #: Per-channel send rate limits, e.g. ``sms = { limit = 5000, per = "1s" }``.
    rate_limits: dict[str, RateLimitConfig] = Field(default_factory=dict)
    #: Named audience expressions, usable by campaigns and the CLI.
    segments: dict[str, str] = Field(default_factory=dict)
    campaigns: list[CampaignConfig] = Field(default_factory=list)
    #: The file this was loaded from (not a TOML key).
    source: Path | None = Field(default=None, exclude=True)

    def campaign(self, name: str) -> CampaignConfig:
        """The campaign called ``name``; :class:`UnknownCampaignError` (a KeyError) listing
        the campaigns if there is none."""
        for campaign in self.campaigns:
            if campaign.name == name:
                return campaign
        raise UnknownCampaignError(name, known=[campaign.name for campaign in self.campaigns])
