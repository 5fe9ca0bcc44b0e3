"""Loyalty in campaigns, on SQLite and PostgreSQL: ``tier_entered`` plans once per tier
entry, ``points_expiring`` reminds once per lot (lots expiring together once) however
many ticks see it and never of spent, expired or reversed points, and every message
renders the member's ``loyalty`` variable, a reminder the points of its own lots.

The members are those of tests/campaigns/loyalty_members.py; ``now`` is pinned."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.customers.loyalty.expiry import expire_lots
from campaigns.customers.loyalty.tiers import recompute_tiers
from campaigns.errors import ConfigError
from campaigns.project.loading import load_config, parse_config
from campaigns.sending.planning import plan_entries, plan_points_expiring, reminded_lot
from campaigns.store.models import Customer, Delivery, DeliveryAttempt, Enrollment, PointsLot
from tests.campaigns.loyalty_members import LOYALTY, NOW, add_members, at, lot_id
from tests.conftest import grant_consent, line_of
from workers.jobs.delivery import deliver_batch
from workers.jobs.runtime import Runtime

TEMPLATES = {
    "remind": "{{ loyalty.expiring.points }} points expire on {{ loyalty.expiring.date }}; "
              "balance {{ loyalty.balance }}",
    "gold": "Welcome to {{ loyalty.tier }}: {{ loyalty.tier_benefits | join(', ') }}",
    "news": "{{ loyalty.balance }} points, {{ loyalty.tier }}"
            "{% if loyalty.next_tier %}, {{ loyalty.to_next_tier }} to {{ loyalty.next_tier }}{% endif %}"
            "{% if loyalty.expiring %}, {{ loyalty.expiring.points }} expiring {{ loyalty.expiring.date }}{% endif %}",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


class World:
    """A project with the programme on and one campaign, its runtime (clock pinned), the
    members, and every message text the channel was handed, by send key."""

    def __init__(self, tmp_path: Path, database_url: str, *, trigger: str, reentry: str = "never",
                 steps: int = 1) -> None:
        (tmp_path / "templates" / "l").mkdir(parents=True)
        for name, text in TEMPLATES.items():
            (tmp_path / "templates" / "l" / f"{name}.txt.j2").write_text(text)
        template = ("remind" if "points_expiring" in trigger else "gold" if "tier_entered" in trigger else "news")
        (tmp_path / "config.toml").write_text(f"""
