"""Recommended products in messages, on SQLite and PostgreSQL: ``recommendations(n,
category)`` renders a batch's products from a bounded number of queries, best first, out
of stock left out; the products a sent message showed are written to
``recommendation_sent`` once, however often the send is tried or recorded; a step with
``min_recommendations`` is skipped, saying why, for a customer with too few; a test send
shows them and records none.

The recommendation rows are written here by hand (the refresh has its own tests);
``now`` is pinned."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.project.loading import load_config
from campaigns.sending.ledger import record, run_batches
from campaigns.sending.messages import Outcome, SendResult
from campaigns.sending.planning import claim_run, plan_run
from campaigns.sending.recommendationcontext import MessageRecommendations, ShownProduct
from campaigns.sending.testsends import create_test_delivery
from campaigns.store.models import Customer, Delivery, Product, Recommendation, RecommendationSent
from tests.conftest import TICK_NOW, seed_customers
from workers.jobs.delivery import deliver_batch
from workers.jobs.runtime import Runtime

#: Two from the top of the list, then up to three books: a book may be shown by both.
TEMPLATE = ("{% for p in recommendations(2) %}{{ p.name }} {{ p.price }} {{ p.url }};{% endfor %}"
            "|{% for p in recommendations(3, category='books') %}{{ p.sku }},{% endfor %}")
#: sku -> (name, category, price, in stock)
CATALOGUE = {
    "BOOK-1": ("Baby's first year", "books", 39.0, True),
    "BOOK-2": ("Sleep, little one", "books", 25.5, True),
    "BOOK-3": ("Out of print", "books", 12.0, False),
    "TOY-1": ("Rattle", "toys", 9.9, True),
    "TOY-2": ("Sold-out blocks", "toys", 19.0, False),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


class World:
    """Five customers, the catalogue above and a cron campaign of one step, planned;
    every text the outbox channel was handed, by customer external id."""

    def __init__(self, tmp_path: Path, database_url: str, *, min_recommendations: int = 0,
                 template: str = TEMPLATE) -> None:
        (tmp_path / "templates" / "r").mkdir(parents=True)
        (tmp_path / "templates" / "r" / "m.txt.j2").write_text(template)
        (tmp_path / "config.toml").write_text(f"""
