"""The scheduler refreshes the recommendations once per ``[recommendations] cron`` slot
(claimed like the loyalty job, so two ticks in one slot refresh once), and never while
they are off or their cron is empty; on SQLite and PostgreSQL, with pinned times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from campaigns.project.loading import parse_config
from campaigns.recommendations.refresh import RECOMMENDATIONS_RUN
from campaigns.store.models import CampaignRun, Recommendation
from tests.campaigns.conftest import engine  # noqa: F401 (the fixture: SQLite, then PostgreSQL)
from tests.campaigns.recommendations.shop import Shop, planted
from workers.jobs.broker import make_broker
from workers.jobs.scheduler import tick

#: 04:00 in Shanghai on 12 March 2026 (the default ``[recommendations] cron`` slot), in UTC.
SLOT = datetime(2026, 3, 11, 20, 0, tzinfo=UTC)


def config_for(tmp_path: Path, lines: str = "enabled = true"):
    return parse_config(f'[profiles]\ncron = ""\n[recommendations]\nmin_support = 3\n{lines}\n', base=tmp_path)


def runs(engine: sa.Engine) -> list[tuple[datetime, str, int]]:  # noqa: F811
    with engine.connect() as conn:
        return [(row.scheduled_at, row.status, row.planned_count) for row in conn.execute(
            sa.select(CampaignRun).where(CampaignRun.campaign == RECOMMENDATIONS_RUN)
            .order_by(CampaignRun.scheduled_at))]


def test_the_refresh_runs_once_per_slot(tmp_path, engine):  # noqa: F811
    config = config_for(tmp_path)
    broker = make_broker(config.broker)
    shop = Shop(engine)
    planted(shop)

    first = tick(config=config, engine=engine, broker=broker, now=SLOT + timedelta(seconds=20))
    second = tick(config=config, engine=engine, broker=broker, now=SLOT + timedelta(minutes=40))
    assert first.recommendations is not None and second.recommendations is None
    assert first.recommendations.as_of == SLOT + timedelta(seconds=20) and first.recommendations.customers == 29
    assert shop.recommended("x1")[0] == ("B", "co_purchase", "A")
    assert runs(engine) == [(SLOT, "planned", 29)]

    day_two = [tick(config=config, engine=engine, broker=broker, now=SLOT + timedelta(days=1, seconds=s))
               .recommendations for s in (5, 35)]
    assert day_two[0] is not None and day_two[1] is None
    assert [at for at, _, _ in runs(engine)] == [SLOT, SLOT + timedelta(days=1)]
    broker.close()


def test_off_or_without_a_cron_it_never_runs(tmp_path, engine):  # noqa: F811
    planted(Shop(engine))
    for lines in ("enabled = false", 'enabled = true\ncron = ""'):
        config = config_for(tmp_path, lines)
        broker = make_broker(config.broker)
        assert tick(config=config, engine=engine, broker=broker, now=SLOT + timedelta(seconds=20)).recommendations \
            is None
        broker.close()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Recommendation.__table__)).scalar_one() == 0
    assert runs(engine) == []
