"""A realistic, seeded demo data set: customers across acquisition channels, two years of
orders with items, and sign-up, review and share events, written as the CSV/JSONL files
`nurture import` reads.

Each acquisition channel buys the way the seed articles describe: e-commerce buyers order
often and small, store buyers less often with more per basket, social buyers in bursts,
distributors rarely but in bulk, direct accounts steadily and large. About a third of the
customers have lapsed (their last order is months ago), some never bought at all, and a
few signed up in the past day.

The people come from two systems, as a brand's customers do (issue #15): the store's tills
(POS, source ``store``: member cards ``S000001``, known by a phone verified by SMS code) and
the web shop (source ``online``: accounts ``W000001`` with an email and often a phone).
About one person in five is in both, under the same phone: imported through
``[identity.sources]`` (the web shop first), each of them ends as ONE customer holding both
ids. A few of them opened a second web shop account with the same phone: the shop's phones
are not verified, so its import only opens a review item, and the store's verified phone
then merges the two accounts. A few couples share one family email across the two systems;
that opens a review item too, and never merges two people.

What they buy is a catalogue of a few dozen products (``products.csv``), with the patterns
a recommender should find: parents who buy baby products and later parenting books, a
couple of best-sellers, favourite categories, products out of stock
(:mod:`campaigns.customers.demo_catalogue`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import random
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from campaigns.customers.demo_catalogue import PRODUCTS, Shopper, write_products_file

#: channel: (share of customers, orders per year, lines per order); what the lines are, and
#: so the basket's value, is the catalogue's (campaigns/customers/demo_catalogue.py).
CHANNEL_PROFILES = {
    "ecommerce": (0.40, 6.0, 2),
    "store": (0.25, 3.0, 3),
    "social": (0.18, 4.0, 1),
    "distributor": (0.07, 2.0, 8),
    "direct": (0.10, 4.0, 4),
}

SURNAMES = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun"]
GIVEN = ["Wei", "Fang", "Na", "Min", "Jing", "Lei", "Yan", "Jun", "Hui", "Xin", "Tao", "Ying", "Hao", "Lin"]
CITIES = ["Shanghai", "Beijing", "Shenzhen", "Hangzhou", "Chengdu", "Guangzhou", "Wuhan", "Nanjing"]
PURCHASE_CHANNELS = ["ecommerce", "store", "social", "distributor", "direct"]

#: Written into the SQLite header (``PRAGMA application_id``, "nurt" in ASCII) of a
#: database ``nurture demo`` created: only such a database may be reset by a later run.
DEMO_APPLICATION_ID = 0x6E757274
#: The sources the demo imports its customers from, in import order, with the letter of
#: their ids: ``online:W000001`` (a web shop account) and ``store:S000001`` (a member card).
DEMO_SOURCES = {"online": "W", "store": "S"}
#: The shapes of the customer ids ``write_demo_files`` gives (SQLite GLOB patterns): one per
#: source, and the bare ``C000001`` of demos from before sources, so their databases are
#: still the demo's to reset.
DEMO_CUSTOMER_GLOBS = (*(f"{source}:{letter}" + "[0-9]" * 6 for source, letter in DEMO_SOURCES.items()),
                       "C" + "[0-9]" * 6)
DEMO_ORDER_GLOB = "O" + "[0-9]" * 8


@dataclass(frozen=True, kw_only=True)
class DemoDatabase:
    """What a SQLite file holds, as far as ``nurture demo`` is concerned."""

    #: The file exists.
    exists: bool
    #: The demo created it (its header carries :data:`DEMO_APPLICATION_ID`).
    created_by_demo: bool
    #: Table -> rows the demo did not write; non-empty means the demo must leave it alone.
    foreign: dict[str, int] = field(default_factory=dict)
    #: (channel, campaign, send_key) of every delivery in a demo database: the outbox
    #: files a reset may remove, and no others.
    deliveries: list[tuple[str, str, str]] = field(default_factory=list)


def inspect_demo_database(path: Path) -> DemoDatabase:
    """Read (never create or change) the SQLite file at ``path`` and say whether the demo
    may reset it: missing or empty, or created by the demo and holding only its data.

    In a database the demo created, customers and orders the demo did not generate (other
    id shapes) and products not of its catalogue are foreign; forgotten customers' placeholders are not. In any other
    database every row of every table but Alembic's is foreign.
    """
    from campaigns.customers.forget import FORGOTTEN_PREFIX

    if not path.exists():
        return DemoDatabase(exists=False, created_by_demo=False)
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return DemoDatabase(exists=True, created_by_demo=False, foreign={"(unreadable file)": 1})
    with contextlib.closing(conn):
        try:
            created_by_demo = conn.execute("PRAGMA application_id").fetchone()[0] == DEMO_APPLICATION_ID
            tables = {name for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
            foreign: dict[str, int] = {}
            if created_by_demo:
                checks = {
                    "customer": ("SELECT count(*) FROM customer WHERE "
                                 + "external_id NOT GLOB ? AND " * len(DEMO_CUSTOMER_GLOBS)
                                 + "substr(external_id, 1, ?) != ?",
                                 (*DEMO_CUSTOMER_GLOBS, len(FORGOTTEN_PREFIX), FORGOTTEN_PREFIX)),
                    "orders": ("SELECT count(*) FROM orders WHERE order_id NOT GLOB ?", (DEMO_ORDER_GLOB,)),
                    # The user's own catalogue is theirs too: a reset would lose it.
                    "product": ("SELECT count(*) FROM product WHERE sku NOT IN ("
                                + ", ".join("?" * len(PRODUCTS)) + ")", tuple(p.sku for p in PRODUCTS)),
                }
                for table, (sql, params) in checks.items():
                    if table in tables:
                        foreign[table] = conn.execute(sql, params).fetchone()[0]
            else:
                for table in sorted(tables - {"alembic_version"}):
                    quoted = '"' + table.replace('"', '""') + '"'
                    foreign[table] = conn.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]  # noqa: S608
            deliveries: list[tuple[str, str, str]] = []
            if created_by_demo and "delivery" in tables:
                deliveries = [(row[0], row[1], row[2])
                              for row in conn.execute("SELECT channel, campaign, send_key FROM delivery")]
        except sqlite3.DatabaseError:  # not a SQLite file at all
            return DemoDatabase(exists=True, created_by_demo=False, foreign={"(not a SQLite database)": 1})
    return DemoDatabase(exists=True, created_by_demo=created_by_demo,
                        foreign={table: rows for table, rows in foreign.items() if rows}, deliveries=deliveries)


def mark_demo_database(path: Path) -> None:
    """Stamp the SQLite file at ``path`` as created by the demo (see :func:`inspect_demo_database`)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA application_id = {DEMO_APPLICATION_ID}")
        conn.commit()