[database]
url = "{database_url}"
[worker]
lease = "100s"
send_concurrency = 2
[compliance]
quiet_hours = ""
[compliance.frequency]
enabled = false
[channels.mail]
kind = "outbox"
dir = "out"
[[campaigns]]
name = "c"
trigger = {{ cron = "0 10 * * *" }}
channels = ["mail"]
[[campaigns.steps]]
template = "r/m"
min_recommendations = {min_recommendations}
""")
        self.config = load_config(tmp_path / "config.toml")
        self.now = TICK_NOW
        self.runtime = Runtime.from_config(self.config, clock=lambda: self.now)
        self.engine = self.runtime.engine
        seed_customers(self.engine, count=5, now=TICK_NOW)
        with self.engine.begin() as conn:
            self.ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
            conn.execute(sa.insert(Product.__table__), [
                {"sku": sku, "name": name, "category": category, "price": price, "url": f"https://shop.example/{sku}",
                 "image_url": f"https://img.example/{sku}.jpg", "in_stock": in_stock, "attributes": {},
                 "created_at": TICK_NOW, "updated_at": TICK_NOW}
                for sku, (name, category, price, in_stock) in CATALOGUE.items()])
        self.sent: dict[str, str] = {}
        channel = self.runtime.channels["mail"]
        self.real_send = channel.send
        self.answers: list[SendResult] = []  # what the provider answers first, then ok

        def send(message):  # type: ignore[no-untyped-def]
            if self.answers:
                return self.answers.pop(0)
            self.sent[message.customer_external_id] = message.parts["txt"]
            return self.real_send(message)

        channel.send = send

    def recommend(self, external_id: str, skus: list[str], reason: str = "co_purchase") -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.insert(Recommendation.__table__), [
                {"customer_id": self.ids[external_id], "rank": rank, "sku": sku, "category": CATALOGUE[sku][1],
                 "score": 1.0 / rank, "reason": reason, "computed_at": TICK_NOW}
                for rank, sku in enumerate(skus, start=1)])

    def plan(self) -> list[int]:
        run_id = claim_run(self.engine, "c", TICK_NOW, lease=timedelta(minutes=5))
        plan_run(self.engine, self.config, self.config.campaigns[0], run_id=run_id, scheduled_at=TICK_NOW,
                 now=TICK_NOW)
        return [i for batch in run_batches(self.engine, run_id, now=TICK_NOW, batch_size=100) for i in batch]

    def shown(self) -> list[tuple[str, str, str | None, int, str]]:
        """(customer, sku, category, position, reason) of every recommendation_sent row."""
        rs = RecommendationSent.__table__
        with self.engine.connect() as conn:
            return sorted(conn.execute(
                sa.select(Customer.external_id, rs.c.sku, rs.c.category, rs.c.position, rs.c.reason)
                .join(Customer, Customer.id == rs.c.customer_id)).all())


@pytest.fixture
def world_factory(tmp_path, database_url):
    made: list[World] = []

    def make(**kwargs) -> World:  # type: ignore[no-untyped-def]
        made.append(World(tmp_path, database_url, **kwargs))
        return made[-1]

    yield make
    for world in made:
        world.runtime.close()


def test_a_batch_renders_each_customers_products_best_first_from_two_queries(world_factory, monkeypatch):
    # The job records its outcomes once, at the end (not every 50 ms), so its writes can be counted.
    monkeypatch.setattr("workers.jobs.delivery.RECORD_INTERVAL_S", 3600.0)
    world = world_factory()
    world.recommend("C00000", ["TOY-2", "BOOK-2", "TOY-1", "BOOK-3", "BOOK-1"])  # two of them sold out
    world.recommend("C00001", ["BOOK-1"], reason="popular")
    world.recommend("C00002", ["TOY-1", "TOY-2"], reason="category")
    ids = world.plan()
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(world.engine, "before_cursor_execute", seen)
    try:
        assert deliver_batch(world.runtime, ids).counts == {"ok": 5}
    finally:
        sa.event.remove(world.engine, "before_cursor_execute", seen)

    assert world.sent == {
        # Sold-out TOY-2 and BOOK-3 are left out; the rest keep their order.
        "C00000": "Sleep, little one 25.5 https://shop.example/BOOK-2;Rattle 9.9 https://shop.example/TOY-1;"
                  "|BOOK-2,BOOK-1,",
        "C00001": "Baby's first year 39.0 https://shop.example/BOOK-1;|BOOK-1,",
        "C00002": "Rattle 9.9 https://shop.example/TOY-1;|",
        "C00003": "|",
        "C00004": "|",
    }
    # Five messages, one read of their ranked products, one of those products (stock now)
    # and one write of what they showed.
    reads = [s for s in statements if "FROM recommendation" in s or "FROM product" in s]
    writes = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO RECOMMENDATION_SENT")]
    assert len(reads) == 2 and "FROM recommendation" in reads[0] and "FROM product" in reads[1]
    assert len(writes) == 1


def test_only_the_products_a_message_showed_are_recorded_once_with_their_place(world_factory):
    world = world_factory()
    world.recommend("C00000", ["TOY-2", "BOOK-2", "TOY-1", "BOOK-3", "BOOK-1"])
    world.recommend("C00001", ["BOOK-1", "BOOK-2", "TOY-1"], reason="popular")
    ids = world.plan()
    # The first try of every message fails and is retried: it showed nothing to anyone.
    world.answers = [SendResult(Outcome.RETRY, error="busy")] * 5
    assert deliver_batch(world.runtime, ids).counts == {"retry": 5}
    assert world.shown() == []

    world.now = TICK_NOW + timedelta(hours=1)
    assert deliver_batch(world.runtime, ids).counts == {"ok": 5}
    expected = [
        # C00000: BOOK-2 and TOY-1 from the first call, BOOK-1 from the books call (BOOK-2
        # again keeps its place); C00001: BOOK-1, BOOK-2 (both calls); TOY-1 never shown.
        ("C00000", "BOOK-1", "books", 3, "co_purchase"),
        ("C00000", "BOOK-2", "books", 1, "co_purchase"),
        ("C00000", "TOY-1", "toys", 2, "co_purchase"),
        ("C00001", "BOOK-1", "books", 1, "popular"),
        ("C00001", "BOOK-2", "books", 2, "popular"),
    ]
    assert world.shown() == expected
    with world.engine.connect() as conn:
        sent_at = set(conn.execute(sa.select(RecommendationSent.sent_at)).scalars())
        delivered = set(conn.execute(sa.select(Delivery.sent_at).where(Delivery.status == "sent")).scalars())
    assert sent_at <= delivered and len(sent_at) >= 1

    # Sent rows are not claimed again, and a batch recorded twice (a lost claim, a send
    # that went again after a crash) writes no second row.
    assert deliver_batch(world.runtime, ids).counts == {}
    from campaigns.sending.ledger import Claim, ClaimedDelivery

    delivery = ClaimedDelivery(id=ids[0], send_key="k", campaign="c", step=0, channel="mail", template="r/m",
                               attempts=1, customer={"id": world.ids["C00000"]}, stats={})
    again = {ids[0]: [ShownProduct(sku="BOOK-2", category="books", position=1, reason="co_purchase")]}
    record(world.engine, world.config, Claim(token="other", deliveries=[delivery]),
           {ids[0]: (SendResult.ok(), world.now, world.now)}, now=world.now, shown=again)
    assert world.shown() == expected


def test_a_step_requiring_recommendations_skips_a_customer_with_too_few_saying_why(world_factory):
    world = world_factory(min_recommendations=2)
    world.recommend("C00000", ["BOOK-1", "BOOK-2"])
    world.recommend("C00001", ["BOOK-1", "BOOK-3"])  # BOOK-3 is sold out: one left
    ids = world.plan()

    assert deliver_batch(world.runtime, ids).counts == {"ok": 1, "skipped": 4}
    with world.engine.connect() as conn:
        rows = dict(conn.execute(sa.select(Customer.external_id, Delivery.last_error)
                                 .join(Customer, Customer.id == Delivery.customer_id)
                                 .where(Delivery.status == "skipped")).all())
    assert set(world.sent) == {"C00000"}
    assert rows["C00001"] == ("the step needs at least 2 recommended product(s) in stock (min_recommendations) "
                              "and the customer has 1")
    assert rows["C00004"].endswith("and the customer has none")
    assert {sku for _, sku, *_ in world.shown()} == {"BOOK-1", "BOOK-2"}


def test_a_test_send_shows_the_products_and_records_none(world_factory):
    world = world_factory(min_recommendations=1)
    world.recommend("C00003", ["TOY-1", "BOOK-1"])
    test = create_test_delivery(world.engine, world.config, campaign="c", channel="mail", customer="C00003",
                                now=TICK_NOW)
    assert deliver_batch(world.runtime, [test.id], test_to="me@shop.example").counts == {"ok": 1}
    assert world.sent == {"C00003": "Rattle 9.9 https://shop.example/TOY-1;Baby's first year 39.0 "
                                    "https://shop.example/BOOK-1;|BOOK-1,"}
    assert world.shown() == []


def test_the_function_takes_a_count_and_a_category_and_refuses_anything_else():
    products = [{"sku": s, "category": c, "reason": "popular"} for s, c in (("A", "x"), ("B", "y"), ("C", "x"))]
    pick = MessageRecommendations(products)
    assert [p["sku"] for p in pick(category="x")] == ["A", "C"]
    assert [p["sku"] for p in pick(1)] == ["A"]
    assert pick(0) == [] and pick(3, category="none") == []
    assert [(s.sku, s.position) for s in pick.shown] == [("A", 1), ("C", 2)]
    for wrong in (-1, 51, 2.5, True, "3"):
        with pytest.raises(ValueError, match="whole number"):
            pick(wrong)
    with pytest.raises(ValueError, match="category name"):
        pick(2, category=3)


def test_a_preview_shows_the_products_and_says_when_the_step_would_be_skipped(world_factory):
    from campaigns.sending.preview import preview_message

    world = world_factory(min_recommendations=2)
    world.recommend("C00000", ["TOY-2", "BOOK-2", "TOY-1"])
    world.recommend("C00001", ["BOOK-1", "TOY-2"])  # one in stock

    shown = preview_message(world.engine, world.config, world.runtime.renderer, campaign="c", customer="C00000",
                            now=TICK_NOW)
    assert shown.parts["txt"] == ("Sleep, little one 25.5 https://shop.example/BOOK-2;Rattle 9.9 "
                                  "https://shop.example/TOY-1;|BOOK-2,")
    assert shown.recommendations == [{"sku": "BOOK-2", "category": "books", "position": 1, "reason": "co_purchase"},
                                     {"sku": "TOY-1", "category": "toys", "position": 2, "reason": "co_purchase"}]
    assert "no_recommendations" not in {b.code for b in shown.blockers}
    short = preview_message(world.engine, world.config, world.runtime.renderer, campaign="c", customer="C00001",
                            now=TICK_NOW)
    [blocker] = [b for b in short.blockers if b.code == "no_recommendations"]
    assert blocker.message.endswith("and the customer has 1") and short.verdict == "no_send"
    assert world.shown() == []  # a preview records nothing


def test_every_part_can_show_them_and_html_escapes_them(tmp_path):
    from campaigns.sending.rendering import TemplateRenderer, build_context

    parts = {
        "subject": "{{ recommendations(1)[0].name }} and more",
        "txt": "{% for p in recommendations(2) %}{{ p.name }} {{ p.url }}\n{% endfor %}",
        "html": "{% for p in recommendations(2) %}<a href=\"{{ p.url }}\">{{ p.name }}</a>{% endfor %}",
        "sms": "{% for p in recommendations(1, category='toys') %}{{ p.name }}: {{ p.url }}{% endfor %}",
        "json": '{"products": {{ recommendations(3) | tojson }}}',
    }
    (tmp_path / "r").mkdir()
    for part, text in parts.items():
        (tmp_path / "r" / f"all.{part}.j2").write_text(text)
    products = [{"sku": sku, "name": name, "category": category, "price": 1.0, "url": f"https://s.example/{sku}",
                 "image_url": None, "reason": "popular", "because_sku": None}
                for sku, name, category in (("B", "Books & more", "books"), ("T", "Top", "toys"),
                                            ("U", "Up", "toys"))]
    shown = MessageRecommendations(products)
    context = build_context(customer={"id": 1, "name": "Li"}, stats={}, campaign="c", step=0, send_key="k",
                            now=TICK_NOW, recommendations=shown)
    rendered = TemplateRenderer(directory=tmp_path).render("r/all", context)
    assert rendered["subject"] == "Books & more and more"
    assert rendered["html"] == ('<a href="https://s.example/B">Books &amp; more</a>'
                                '<a href="https://s.example/T">Top</a>')
    assert rendered["sms"] == "Top: https://s.example/T"
    assert [p["sku"] for p in json.loads(rendered["json"])["products"]] == ["B", "T", "U"]
    assert [(p.sku, p.position) for p in shown.shown] == [("B", 1), ("T", 2), ("U", 3)]


def test_a_batch_whose_template_shows_none_reads_none(world_factory):
    world = world_factory(template="Hi {{ customer.first_name }}")
    world.recommend("C00000", ["BOOK-1"])
    ids = world.plan()
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(world.engine, "before_cursor_execute", seen)
    try:
        assert deliver_batch(world.runtime, ids).counts == {"ok": 5}
    finally:
        sa.event.remove(world.engine, "before_cursor_execute", seen)
    assert not [s for s in statements if "recommendation" in s]
    assert world.shown() == []


def test_the_renderer_says_which_templates_may_call_the_function(tmp_path):
    from campaigns.sending.rendering import TemplateRenderer

    for name, text in {"plain": "Hi {{ customer.name }}", "calls": "{{ recommendations(1) | length }}",
                       "includes": "{% include 'other.txt.j2' %}", "broken": "{% for %}"}.items():
        (tmp_path / f"{name}.txt.j2").write_text(text)
    (tmp_path / "calls.subject.j2").write_text("Hello")
    renderer = TemplateRenderer(directory=tmp_path)
    assert {name: renderer.references(name, "recommendations") for name in ("plain", "calls", "includes", "broken")
            } == {"plain": False, "calls": True, "includes": True, "broken": True}
