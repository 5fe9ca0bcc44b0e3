"""The words config.toml, the audience language and the ledger share, defined once:
lifecycle stages, the default RFM segment table, and the channel families (what consent,
suppression and frequency caps are kept per, and which customer field holds each one's
address)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BeforeValidator, Field, field_validator

from campaigns.config.base import StrictModel

#: A lifecycle stage name.
Stage = Literal["prospect", "new", "active", "at_risk", "churned"]
#: Lifecycle stages, in the order they are evaluated.
STAGES: tuple[str, ...] = get_args(Stage)


#: A channel family: what consent, suppression and frequency caps are kept per.
Family = Literal["email", "sms", "wechat"]
#: The channel families, in the order they are shown.
CHANNEL_FAMILIES: tuple[str, ...] = get_args(Family)
#: The customer field holding each family's address.
FAMILY_FIELDS: dict[str, str] = {"email": "email", "sms": "phone", "wechat": "wechat_openid"}
#: Which family a recipient field belongs to (``external_id`` belongs to none).
CHANNEL_FAMILY: dict[str, str] = {field: family for family, field in FAMILY_FIELDS.items()}


#: An inclusive [low, high] range of RFM scores (TOML writes it as a list).
ScoreRange = Annotated[tuple[int, int], BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)]


class RfmRule(StrictModel):
    """One row of the RFM segment table: a name and inclusive score ranges."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=32)
    r: ScoreRange = (1, 5)
    f: ScoreRange = (1, 5)
    m: ScoreRange = (1, 5)

    @field_validator("r", "f", "m")
    @classmethod
    def _range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not (1 <= low <= high <= 5):
            raise ValueError(f"score range must be [low, high] within 1..5, got {list(value)}")
        return value


#: The default RFM table, evaluated top to bottom (first match wins). Designed so every
#: one of the 125 score combinations gets exactly one label and every label is reachable;
#: docs/segments.md shows the grid.
DEFAULT_RFM_RULES = (
    RfmRule(name="champions", r=(4, 5), f=(4, 5), m=(4, 5)),
    RfmRule(name="loyal", r=(3, 5), f=(4, 5)),
    RfmRule(name="cant_lose", r=(1, 1), f=(4, 5)),
    RfmRule(name="at_risk", r=(1, 2), f=(3, 5)),
    RfmRule(name="potential_loyalist", r=(4, 5), f=(2, 3)),
    RfmRule(name="new", r=(5, 5), f=(1, 1)),
    RfmRule(name="promising", r=(4, 4), f=(1, 1)),
    RfmRule(name="need_attention", r=(3, 3), f=(2, 3)),
    RfmRule(name="about_to_sleep", r=(3, 3), f=(1, 1)),
    RfmRule(name="hibernating", r=(2, 2), f=(1, 2)),
    RfmRule(name="lost", r=(1, 1), f=(1, 2)),
)