def demo_moment(wall: datetime, *, zone: str = "Asia/Shanghai", hour: int = 10) -> datetime:
    """The latest ``hour`` o'clock in ``zone`` at or before ``wall`` (UTC): the demo runs its
    clock there so its Shanghai customers are inside the marketing hours (quiet hours
    would rightly hold every message of a demo run at night)."""
    from zoneinfo import ZoneInfo

    local = wall.astimezone(ZoneInfo(zone))
    moment = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if moment > local:
        moment -= timedelta(days=1)
    return moment.astimezone(wall.tzinfo)


#: Share of store members who also have a web shop account, and of web shop customers with
#: a phone who also carry a store card: about one person in five is in both systems.
ALSO_ONLINE = 0.4
ALSO_STORE = 0.2
#: One couple in this many people shares a family email across the two systems; one person
#: in this many (of those in both) has a second web shop account under the same phone.
FAMILY_EVERY = 250
TWO_ACCOUNTS_EVERY = 200
CUSTOMER_COLUMNS = [
    "customer_id", "name", "email", "phone", "acquisition_channel", "created_at",
    "timezone", "locale", "city", "vip", "email_consent", "sms_consent",
]


@dataclass(frozen=True, kw_only=True)
class DemoFiles:
    """What :func:`write_demo_files` wrote, and who in it is worth showing."""

    #: source -> its customers file and its orders file, in import order (:data:`DEMO_SOURCES`).
    customers: dict[str, Path]
    orders: dict[str, Path]
    #: source -> orders of that source refunded after they were placed (status refunded).
    refunds: dict[str, Path]
    #: The shop's product catalogue (``nurture import products``), imported before the orders.
    products: Path
    #: Sign-up events, each naming its person as ``id:<source>:<id>`` (an event may name a
    #: customer by any identifier), so this file is imported without a source.
    events: Path
    #: How many people (true persons) the files describe, and how many both sources hold.
    people: int
    in_both: int
    #: ``(first account, second account, store card)`` of each person with two web shop
    #: accounts under one phone: the shop alone cannot tell (its phones are not verified),
    #: the till's verified phone merges the two accounts.
    two_accounts: list[tuple[str, str, str]]
    #: ``(online id, store id)`` of each couple sharing a family email: two people, one review item.
    family: list[tuple[str, str]]
    #: The phone of the person with two accounts the demo shows as one customer: one who
    #: bought in both systems, with the most orders.
    shared_phone: str | None


