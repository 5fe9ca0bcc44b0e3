"""Five customers whose facts are spelled out here, so every audience filter's answer is
known by hand; shared by the selection, planning and ledger tests.

Import the ``people`` fixture into a test module to use it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.project.loading import parse_config
from campaigns.store.models import Consent, Customer, Order
from tests.conftest import grant_consent

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def config_with(audience: str, channels: str = '["mail", "text"]'):
    return parse_config(f"""
[channels.mail]
kind = "outbox"
recipient = "email"
[channels.text]
kind = "outbox"
recipient = "phone"
[[campaigns]]
name = "c"
trigger = {{ cron = "0 10 * * *" }}
channels = {channels}
[campaigns.audience]
{audience}
[[campaigns.steps]]
template = "t"
[[campaigns.steps]]
template = "t2"
delay = "2d"
""", base=_templates())


def _templates():
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp())
    (base / "templates").mkdir()
    (base / "templates" / "t.txt.j2").write_text("hi")
    (base / "templates" / "t2.txt.j2").write_text("again")
    return base


@pytest.fixture
def people(sqlite_engine):
    """Five customers whose facts are spelled out here, so each filter's answer is known."""
    rows = [
        # external_id, channel, email, phone, orders (days ago, amount, purchase channel), attributes
        ("ann", "store", "ann@x.cn", None, [(200, 50.0, "store"), (150, 70.0, "store")], {"vip": True, "city": "Wuhan"}),
        ("bob", "ecommerce", None, "+8613800000001", [(10, 30.0, "ecommerce")], {"vip": False}),
        ("cat", "social", "cat@x.cn", "+8613800000002", [], {}),
        ("dan", "direct", "dan@x.cn", None, [(400, 900.0, "direct"), (100, 1000.0, "store"), (95, 5.0, "direct")], {"tier": 3}),
        ("eve", "store", None, None, [(300, 10.0, "store")], {}),
    ]
    with sqlite_engine.begin() as conn:
        for external_id, channel, email, phone, orders, attributes in rows:
            customer_id = conn.execute(sa.insert(Customer.__table__).values(
                external_id=external_id, acquisition_channel=channel, email=email, phone=phone,
                attributes=attributes, created_at=NOW - timedelta(days=500), updated_at=NOW,
            ).returning(Customer.__table__.c.id)).scalar_one()
            for index, (days, amount, purchase_channel) in enumerate(orders):
                conn.execute(sa.insert(Order.__table__).values(
                    order_id=f"{external_id}-{index}", customer_id=customer_id,
                    ordered_at=NOW - timedelta(days=days), amount=amount, channel=purchase_channel))
    grant_consent(sqlite_engine, now=NOW)
    return sqlite_engine


def withdraw(conn, customer_id: int, family: str) -> None:
    conn.execute(sa.update(Consent.__table__)
                 .where(Consent.customer_id == customer_id, Consent.channel == family)
                 .values(status="withdrawn", source="test", recorded_at=NOW))
