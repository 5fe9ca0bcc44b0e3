"""The date-trigger tests, run again on a real PostgreSQL."""

from __future__ import annotations

import pytest

from campaigns.store.db import make_engine
from tests.campaigns.sending import test_planning as on_sqlite

pytestmark = pytest.mark.integration


@pytest.fixture
def sqlite_url(postgres_url):
    """Shadow the SQLite URL: the imported tests run against PostgreSQL."""
    return postgres_url


@pytest.fixture
def sqlite_engine(postgres_url):
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


test_birthdays_fire_at_nine_local_once_per_year = on_sqlite.test_birthdays_fire_at_nine_local_once_per_year
test_points_expiry_reminder_fires_seven_days_before_the_date = (
    on_sqlite.test_points_expiry_reminder_fires_seven_days_before_the_date
)
test_first_order_anniversary = on_sqlite.test_first_order_anniversary
