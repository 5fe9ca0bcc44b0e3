"""Recommended products in ``campaign_report`` (and ``nurture report campaign``), on SQLite
and PostgreSQL, against counts worked out by hand. Campaign ``promo``'s window is 7 days;
messages sent at SENT_AT (cat's second one a day later), the report as of SENT_AT + 5d::

    message   shows (reason)                 clicks                    orders after it
    ann       A co_purchase, B popular       A's link, another link    +2d paid: A x2 at 10, X (not shown) 5
                                                                       +1d refunded: B;  +6d paid: B (after now)
    bob       A co_purchase, C category      C's link (its URL holds   +3d paid: A at 30
                                             a phone-like number: the  +8d paid: C (past the 7 days)
                                             click keeps it masked)
    cat  (1)  B popular                      -                         +2d paid: B at 15 (after both messages)
    cat  (2)  B popular, sent +1d            -
    test send A co_purchase (not counted)    A's link                  (ann's orders)
    other     A (campaign other)             A's link

    shown 6 in 4 messages; clicked 2 (ann's A, bob's C); bought 4 (ann's A, bob's A, cat's
    B twice); orders 3; revenue 20 + 30 + 15 = 65 (cat's B once, X not at all).
    by reason (shown/clicked/bought): category 1/1/0, co_purchase 2/1/2, popular 3/0/2.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from campaigns.customers.masking import mask_text
from campaigns.project.loading import load_config
from campaigns.reports.campaign import campaign_report
from campaigns.store.db import make_engine
from campaigns.store.models import (
    Customer,
    Delivery,
    Order,
    OrderItem,
    Product,
    RecommendationSent,
    Response,
)
from workers.cli.main import app

SENT_AT = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
NOW = SENT_AT + timedelta(days=5)
URLS = {"A": "https://shop.example/p/A", "B": "https://shop.example/p/B",
        "C": "https://shop.example/p/13812345678", "X": "https://shop.example/p/X"}

CONFIG_TOML = """
[database]
url = "{url}"
[channels.mail]
kind = "outbox"
recipient = "email"
dir = "out"

[[campaigns]]
name = "promo"
trigger = {{ manual = true }}
channels = ["mail"]
goal = {{ event = "order", within = "7d" }}
  [[campaigns.steps]]
  template = "t"
  [[campaigns.steps]]
  template = "t"
  delay = "1d"

[[campaigns]]
name = "other"
trigger = {{ manual = true }}
channels = ["mail"]
  [[campaigns.steps]]
  template = "t"
