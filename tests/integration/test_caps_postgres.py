"""Which message a frequency cap keeps (tests/campaigns/sending/test_caps.py) on a real
PostgreSQL: the slots query reads queued, sending and sent rows with a paused-campaign
subquery, and timestamps come back as timestamptz."""

from __future__ import annotations

import pytest

from tests.campaigns.sending import test_caps as on_sqlite

pytestmark = pytest.mark.integration


@pytest.fixture
def sqlite_url(postgres_url):
    """Shadow the SQLite database: the imported tests run on PostgreSQL."""
    return postgres_url


competing = on_sqlite.competing
test_the_highest_priority_takes_the_slot_and_the_others_follow_a_day_apart_in_order = (
    on_sqlite.test_the_highest_priority_takes_the_slot_and_the_others_follow_a_day_apart_in_order)
test_equal_priority_the_message_due_earlier_wins = on_sqlite.test_equal_priority_the_message_due_earlier_wins
test_a_higher_priority_message_that_is_then_dropped_holds_nothing_back = (
    on_sqlite.test_a_higher_priority_message_that_is_then_dropped_holds_nothing_back)
test_a_paused_campaigns_waiting_message_takes_no_slot = on_sqlite.test_a_paused_campaigns_waiting_message_takes_no_slot
test_a_lower_priority_message_another_job_holds_does_not_hold_back_a_higher_one = (
    on_sqlite.test_a_lower_priority_message_another_job_holds_does_not_hold_back_a_higher_one)
