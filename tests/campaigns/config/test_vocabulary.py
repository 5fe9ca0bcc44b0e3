"""Tests for campaigns.config.vocabulary: the words every layer shares, defined once."""

from __future__ import annotations

from typing import get_args

from campaigns.config.base import RecipientField
from campaigns.config.vocabulary import (
    CHANNEL_FAMILIES,
    CHANNEL_FAMILY,
    DEFAULT_RFM_RULES,
    FAMILY_FIELDS,
)


def test_every_channel_family_has_one_address_field_and_back() -> None:
    assert tuple(FAMILY_FIELDS) == CHANNEL_FAMILIES
    assert {CHANNEL_FAMILY[field]: field for field in CHANNEL_FAMILY} == FAMILY_FIELDS
    # Every address field is a field a channel can send to; external_id has no family.
    assert set(CHANNEL_FAMILY) == set(get_args(RecipientField)) - {"external_id"}


def test_the_default_rfm_table_labels_every_score_exactly_once_by_its_first_match() -> None:
    def label(r: int, f: int, m: int) -> str | None:
        for rule in DEFAULT_RFM_RULES:
            if rule.r[0] <= r <= rule.r[1] and rule.f[0] <= f <= rule.f[1] and rule.m[0] <= m <= rule.m[1]:
                return rule.name
        return None

    labels = {label(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}
    assert None not in labels
    assert labels == {rule.name for rule in DEFAULT_RFM_RULES}