"""

EXPECTED = {
    "messages": 4, "shown": 6, "clicked": 2, "bought": 4, "click_rate": 2 / 6, "buy_rate": 4 / 6,
    "orders": 3, "revenue": 65.0,
    "by_reason": [
        {"reason": "category", "shown": 1, "clicked": 1, "bought": 0},
        {"reason": "co_purchase", "shown": 2, "clicked": 1, "bought": 2},
        {"reason": "popular", "shown": 3, "clicked": 0, "bought": 2},
    ],
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


def build(engine: sa.Engine) -> None:
    """The messages, clicks and orders of the module docstring."""
    with engine.begin() as conn:
        conn.execute(sa.insert(Product.__table__), [
            {"sku": sku, "name": sku, "category": "c", "price": 1, "url": url, "attributes": {},
             "created_at": SENT_AT, "updated_at": SENT_AT} for sku, url in URLS.items()])
        people = {name: conn.execute(sa.insert(Customer.__table__).values(
            external_id=name, email=f"{name}@x.cn", attributes={}).returning(Customer.__table__.c.id)).scalar_one()
            for name in ("ann", "bob", "cat")}
        refs = iter(range(1, 100))

        def message(key: str, who: str, shows: list[tuple[str, str]], *, campaign: str = "promo", step: int = 0,
                    sent_at: datetime = SENT_AT, is_test: bool = False, clicks: tuple[str, ...] = ()) -> None:
            delivery = conn.execute(sa.insert(Delivery.__table__).values(
                send_key=key, campaign=campaign, step=step, customer_id=people[who], channel="mail", template="t",
                status="sent", due_at=sent_at, dispatch_after=sent_at, sent_at=sent_at, is_test=is_test,
            ).returning(Delivery.__table__.c.id)).scalar_one()
            conn.execute(sa.insert(RecommendationSent.__table__), [
                {"delivery_id": delivery, "customer_id": people[who], "campaign": campaign, "sku": sku,
                 "category": "c", "position": position, "reason": reason, "sent_at": sent_at}
                for position, (sku, reason) in enumerate(shows, start=1)])
            for url in clicks:
                # As workers/http/links.py records a click: the URL masked.
                conn.execute(sa.insert(Response.__table__).values(
                    delivery_id=delivery, customer_id=people[who], kind="clicked", provider="web",
                    provider_ref=f"click-{next(refs)}", occurred_at=sent_at + timedelta(hours=1),
                    payload={"url": mask_text(url)}))

        message("ann", "ann", [("A", "co_purchase"), ("B", "popular")],
                clicks=(URLS["A"], "https://shop.example/sale"))
        message("bob", "bob", [("A", "co_purchase"), ("C", "category")], clicks=(URLS["C"],))
        message("cat1", "cat", [("B", "popular")])
        message("cat2", "cat", [("B", "popular")], step=1, sent_at=SENT_AT + timedelta(days=1))
        message("test", "ann", [("A", "co_purchase")], is_test=True, clicks=(URLS["A"],))
        message("other", "ann", [("A", "co_purchase")], campaign="other", clicks=(URLS["A"],))

        def order(ref: str, who: str, days: int, items: list[tuple[str, int, float]], status: str = "paid") -> None:
            order_pk = conn.execute(sa.insert(Order.__table__).values(
                order_id=ref, customer_id=people[who], ordered_at=SENT_AT + timedelta(days=days), status=status,
                amount=sum(quantity * price for _, quantity, price in items)).returning(Order.__table__.c.id)
            ).scalar_one()
            conn.execute(sa.insert(OrderItem.__table__), [
                {"order_pk": order_pk, "sku": sku, "quantity": quantity, "price": price}
                for sku, quantity, price in items])

        order("ann-1", "ann", 2, [("A", 2, 10.0), ("X", 1, 5.0)])
        order("ann-2", "ann", 1, [("B", 1, 8.0)], status="refunded")
        order("ann-3", "ann", 6, [("B", 1, 8.0)])
        order("bob-1", "bob", 3, [("A", 1, 30.0)])
        order("bob-2", "bob", 8, [("C", 1, 12.0)])
        order("cat-1", "cat", 2, [("B", 1, 15.0)])


@pytest.fixture
def project(tmp_path: Path, database_url: str):
    engine = make_engine(database_url)
    build(engine)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.txt.j2").write_text("hi")
    path = tmp_path / "config.toml"
    path.write_text(CONFIG_TOML.format(url=database_url))
    yield engine, load_config(path), path
    engine.dispose()


def test_shown_clicked_and_bought_recommended_products_are_counted_as_worked_out(project):
    engine, config, _ = project
    assert campaign_report(engine, config, "promo", now=NOW)["recommendations"] == EXPECTED
    # The other campaign's message: shown and clicked, bought by nobody within 14 days of it
    # (ann's +2d order holds A: bought).
    other = campaign_report(engine, config, "other", now=NOW)["recommendations"]
    assert (other["shown"], other["clicked"], other["bought"], other["revenue"]) == (1, 1, 1, 20.0)


def test_a_campaign_that_showed_none_reports_zeros(project):
    engine, config, _ = project
    with engine.begin() as conn:
        conn.execute(sa.delete(RecommendationSent.__table__))
    assert campaign_report(engine, config, "promo", now=NOW)["recommendations"] == {
        "messages": 0, "shown": 0, "clicked": 0, "bought": 0, "click_rate": None, "buy_rate": None,
        "orders": 0, "revenue": 0.0, "by_reason": []}


def test_the_cli_shows_them_in_text_and_json(project):
    _, _, path = project
    runner = CliRunner()
    args = ["report", "campaign", "promo", "--config", str(path), "--now", NOW.isoformat()]
    data = json.loads(runner.invoke(app, [*args, "--json"]).output)
    assert data["recommendations"] == EXPECTED
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.replace("│", " ").split())  # the summary panel wraps long lines
    assert "recommended products 6 shown in 4 messages · 2 clicked (33.3%) · 4 bought (66.7%)" in flat
    assert "bought from them 3 orders · " in flat and "65.00" in flat
    assert "category 1/1/0 · co_purchase 2/1/2 · popular 3/0/2" in flat
