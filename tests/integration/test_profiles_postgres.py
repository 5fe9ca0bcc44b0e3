"""The hand-computed profile tests, run again on a real PostgreSQL."""

from __future__ import annotations

import pytest

from campaigns.store.db import make_engine
from tests.campaigns.customers import test_profiles as on_sqlite

pytestmark = pytest.mark.integration


@pytest.fixture
def sqlite_engine(postgres_url):
    """Shadow the SQLite engine: the imported tests run against PostgreSQL."""
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


shop = on_sqlite.shop
test_scores_segments_and_stages_match_the_hand_computed_table = (
    on_sqlite.test_scores_segments_and_stages_match_the_hand_computed_table
)
test_order_facts_days_and_stage_dates = on_sqlite.test_order_facts_days_and_stage_dates
test_an_as_of_given_in_another_time_zone_is_the_same_instant = (
    on_sqlite.test_an_as_of_given_in_another_time_zone_is_the_same_instant
)
test_equal_measures_get_equal_scores_whatever_the_customer_ids = (
    on_sqlite.test_equal_measures_get_equal_scores_whatever_the_customer_ids
)
test_entries_are_recorded_once_per_change = on_sqlite.test_entries_are_recorded_once_per_change
