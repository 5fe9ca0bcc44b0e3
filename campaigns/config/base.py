"""Building blocks shared by every configuration model: the strict base, durations and the
fields a channel can address (here so that the section modules, the channel option modules
and :mod:`campaigns.config.schema`, which gathers them, do not import each other)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

from campaigns.config.durations import parse_duration

#: Customer fields a channel can address a message to.
RecipientField = Literal["email", "phone", "wechat_openid", "external_id"]

#: A duration written as "30s", "2d", "1d12h" or a number of seconds.
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class StrictModel(BaseModel):
    """Strict, immutable: unknown keys are errors, values never change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)