[database]
url = "{database_url}"
[worker]
lease = "100s"
[compliance]
quiet_hours = ""
[compliance.frequency]
enabled = false
[loyalty]
enabled = true
[channels.mail]
kind = "outbox"
dir = "out"
[[campaigns]]
name = "c"
trigger = {trigger}
channels = ["mail"]
reentry = "{reentry}"
[[campaigns.steps]]
template = "l/{template}"
""" + "".join(f"""[[campaigns.steps]]
template = "l/{template}"
delay = "{day}d"
""" for day in range(2, steps + 1)))
        self.config = load_config(tmp_path / "config.toml")
        self.campaign = self.config.campaigns[0]
        self.now = NOW
        self.runtime = Runtime.from_config(self.config, clock=lambda: self.now)
        self.engine = self.runtime.engine
        self.ids = add_members(self.engine)
        grant_consent(self.engine, now=at(-1))
        self.sent: dict[str, str] = {}
        channel = self.runtime.channels["mail"]
        real_send = channel.send

        def send(message):  # type: ignore[no-untyped-def]
            self.sent[message.send_key] = message.parts["txt"]
            return real_send(message)

        channel.send = send

    def remind(self, now) -> int:  # type: ignore[no-untyped-def]
        return plan_points_expiring(self.engine, self.config, self.campaign, now=now)

    def deliver(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            ids = list(conn.execute(sa.select(Delivery.id).where(Delivery.status == "queued")).scalars())
        return deliver_batch(self.runtime, ids).counts

    def enrolled(self) -> list[tuple[str, str]]:
        """(customer, occurrence) of every enrolment, sorted."""
        with self.engine.connect() as conn:
            return sorted(conn.execute(sa.select(Customer.external_id, Enrollment.occurrence)
                                       .join(Customer, Customer.id == Enrollment.customer_id)).all())

    def texts(self) -> dict[str, str]:
        """The text sent to each customer (by name; one message each)."""
        names = {str(customer_id): name for name, customer_id in self.ids.items()}
        return {names[key.split(":")[2]] + (f"/{key.split(':')[3]}" if key.count(":") == 3 else ""): text
                for key, text in self.sent.items()}

    def close(self) -> None:
        self.runtime.close()


@pytest.fixture
def world_factory(tmp_path, database_url):
    made: list[World] = []

    def make(**kwargs) -> World:  # type: ignore[no-untyped-def]
        made.append(World(tmp_path, database_url, **kwargs))
        return made[-1]

    yield make
    for world in made:
        world.close()


# ---------------------------------------------------------------------------------------
# points_expiring


def test_each_lot_is_reminded_once_however_many_ticks_see_it(world_factory):
    world = world_factory(trigger='{ points_expiring = "30d" }')
    lot = {ref: f"lot{lot_id(world.engine, ref)}" for ref in ("A-1", "ann-rv", "B-1", "D-1", "E-1")}

    # Expiring in (NOW, NOW + 30d]: ann's order lot (10 days), bob's (30 days exactly) and
    # eve's two lots expiring together (her spent one has the smaller id: it keys them).
    # bob's share expired at NOW exactly; dan's lot expires one second too late ...
    assert world.remind(NOW) == 3
    assert world.enrolled() == sorted([("ann", lot["A-1"]), ("bob", lot["B-1"]), ("eve", lot["E-1"])])
    assert world.remind(NOW) == 0
    # ... and comes within 30 days a second later.
    assert world.remind(at(0, 1)) == 1
    for later in (NOW + timedelta(minutes=1), at(1), at(5) - timedelta(seconds=1)):
        assert world.remind(later) == 0

    # Ten days on ann's first lot has expired (the daily job emptied it): nothing for it;
    # her review comes within 30 days and is reminded, once.
    expire_lots(world.engine, now=at(10))
    assert world.remind(at(10, 1)) == 1
    assert world.remind(at(11)) == 0
    assert world.enrolled() == sorted([("ann", lot["A-1"]), ("ann", lot["ann-rv"]), ("bob", lot["B-1"]),
                                       ("dan", lot["D-1"]), ("eve", lot["E-1"])])


def test_spent_expired_and_reversed_lots_remind_nobody(world_factory):
    world = world_factory(trigger='{ points_expiring = "30d" }')
    with world.engine.begin() as conn:
        fay, gus = (conn.execute(sa.insert(Customer.__table__).values(
            external_id=name, email=f"{name}@x.cn", created_at=at(-400), updated_at=NOW, attributes={},
        ).returning(Customer.__table__.c.id)).scalar_one() for name in ("fay", "gus"))
        for customer_id, ref, reversed_at in ((fay, "F-1", None), (gus, "G-1", at(-1))):
            conn.execute(sa.insert(PointsLot.__table__).values(
                customer_id=customer_id, source="order", source_ref=ref, rule="purchase", points=100,
                remaining=0, spent=100 if reversed_at is None else 0, kinds=",goods,", earned_at=at(-300),
                expires_at=at(3), reversed_at=reversed_at))
        # ann spent her whole order lot before any reminder was planned.
        conn.execute(sa.update(PointsLot.__table__).where(PointsLot.source_ref == "A-1").values(remaining=0))
    grant_consent(world.engine, now=at(-1))

    assert world.remind(NOW) == 2  # bob and eve only
    assert {name for name, _ in world.enrolled()} == {"bob", "eve"}


def test_a_member_who_joins_the_audience_later_is_reminded_then_with_every_step(world_factory):
    world = world_factory(trigger='{ points_expiring = "30d" }', steps=2)
    with world.engine.begin() as conn:
        hal = conn.execute(sa.insert(Customer.__table__).values(
            external_id="hal", email="hal@x.cn", created_at=at(-400), updated_at=NOW, attributes={},
        ).returning(Customer.__table__.c.id)).scalar_one()
        conn.execute(sa.insert(PointsLot.__table__).values(
            customer_id=hal, source="order", source_ref="H-1", rule="purchase", points=100, remaining=100,
            spent=0, kinds=",goods,", earned_at=at(-300), expires_at=at(3)))

    # hal has no consent yet: the others' groups are enrolled, two deliveries each.
    assert world.remind(NOW) == 3 * 2
    assert "hal" not in {name for name, _ in world.enrolled()}
    assert world.remind(at(0, 1)) == 1 * 2  # dan's lot, now within 30 days

    grant_consent(world.engine, now=at(0, 2))
    assert world.remind(at(0, 3)) == 1 * 2
    assert ("hal", f"lot{lot_id(world.engine, 'H-1')}") in world.enrolled()
    assert world.remind(at(0, 4)) == 0
    with world.engine.connect() as conn:
        steps = conn.execute(sa.select(Delivery.step, sa.func.count()).group_by(Delivery.step)).all()
    assert sorted(steps) == [(0, 5), (1, 5)]


def test_a_reminder_names_its_own_lots_points_and_last_day(world_factory):
    world = world_factory(trigger='{ points_expiring = "45d" }')

    assert world.remind(NOW) == 5
    assert world.deliver() == {"ok": 5}

    texts = {name.split("/")[0] + ("/rv" if name.endswith(f"lot{lot_id(world.engine, 'ann-rv')}") else ""): text
             for name, text in world.texts().items()}
    assert texts == {
        # ann has two reminders: her review's 10 points are named by their own, though her
        # order's 300 expire first and they lie beyond the 30 days loyalty.expiring looks at.
        "ann": "300 points expire on 2026-06-11; balance 310",
        "ann/rv": "10 points expire on 2026-07-11; balance 310",
        "bob": "1000 points expire on 2026-07-01; balance 1000",
        "dan": "80 points expire on 2026-07-01; balance 30",  # his zone is his phone's: Shanghai
        "eve": "20 points expire on 2026-06-06; balance 70",
    }


def test_a_reminder_whose_points_were_spent_since_is_skipped(world_factory):
    world = world_factory(trigger='{ points_expiring = "30d" }')
    assert world.remind(NOW) == 3
    with world.engine.begin() as conn:
        conn.execute(sa.update(PointsLot.__table__).where(PointsLot.source_ref == "eve-rv").values(remaining=0))

    assert world.deliver() == {"ok": 2, "skipped": 1}
    with world.engine.connect() as conn:
        eve = conn.execute(sa.select(Delivery.status, Delivery.last_error)
                           .where(Delivery.customer_id == world.ids["eve"])).one()
    assert tuple(eve) == ("skipped", "the points it reminds of were spent or have expired")
    assert set(world.texts()) == {f"ann/lot{lot_id(world.engine, 'A-1')}", f"bob/lot{lot_id(world.engine, 'B-1')}"}


def test_reminded_lot_reads_only_reminder_occurrences():
    assert reminded_lot("remind:0:17:lot42") == 42
    assert reminded_lot("remind:1:17:lotx") is None
    assert reminded_lot("win_back:0:17:once") is None
    assert reminded_lot("test:remind:0:0123abcd") is None


# ---------------------------------------------------------------------------------------
# tier_entered


def tier_lot(engine: sa.Engine, customer_id: int, ref: str, points: int, *, earned) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(sa.insert(PointsLot.__table__).values(
            customer_id=customer_id, source="order", source_ref=ref, rule="purchase", points=points,
            remaining=points, spent=0, kinds=",goods,", earned_at=earned, expires_at=earned + timedelta(days=365)))


def test_tier_entered_plans_once_per_entry(world_factory):
    world = world_factory(trigger='{ tier_entered = "gold" }', reentry="every_run")
    window = world.config.scheduler.entry_window
    cat, dan = world.ids["cat"], world.ids["dan"]
    tier_lot(world.engine, cat, "C-big", 6000, earned=at(-1))
    tier_lot(world.engine, dan, "D-mid", 1500, earned=at(-1))  # silver: not this campaign's tier

    report = recompute_tiers(world.engine, LOYALTY, now=NOW)
    assert report.entered == {"gold": 1, "silver": 1}
    assert plan_entries(world.engine, world.config, world.campaign, now=NOW + timedelta(minutes=1),
                        window=window) == 1
    for later in (NOW + timedelta(minutes=2), at(1)):
        recompute_tiers(world.engine, LOYALTY, now=later)  # nothing moves: no new entry
        assert plan_entries(world.engine, world.config, world.campaign, now=later, window=window) == 0

    # cat's points are taken back: below gold, then, after the 30 days' grace, down to the
    # lowest tier; back in gold once she earns again: a second entry, a second message.
    with world.engine.begin() as conn:
        conn.execute(sa.update(PointsLot.__table__).where(PointsLot.source_ref == "C-big")
                     .values(remaining=0, reversed_at=at(2)))
    recompute_tiers(world.engine, LOYALTY, now=at(2))
    # Down: cat, and ann and bob, whose grace started at NOW (none of them into gold).
    assert recompute_tiers(world.engine, LOYALTY, now=at(33)).downgraded == 3
    tier_lot(world.engine, cat, "C-again", 5000, earned=at(40))
    assert recompute_tiers(world.engine, LOYALTY, now=at(40)).entered == {"gold": 1}
    assert plan_entries(world.engine, world.config, world.campaign, now=at(40), window=window) == 1
    assert plan_entries(world.engine, world.config, world.campaign, now=at(41), window=window) == 0

    entries = world.enrolled()
    assert [name for name, _ in entries] == ["cat", "cat"] and all(o.startswith("e") for _, o in entries)
    world.now = at(41)
    assert world.deliver() == {"ok": 2}
    assert set(world.texts().values()) == {"Welcome to gold: free shipping, birthday gift"}


def test_tier_entered_without_reentry_sends_once_per_customer_ever(world_factory):
    world = world_factory(trigger='{ tier_entered = "silver" }')
    window = world.config.scheduler.entry_window
    tier_lot(world.engine, world.ids["cat"], "C-1", 1200, earned=at(-1))
    recompute_tiers(world.engine, LOYALTY, now=NOW)
    assert plan_entries(world.engine, world.config, world.campaign, now=NOW, window=window) == 1
    # Her points taken back, grace over, back to member, then silver again: no second series.
    with world.engine.begin() as conn:
        conn.execute(sa.update(PointsLot.__table__).where(PointsLot.source_ref == "C-1")
                     .values(remaining=0, reversed_at=at(1)))
    recompute_tiers(world.engine, LOYALTY, now=at(1))
    recompute_tiers(world.engine, LOYALTY, now=at(32))
    tier_lot(world.engine, world.ids["cat"], "C-2", 1200, earned=at(35))
    recompute_tiers(world.engine, LOYALTY, now=at(35))
    assert plan_entries(world.engine, world.config, world.campaign, now=at(35), window=window) == 0
    assert world.enrolled() == [("cat", "once")]


# ---------------------------------------------------------------------------------------
# The loyalty variable of every message


def test_every_message_renders_the_members_standing(world_factory):
    world = world_factory(trigger='{ cron = "0 10 * * *" }')
    from campaigns.sending.ledger import run_batches
    from campaigns.sending.planning import claim_run, plan_run

    run_id = claim_run(world.engine, "c", NOW, lease=timedelta(minutes=5))
    plan_run(world.engine, world.config, world.campaign, run_id=run_id, scheduled_at=NOW, now=NOW)
    ids = [i for batch in run_batches(world.engine, run_id, now=NOW, batch_size=100) for i in batch]
    assert deliver_batch(world.runtime, ids).counts == {"ok": 5}

    assert {name.split("/")[0]: text for name, text in world.texts().items()} == {
        "ann": "310 points, silver, 4490.0 to gold, 300 expiring 2026-06-11",
        "bob": "1000 points, gold, 1000 expiring 2026-07-01",
        "cat": "0 points, member, 1000.0 to silver",
        "dan": "30 points, member, 920.0 to silver",
        "eve": "70 points, member, 880.0 to silver, 20 expiring 2026-06-06",
    }
    with world.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(DeliveryAttempt)).scalar() == 5


# ---------------------------------------------------------------------------------------
# Check


def check_issues(tmp_path: Path, body: str) -> list[str]:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "t.txt.j2").write_text("hi")
    text = f"""
