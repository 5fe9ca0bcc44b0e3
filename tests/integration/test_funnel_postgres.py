"""The hand-computed funnel tests, run again on a real PostgreSQL (portable SQL; a real
boolean ``holdout`` column, and SUMs that arrive as Decimal and must be handed out as int)."""

from __future__ import annotations

import pytest

from campaigns.store.db import make_engine
from tests.campaigns.reports import test_funnel as on_sqlite

pytestmark = pytest.mark.integration


@pytest.fixture
def sqlite_engine(postgres_url):
    """Shadow the SQLite engine: the imported tests run on PostgreSQL."""
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


seeded = on_sqlite.seeded
test_every_stage_counts_treated_enrolments_once = on_sqlite.test_every_stage_counts_treated_enrolments_once
test_enrolled_and_converted_are_the_reports_own_figures = on_sqlite.test_enrolled_and_converted_are_the_reports_own_figures
test_the_other_campaign_has_its_own_funnel = on_sqlite.test_the_other_campaign_has_its_own_funnel
test_a_campaign_nobody_entered_has_a_funnel_of_zeros = on_sqlite.test_a_campaign_nobody_entered_has_a_funnel_of_zeros
