"""The WeChat 48-hour rule's input (campaigns.sending.interactions): which channels need the
customer's last interaction, and when each customer of a batch last interacted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import sqlalchemy as sa

from campaigns.config.schema import AppConfig
from campaigns.sending.interactions import interaction_channels, last_interactions
from campaigns.store.models import Customer, Event

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CONFIG = AppConfig.model_validate({"channels": {
    "care": {"kind": "wechat_oa", "appid": "wx1", "secret_env": "S", "message_type": "customer_service",
             "interaction_events": ["wechat_message"]},
    "notice": {"kind": "wechat_oa", "appid": "wx1", "secret_env": "S", "template_id": "T"},
    "mail": {"kind": "outbox", "recipient": "email"},
}})


def delivery(channel: str, customer_id: int) -> SimpleNamespace:
    return SimpleNamespace(channel=channel, customer={"id": customer_id})


def test_only_customer_service_channels_need_the_last_interaction():
    assert interaction_channels(CONFIG) == {"care"}


def test_the_latest_configured_interaction_per_customer_of_the_batch(sqlite_engine):
    with sqlite_engine.begin() as conn:
        ids = {}
        for name in ("ann", "bob", "cat"):
            ids[name] = conn.execute(sa.insert(Customer.__table__).values(
                external_id=name, created_at=NOW, updated_at=NOW, attributes={},
            ).returning(Customer.__table__.c.id)).scalar_one()
        for index, (name, event, hours_ago) in enumerate((
                ("ann", "wechat_message", 50), ("ann", "wechat_message", 3), ("ann", "wechat_click", 1),
                ("bob", "wechat_click", 2), ("cat", "wechat_message", 5))):
            conn.execute(sa.insert(Event.__table__).values(
                customer_id=ids[name], name=event, occurred_at=NOW - timedelta(hours=hours_ago),
                properties={}, dedupe_key=f"e{index}"))

    with sqlite_engine.connect() as conn:
        found = last_interactions(conn, CONFIG, [delivery("care", ids["ann"]), delivery("care", ids["bob"]),
                                                 delivery("notice", ids["cat"]), delivery("mail", ids["cat"])])
        nothing = last_interactions(conn, CONFIG, [delivery("mail", ids["ann"])])

    # wechat_click is not an interaction on "care"; cat is not sent on it.
    assert {key: value and value.replace(tzinfo=UTC) for key, value in found.items()} == {
        ids["ann"]: NOW - timedelta(hours=3), ids["bob"]: None}
    assert nothing == {}
