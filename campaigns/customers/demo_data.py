"""A realistic, seeded demo data set: customers across acquisition channels, two years of
orders with items, and sign-up events, written as the CSV/JSONL files `nurture import` reads.

Each acquisition channel buys the way the seed articles describe: e-commerce buyers order
often and small, store buyers less often with more per basket, social buyers in bursts,
distributors rarely but in bulk, direct accounts steadily and large. About a third of the
customers have lapsed (their last order is months ago), some never bought at all, and a
few signed up in the past day.
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

#: channel: (share of customers, orders per year, basket mean, items per order)
CHANNEL_PROFILES = {
    "ecommerce": (0.40, 6.0, 120.0, 2),
    "store": (0.25, 3.0, 260.0, 3),
    "social": (0.18, 4.0, 90.0, 1),
    "distributor": (0.07, 2.0, 4200.0, 8),
    "direct": (0.10, 4.0, 1500.0, 4),
}

SURNAMES = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun"]
GIVEN = ["Wei", "Fang", "Na", "Min", "Jing", "Lei", "Yan", "Jun", "Hui", "Xin", "Tao", "Ying", "Hao", "Lin"]
CITIES = ["Shanghai", "Beijing", "Shenzhen", "Hangzhou", "Chengdu", "Guangzhou", "Wuhan", "Nanjing"]
CATEGORIES = {
    "tea": ["TEA-LONGJING", "TEA-PUER", "TEA-OOLONG"],
    "snacks": ["SNK-NUTS", "SNK-DRIED-MANGO"],
    "kitchen": ["KIT-TEAPOT", "KIT-CUPS-6"],
    "gift": ["GFT-BOX-S", "GFT-BOX-L"],
}
PURCHASE_CHANNELS = ["ecommerce", "store", "social", "distributor", "direct"]

#: Written into the SQLite header (``PRAGMA application_id``, "nurt" in ASCII) of a
#: database ``nurture demo`` created: only such a database may be reset by a later run.
DEMO_APPLICATION_ID = 0x6E757274
#: The shapes of the ids ``write_demo_files`` gives (SQLite GLOB patterns).
DEMO_CUSTOMER_GLOB = "C" + "[0-9]" * 6
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
    id shapes) are foreign; forgotten customers' placeholders are not. In any other
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
                    "customer": ("SELECT count(*) FROM customer WHERE external_id NOT GLOB ? "
                                 "AND substr(external_id, 1, ?) != ?",
                                 (DEMO_CUSTOMER_GLOB, len(FORGOTTEN_PREFIX), FORGOTTEN_PREFIX)),
                    "orders": ("SELECT count(*) FROM orders WHERE order_id NOT GLOB ?", (DEMO_ORDER_GLOB,)),
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


def write_demo_files(directory: Path, *, customers: int, seed: int, now: datetime) -> dict[str, Path]:
    """Write ``customers.csv``, ``orders.jsonl`` and ``events.csv`` under ``directory``."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "customers": directory / "customers.csv",
        "orders": directory / "orders.jsonl",
        "events": directory / "events.csv",
    }
    channels = list(CHANNEL_PROFILES)
    weights = [CHANNEL_PROFILES[c][0] for c in channels]
    order_number = 0
    with (
        paths["customers"].open("w", newline="", encoding="utf-8") as customers_file,
        paths["orders"].open("w", encoding="utf-8") as orders_file,
        paths["events"].open("w", newline="", encoding="utf-8") as events_file,
    ):
        customers_csv = csv.writer(customers_file)
        customers_csv.writerow([
            "customer_id", "name", "email", "phone", "acquisition_channel", "created_at",
            "timezone", "locale", "city", "vip", "email_consent", "sms_consent",
        ])
        events_csv = csv.writer(events_file)
        events_csv.writerow(["event_id", "customer_id", "name", "occurred_at", "source"])
        for number in range(1, customers + 1):
            external_id = f"C{number:06d}"
            channel = rng.choices(channels, weights)[0]
            _, per_year, basket, items_per_order = CHANNEL_PROFILES[channel]
            name = f"{rng.choice(GIVEN)} {rng.choice(SURNAMES)}"
            # The last few signed up in the past day and have not bought yet: the welcome
            # series starts for them on the demo's first tick.
            just_joined = number > customers - max(3, customers // 200)
            if just_joined:
                created = now - timedelta(hours=rng.uniform(0.5, 20))
            else:
                created = now - timedelta(days=rng.uniform(0, 730), hours=rng.uniform(0, 24))
            has_email = rng.random() < 0.9
            customers_csv.writerow([
                external_id,
                name,
                f"{name.lower().replace(' ', '.')}.{number}@example.com" if has_email else "",
                f"+86138{rng.randrange(10**8):08d}" if rng.random() < 0.8 else "",
                channel,
                created.isoformat(timespec="seconds"),
                "Asia/Shanghai",
                "zh-CN",
                rng.choice(CITIES),
                "true" if rng.random() < 0.05 else "false",
                "true" if rng.random() < 0.92 else "false",
                "true" if rng.random() < 0.6 else "false",
            ])
            events_csv.writerow([f"EV-{external_id}-signup", external_id, "signup",
                                 created.isoformat(timespec="seconds"), channel])
            # Lifecycle shape: some never buy, some lapse at a random point, the rest stay active.
            roll = rng.random()
            if roll < 0.12 or just_joined:
                continue
            active_until = now if roll > 0.45 else created + (now - created) * rng.uniform(0.05, 0.7)
            moment = created + timedelta(days=rng.expovariate(per_year / 365))
            first = True
            while moment <= active_until or first:
                first = False
                moment = min(moment, now)
                order_number += 1
                items = []
                for _ in range(max(1, int(rng.gauss(items_per_order, 1)))):
                    category = rng.choice(list(CATEGORIES))
                    price = round(max(5.0, rng.gauss(basket / items_per_order, basket / 5)), 2)
                    items.append({"sku": rng.choice(CATEGORIES[category]), "category": category,
                                  "quantity": rng.randint(1, 10 if channel == "distributor" else 3), "price": price})
                amount = round(sum(i["price"] * i["quantity"] for i in items), 2)
                purchase_channel = channel if rng.random() < 0.75 else rng.choice(PURCHASE_CHANNELS)
                orders_file.write(json.dumps({
                    "order_id": f"O{order_number:08d}", "customer_id": external_id,
                    "ordered_at": moment.isoformat(timespec="seconds"), "amount": amount,
                    "channel": purchase_channel, "items": items,
                }) + "\n")
                moment += timedelta(days=rng.expovariate(per_year / 365) + 1)
    return paths
