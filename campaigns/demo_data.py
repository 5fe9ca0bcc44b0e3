"""A realistic, seeded demo data set: customers across acquisition channels, two years of
orders with items, and sign-up events, written as the CSV/JSONL files `nurture import` reads.

Each acquisition channel buys the way the seed articles describe: e-commerce buyers order
often and small, store buyers less often with more per basket, social buyers in bursts,
distributors rarely but in bulk, direct accounts steadily and large. About a third of the
customers have lapsed (their last order is months ago), some never bought at all, and a
few signed up in the past day.
"""

from __future__ import annotations

import csv
import json
import random
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