[channels.mail]
kind = "outbox"
{body}
[[campaigns]]
name = "up"
trigger = {{ tier_entered = "golden" }}
channels = ["mail"]
[[campaigns.steps]]
template = "t"
[[campaigns]]
name = "remind"
trigger = {{ points_expiring = "30d" }}
channels = ["mail"]
[[campaigns.steps]]
template = "t"
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, base=tmp_path)
    return [str(issue).replace(f":{line_of(text, 'tier_entered')}:", ":TIER:")
            .replace(f":{line_of(text, 'points_expiring')}:", ":REMIND:") for issue in caught.value.issues]


def test_check_names_unknown_tiers_and_loyalty_triggers_without_the_programme(tmp_path):
    assert check_issues(tmp_path, "[loyalty]\nenabled = true") == [
        "config.toml:TIER: campaigns[0].trigger.tier_entered: unknown tier 'golden' "
        "(did you mean 'gold'? tiers: member, silver, gold)",
    ]
    assert check_issues(tmp_path, "") == [
        "config.toml:TIER: campaigns[0].trigger.tier_entered: tier_entered needs the loyalty programme, which is "
        "off ([loyalty] enabled = false) (set enabled = true under [loyalty] in config.toml)",
        "config.toml:REMIND: campaigns[1].trigger.points_expiring: points_expiring needs the loyalty programme, "
        "which is off ([loyalty] enabled = false) (set enabled = true under [loyalty] in config.toml)",
    ]