@dataclass(kw_only=True)
class _Person:
    """One true person of the demo, before it is written as one to three source records."""

    number: int
    channel: str
    given: str
    surname: str
    email: str
    phone: str
    created: datetime
    extra: list[str]  # timezone .. sms_consent, as the customers file writes them
    home: str  # the source where they first came from (their acquisition channel's)
    sources: list[str]
    orders: list[dict[str, object]] = field(default_factory=list)
    #: source -> the person's id there; ``second`` is a second web shop account.
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Given name and surname."""
        return f"{self.given} {self.surname}"


def write_demo_files(directory: Path, *, customers: int, seed: int, now: datetime) -> DemoFiles:
    """Write ``<source>_customers.csv`` and ``<source>_orders.jsonl`` for each of
    :data:`DEMO_SOURCES`, ``events.csv`` and the catalogue's ``products.csv``, under
    ``directory``, for ``customers`` people."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    people = _people(rng, customers, now, baskets=random.Random(seed * 7919 + 3))
    in_both = [person for person in people if len(person.sources) > 1]
    twice = sorted(rng.sample(in_both, min(len(in_both), max(1, len(people) // TWO_ACCOUNTS_EVERY))),
                   key=lambda person: person.number)
    # Each system numbers its records in its own order: the ids of one person share
    # nothing. Second accounts are the web shop's newest.
    records: dict[str, list[tuple[_Person, str]]] = {
        source: [(person, source) for person in people if source in person.sources] for source in DEMO_SOURCES}
    records["online"] += [(person, "second") for person in twice]
    for source, rows in records.items():
        for count, (person, role) in enumerate(rows, start=1):
            person.ids[role] = f"{DEMO_SOURCES[source]}{count:06d}"
    files = DemoFiles(
        customers={source: directory / f"{source}_customers.csv" for source in DEMO_SOURCES},
        orders={source: directory / f"{source}_orders.jsonl" for source in DEMO_SOURCES},
        refunds={source: directory / f"{source}_refunds.jsonl" for source in DEMO_SOURCES},
        products=write_products_file(directory / "products.csv"),
        events=directory / "events.csv",
        people=len(people),
        in_both=len(in_both),
        two_accounts=[(person.ids["online"], person.ids["second"], person.ids["store"]) for person in twice],
        family=_share_family_emails(rng, people),
        shared_phone=max(twice, key=_showcase).phone if twice else None,
    )
    # A few orders were refunded later: written again with status "refunded" to a file of
    # their own, imported after the points were earned (from their own generator, so the
    # rest of the data stays what it always was for this seed).
    chance = random.Random(seed * 7919 + 2)
    refunded = {order["order_id"] for person in people for order in person.orders
                if chance.random() < REFUND_CHANCE}
    for source, rows in records.items():
        with (files.customers[source].open("w", newline="", encoding="utf-8") as customers_file,
              files.orders[source].open("w", encoding="utf-8") as orders_file,
              files.refunds[source].open("w", encoding="utf-8") as refunds_file):
            customers_csv = csv.writer(customers_file)
            customers_csv.writerow(CUSTOMER_COLUMNS)
            for person, role in rows:
                customers_csv.writerow(_record(person, role, now=now))
                for order in person.orders if role == source else ():
                    # A person in both systems bought at the till in the store, elsewhere online.
                    where = "store" if order["channel"] == "store" else "online"
                    if (where if len(person.sources) > 1 else person.home) == source:
                        line = {"order_id": order["order_id"], "customer_id": person.ids[source], **order}
                        orders_file.write(json.dumps(line) + "\n")
                        if order["order_id"] in refunded:
                            refunds_file.write(json.dumps({**line, "status": "refunded"}) + "\n")
    with files.events.open("w", newline="", encoding="utf-8") as events_file:
        events_csv = csv.writer(events_file)
        events_csv.writerow(["event_id", "customer_id", "name", "occurred_at", "source"])
        for person in people:
            own_id = person.ids[person.home]
            events_csv.writerow([f"EV-{own_id}-signup", f"id:{person.home}:{own_id}", "signup",
                                 person.created.isoformat(timespec="seconds"), person.channel])
        # Reviews and shares: what earns points besides buying (seed 004), from their own
        # generator so the people and orders stay what they always were for this seed.
        for event in _engagement(random.Random(seed * 7919 + 1), people, now=now):
            events_csv.writerow(event)
    return files


#: Chance that an order was refunded.
REFUND_CHANCE = 0.02
#: Chance that an order is reviewed, or shared, within days of arriving.
REVIEW_CHANCE = 0.15
SHARE_CHANCE = 0.06


def _engagement(rng: random.Random, people: list[_Person], *, now: datetime) -> list[list[str]]:
    """Review and share events of the people's orders (rows of the events file)."""
    rows = []
    for person in people:
        own_id = person.ids[person.home]
        for order in person.orders:
            ordered = datetime.fromisoformat(str(order["ordered_at"]))
            for name, chance in (("review", REVIEW_CHANCE), ("share", SHARE_CHANCE)):
                if rng.random() >= chance:
                    continue
                moment = ordered + timedelta(days=rng.uniform(1, 10))
                if moment < now:
                    rows.append([f"EV-{order['order_id']}-{name}", f"id:{person.home}:{own_id}", name,
                                 moment.isoformat(timespec="seconds"), person.channel])
    return rows


def _showcase(person: _Person) -> tuple[bool, int, int]:
    """How well ``person`` shows one customer across systems: orders from the store and
    online first, then more orders, then the earlier person."""
    in_store = sum(1 for order in person.orders if order["channel"] == "store")
    return (0 < in_store < len(person.orders), len(person.orders), -person.number)


def _record(person: _Person, role: str, *, now: datetime) -> list[str]:
    """The customers file row of ``person`` in the system ``role`` names (a source, or
    ``second`` for a second web shop account)."""
    if role == person.home:
        return [person.ids[role], person.name, person.email, person.phone, person.channel,
                person.created.isoformat(timespec="seconds"), *person.extra]
    if role == "second":
        # Opened later, with another address; no channel or consent of its own.
        opened = person.created + (now - person.created) / 2
        return [person.ids[role], person.name, f"{person.given}.{person.number}@work.example.com".lower(),
                person.phone, "", opened.isoformat(timespec="seconds"), *person.extra[:3], "", "", ""]
    # The other system's record: who they are there, and no sign-up date, channel or
    # consent of its own (the first system's stand). A web shop account needs an email.
    email = person.email or f"{person.given}.{person.surname}.{person.number}@example.com".lower()
    return [person.ids[role], person.name, email, person.phone, "", "", *person.extra[:3], "", "", ""]


def _people(rng: random.Random, count: int, now: datetime, *, baskets: random.Random) -> list[_Person]:
    """``count`` people with their orders and the systems that know them; what is in each
    order comes from ``baskets`` (:class:`~campaigns.customers.demo_catalogue.Shopper`)."""
    channels = list(CHANNEL_PROFILES)
    weights = [CHANNEL_PROFILES[c][0] for c in channels]
    phones: set[str] = set()
    people: list[_Person] = []
    order_number = 0
    for number in range(1, count + 1):
        channel = rng.choices(channels, weights)[0]
        _, per_year, items_per_order = CHANNEL_PROFILES[channel]
        given, surname = rng.choice(GIVEN), rng.choice(SURNAMES)
        # The last few signed up in the past day and have not bought yet: the welcome
        # series starts for them on the demo's first tick.
        just_joined = number > count - max(3, count // 200)
        if just_joined:
            created = now - timedelta(hours=rng.uniform(0.5, 20))
        else:
            created = now - timedelta(days=rng.uniform(0, 730), hours=rng.uniform(0, 24))
        has_email = rng.random() < 0.9
        home = "store" if channel == "store" else "online"
        phone = ""
        # The tills know every member by phone; the web shop has a phone for most.
        if home == "store" or rng.random() < 0.8:
            while not phone or phone in phones:  # one number, one person: a repeat would merge two
                phone = f"+86138{rng.randrange(10**8):08d}"
            phones.add(phone)
        person = _Person(
            number=number, channel=channel, given=given, surname=surname, created=created, phone=phone,
            email=f"{given}.{surname}.{number}@example.com".lower() if has_email else "",
            extra=["Asia/Shanghai", "zh-CN", rng.choice(CITIES), "true" if rng.random() < 0.05 else "false",
                   "true" if rng.random() < 0.92 else "false", "true" if rng.random() < 0.6 else "false"],
            home=home, sources=[home],
        )
        if phone and not just_joined and rng.random() < (ALSO_ONLINE if home == "store" else ALSO_STORE):
            person.sources = list(DEMO_SOURCES)
        people.append(person)
        # Lifecycle shape: some never buy, some lapse at a random point, the rest stay active.
        roll = rng.random()
        if roll < 0.12 or just_joined:
            continue
        active_until = now if roll > 0.45 else created + (now - created) * rng.uniform(0.05, 0.7)
        shopper = Shopper(baskets, channel=channel)
        moment = created + timedelta(days=rng.expovariate(per_year / 365))
        first = True
        while moment <= active_until or first:
            first = False
            moment = min(moment, now)
            order_number += 1
            items = shopper.basket(max(1, int(baskets.gauss(items_per_order, 1))),
                                   ordered_at=moment, now=now)
            amount = round(sum(i["price"] * i["quantity"] for i in items), 2)
            purchase_channel = channel if rng.random() < 0.75 else rng.choice(PURCHASE_CHANNELS)
            person.orders.append({"order_id": f"O{order_number:08d}", "ordered_at": moment.isoformat(timespec="seconds"),
                                  "amount": amount, "channel": purchase_channel, "items": items})
            moment += timedelta(days=rng.expovariate(per_year / 365) + 1)
    return people


def _share_family_emails(rng: random.Random, people: list[_Person]) -> list[tuple[str, str]]:
    """Give a few couples one family email: a store member and a web shop customer of one
    household, two people under one address (ids must be assigned already)."""
    members = [p for p in people if p.sources == ["store"] and p.email]
    shoppers = [p for p in people if p.sources == ["online"]]
    pairs = min(max(1, len(people) // FAMILY_EVERY), len(members), len(shoppers))
    couples = list(zip(rng.sample(members, pairs), rng.sample(shoppers, pairs), strict=True))
    for member, shopper in couples:
        member.email = shopper.email = f"{member.surname}.family.{member.number}@example.com".lower()
        shopper.surname = member.surname
    return [(shopper.ids["online"], member.ids["store"]) for member, shopper in couples]
