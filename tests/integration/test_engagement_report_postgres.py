"""The hand-computed engagement report tests, run again on a real PostgreSQL (portable
SQL; PostgreSQL's SUM of integers is a Decimal, which the report must hand out as int)."""

from __future__ import annotations

import pytest

from campaigns.store.db import make_engine
from tests.campaigns.reports import test_campaign as on_sqlite

pytestmark = pytest.mark.integration


@pytest.fixture
def sqlite_engine(postgres_url):
    """Shadow the SQLite engine: the imported tests (and the CLI's config) use PostgreSQL."""
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


project = on_sqlite.project
_no_operator_environment = on_sqlite._no_operator_environment
test_engagement_counts_each_message_once_per_kind_per_group_channel_and_campaign = (
    on_sqlite.test_engagement_counts_each_message_once_per_kind_per_group_channel_and_campaign
)
test_channel_rows_carry_outcomes_and_attributed_revenue = on_sqlite.test_channel_rows_carry_outcomes_and_attributed_revenue
test_the_other_campaign_sees_only_its_own_responses = on_sqlite.test_the_other_campaign_sees_only_its_own_responses
test_a_campaign_without_messages_has_zero_counts_and_no_rates = (
    on_sqlite.test_a_campaign_without_messages_has_zero_counts_and_no_rates
)
test_the_report_reads_the_campaigns_messages_and_their_responses_in_one_statement = (
    on_sqlite.test_the_report_reads_the_campaigns_messages_and_their_responses_in_one_statement
)
test_report_campaign_json_carries_the_engagement = on_sqlite.test_report_campaign_json_carries_the_engagement
test_report_campaign_table_shows_engagement_by_group_and_by_channel = (
    on_sqlite.test_report_campaign_table_shows_engagement_by_group_and_by_channel
)