@pytest.mark.parametrize(("lead", "message"), [
    ('"0d"', 'points_expiring is how long before the points expire to remind, e.g. "30d": it must be longer '
             "than zero"),
    ('"400d"', "points_expiring is at most 366 days ahead"),
    ('"soon"', "invalid duration 'soon': use numbers with w, d, h, m or s, e.g. '2d' or '1d12h'"),
])
def test_a_bad_lead_time_is_a_located_error(tmp_path, lead, message):
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "t.txt.j2").write_text("hi")
    text = f"""
[loyalty]
enabled = true
[channels.mail]
kind = "outbox"
[[campaigns]]
name = "remind"
trigger = {{ points_expiring = {lead} }}
channels = ["mail"]
[[campaigns.steps]]
template = "t"
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, base=tmp_path)
    assert [str(issue) for issue in caught.value.issues] == [
        f"config.toml:{line_of(text, 'points_expiring')}: campaigns[0].trigger.points_expiring: {message}"]


# ---------------------------------------------------------------------------------------
# Previews


def test_a_preview_shows_the_points_the_message_would_show(world_factory):
    from campaigns.sending.preview import preview_message

    world = world_factory(trigger='{ points_expiring = "45d" }')
    renderer = world.runtime.renderer

    def shown(name: str) -> str:
        return preview_message(world.engine, world.config, renderer, campaign="c", customer=name,
                               now=NOW).parts["txt"]

    # Not planned yet: the first points a reminder would name now, within its 45 days.
    assert shown("dan") == "80 points expire on 2026-07-01; balance 30"
    assert world.remind(NOW) == 5
    # Planned: the waiting row's own lots.
    assert shown("eve") == "20 points expire on 2026-06-06; balance 70"
    assert shown("bob") == "1000 points expire on 2026-07-01; balance 1000"
    # ann has two reminders waiting: the preview shows the newest one, with its own lot's points.
    preview = preview_message(world.engine, world.config, renderer, campaign="c", customer="ann", now=NOW)
    review = reminded_lot(preview.send_key) == lot_id(world.engine, "ann-rv")
    assert preview.parts["txt"] == ("10 points expire on 2026-07-11; balance 310" if review
                                    else "300 points expire on 2026-06-11; balance 310")


def test_a_test_send_of_a_reminder_shows_the_customers_next_expiring_points(world_factory):
    from campaigns.sending.testsends import create_test_delivery

    world = world_factory(trigger='{ points_expiring = "45d" }')
    test = create_test_delivery(world.engine, world.config, campaign="c", channel="mail", customer="dan", now=NOW)

    assert deliver_batch(world.runtime, [test.id], test_to="me@shop.example").counts == {"ok": 1}
    assert world.sent == {test.send_key: "80 points expire on 2026-07-01; balance 30"}
