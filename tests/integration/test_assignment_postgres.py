"""Holdout independence (tests/campaigns/sending/test_assignment.py) on a real PostgreSQL:
the hash is BIGINT arithmetic that must give the very customers SQLite gives."""

from __future__ import annotations

import pytest

from campaigns.store.db import make_engine
from tests.campaigns.sending import test_assignment as on_sqlite

pytestmark = pytest.mark.integration


@pytest.fixture
def population_engine(postgres_url):
    """Shadow the SQLite engine: the imported tests run on PostgreSQL."""
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


population = on_sqlite.population
test_holdout_membership_is_independent_of_id_order = on_sqlite.test_holdout_membership_is_independent_of_id_order
test_holdout_membership_is_independent_of_signup_order = on_sqlite.test_holdout_membership_is_independent_of_signup_order
test_holdout_share_is_honoured_and_stable_across_runs = on_sqlite.test_holdout_share_is_honoured_and_stable_across_runs
