"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, loads the pages
from a real uvicorn server over a seeded SQLite database, and every figure it shows is
checked against the test's own SQL on that database (never against the report code the
page itself uses). The loyalty page's points are earned, spent, refunded and expired by
the ledger's own functions from the seeded orders and reviews.

Needs ``chromium`` on PATH (``make browser``) or ``NURTURE_CHROMIUM`` naming the binary,
and the ``playwright`` package (the ``test`` extra); without them the test skips locally
and fails under ``CI``. Playwright's own browser download is never used.
"""

from __future__ import annotations

import os
import random
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from starlette.applications import Starlette

from campaigns.config.schema import AppConfig
from campaigns.customers.loyalty.earning import earn
from campaigns.customers.loyalty.expiry import expire_lots
from campaigns.customers.loyalty.redeeming import Redemption, redeem
from campaigns.customers.loyalty.refunds import reverse_refunds
from campaigns.customers.loyalty.tiers import recompute_tiers
from campaigns.project.loading import parse_config
from campaigns.store.models import Customer, Delivery, Enrollment, Event, Order, Response
from tests.conftest import ServerThread, missing_service
from workers.http.dashboard import dashboard_routes

PASSWORD_ENV = "NURTURE_TEST_DASHBOARD_PASSWORD"
PASSWORD = "browser-test-password"
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=14)  # the campaigns' goal window (no [goal]: 14 days)
CONFIG = f"""
[api]
dashboard_password_env = "{PASSWORD_ENV}"

[loyalty]
enabled = true
point_value = 0.02

[channels.mail]
kind = "outbox"
recipient = "email"
dir = "out"
[channels.text]
kind = "outbox"
recipient = "phone"
dir = "out-sms"

[[campaigns]]
name = "spring_sale"
description = "Twenty per cent off tea sets"
trigger = {{ manual = true }}
channels = ["mail", "text"]
holdout = 0.2
  [[campaigns.steps]]
  template = "t"
  [[campaigns.steps]]
  template = "t"
  delay = "3d"

[[campaigns]]
name = "welcome"
trigger = {{ event = "signup" }}
channels = ["mail"]
  [[campaigns.steps]]
  template = "t"
"""
ACQUISITION = ["ecommerce", "store", "social", None]
PURCHASE = ["ecommerce", "store", None]


# --------------------------------------------------------------------------- data


def seed_store(engine: sa.Engine, *, seed: int = 7) -> None:
    """A few hundred customers, orders, two campaigns' enrolments, messages and responses,
    drawn from a seeded generator (varied enough that every figure is different)."""
    rng = random.Random(seed)
    refs = 0
    with engine.begin() as conn:
        customers = [
            conn.execute(sa.insert(Customer.__table__).values(
                external_id=f"C{n:04d}", email=f"c{n}@example.com", phone=f"+86138{n:08d}",
                acquisition_channel=rng.choice(ACQUISITION), attributes={},
            ).returning(Customer.__table__.c.id)).scalar_one()
            for n in range(240)
        ]
        orders = []
        for customer in customers:
            for number in range(rng.choice([0, 0, 1, 1, 2, 3])):
                orders.append({"order_id": f"O-{customer}-{number}", "customer_id": customer,
                               "amount": round(rng.uniform(20, 900), 2), "channel": rng.choice(PURCHASE),
                               "ordered_at": NOW - timedelta(days=rng.randint(1, 60), hours=rng.randint(0, 23))})
        conn.execute(sa.insert(Order.__table__), orders)
        for campaign, share, holdout_share in (("spring_sale", 0.8, 0.2), ("welcome", 0.25, 0.0)):
            for customer in customers:
                if rng.random() > share:
                    continue
                holdout = rng.random() < holdout_share
                enrolled_at = NOW - timedelta(days=rng.randint(5, 30))
                enrollment = conn.execute(sa.insert(Enrollment.__table__).values(
                    campaign=campaign, customer_id=customer, occurrence="once", enrolled_at=enrolled_at,
                    holdout=holdout, state="held_out" if holdout else "active",
                ).returning(Enrollment.__table__.c.id)).scalar_one()
                if holdout:
                    continue
                for step in range(rng.choice([0, 1, 2, 2]) if campaign == "spring_sale" else 1):
                    channel = "mail" if campaign == "welcome" or rng.random() < 0.7 else "text"
                    status = rng.choices(["sent", "failed", "queued", "skipped"], [85, 7, 5, 3])[0]
                    sent_at = enrolled_at + timedelta(days=3 * step, hours=1)
                    delivery = conn.execute(sa.insert(Delivery.__table__).values(
                        send_key=f"{campaign}:{step}:{customer}", campaign=campaign, step=step,
                        customer_id=customer, channel=channel, template="t", enrollment_id=enrollment,
                        status=status, due_at=sent_at, dispatch_after=sent_at,
                        sent_at=sent_at if status == "sent" else None,
                    ).returning(Delivery.__table__.c.id)).scalar_one()
                    if status != "sent":
                        continue
                    kinds = []
                    if rng.random() < (0.4 if channel == "mail" else 0.9):
                        kinds.append("delivered")
                    if channel == "mail" and rng.random() < 0.45:
                        kinds += ["opened"] * rng.randint(1, 3)  # repeat opens of one message
                    if rng.random() < 0.2:
                        kinds.append("clicked")
                    for kind in kinds:
                        refs += 1
                        conn.execute(sa.insert(Response.__table__).values(
                            delivery_id=delivery, customer_id=customer, kind=kind, provider="web",
                            provider_ref=f"r{refs}", occurred_at=sent_at + timedelta(hours=2), payload={}))


def seed_loyalty(engine: sa.Engine, config: AppConfig, *, seed: int = 11) -> None:
    """Points from the seeded orders, a review from a third of the customers 100 days ago
    (expired by now) and a share from half of them 150 or 170 days ago (expiring within 30
    or 60 days), redemptions, refunds and tiers, by the ledger's own functions."""
    rng = random.Random(seed)
    loyalty = config.loyalty
    with engine.begin() as conn:
        customers = conn.execute(sa.select(Customer.__table__.c.id).order_by(Customer.__table__.c.id)).scalars().all()
        conn.execute(sa.insert(Event.__table__), [
            {"customer_id": customer, "name": "review", "occurred_at": NOW - timedelta(days=100, hours=n % 24),
             "properties": {}, "dedupe_key": f"rv-{customer}"}
            for n, customer in enumerate(customers) if n % 3 == 0])
        conn.execute(sa.insert(Event.__table__), [
            {"customer_id": customer, "name": "share", "occurred_at": NOW - timedelta(days=150 + 20 * (n % 4 == 1)),
             "properties": {}, "dedupe_key": f"sh-{customer}"}
            for n, customer in enumerate(customers) if n % 4 in (1, 2)])
    earn(engine, loyalty, now=NOW - timedelta(hours=20))
    asked = [Redemption(f"R-{customer}", customer, rng.choice([50, 120, 400]), rng.choice(["goods", "coupons"]),
                        NOW - timedelta(hours=rng.randint(1, 18))) for customer in customers if rng.random() < 0.4]
    redeem(engine, asked, now=NOW - timedelta(hours=1))
    with engine.begin() as conn:
        refunded = [order for order in conn.execute(sa.select(Order.__table__.c.order_id)).scalars()
                    if rng.random() < 0.08]
        conn.execute(sa.update(Order.__table__).where(Order.__table__.c.order_id.in_(refunded))
                     .values(status="refunded"))
    reverse_refunds(engine, loyalty, now=NOW - timedelta(minutes=30))
    expire_lots(engine, now=NOW)
    recompute_tiers(engine, loyalty, now=NOW)


def expected_loyalty(engine: sa.Engine, config: AppConfig) -> dict[str, Any]:
    """The loyalty page's figures from raw rows: lots valid now, entries per local month."""
    zone = ZoneInfo(config.loyalty.timezone)
    now = NOW.replace(tzinfo=None)  # SQLite holds naive UTC
    with engine.connect() as conn:
        lots = [(remaining, expires_at and datetime.fromisoformat(expires_at)) for remaining, expires_at
                in conn.execute(sa.text("SELECT remaining, expires_at FROM points_lot"))]
        entries = conn.execute(sa.text(
            "SELECT e.kind, e.points, e.occurred_at, e.detail FROM points_entry e")).all()
        members = dict(conn.execute(sa.text("SELECT tier, COUNT(*) FROM loyalty_member GROUP BY tier")).all())
        customers = conn.execute(sa.text("SELECT COUNT(*) FROM customer")).scalar_one()
    valid = [remaining for remaining, expires_at in lots if expires_at is None or expires_at > now]
    expiring = {days: sum(remaining for remaining, expires_at in lots if remaining > 0 and expires_at is not None
                          and now < expires_at <= now + timedelta(days=days)) for days in (30, 60, 90)}
    months: dict[str, Counter[str]] = {}
    for kind, points, occurred_at, detail in entries:
        local = datetime.fromisoformat(occurred_at).replace(tzinfo=UTC).astimezone(zone)
        month = months.setdefault(f"{local:%Y-%m}", Counter())
        month[kind] += abs(points)
        if kind == "earn":
            month[f"earn:{detail}"] += points  # an earn entry's detail is its rule
    tiers = {tier.name: members.get(tier.name, 0) for tier in config.loyalty.tiers}
    tiers[config.loyalty.lowest_tier] += customers - sum(members.values())
    outstanding = sum(points for points in valid if points > 0)
    return {"outstanding": outstanding, "liability": outstanding * config.loyalty.point_value,
            "debts": -sum(points for points in valid if points < 0), "expiring": expiring,
            "months": months, "tiers": tiers,
            "customers": customers}


def expected_figures(engine: sa.Engine, campaign: str) -> dict[str, Any]:
    """The campaign's figures by the test's own straightforward SQL (and a little Python)."""
    with engine.connect() as conn:
        def scalar(sql: str, **params: Any) -> int:
            return conn.execute(sa.text(sql), {"campaign": campaign, **params}).scalar_one()

        figures: dict[str, Any] = {
            "enrolled": scalar("SELECT COUNT(*) FROM enrollment WHERE campaign = :campaign AND holdout = 0"),
            "held_out": scalar("SELECT COUNT(*) FROM enrollment WHERE campaign = :campaign AND holdout = 1"),
            "sent": scalar("SELECT COUNT(*) FROM delivery WHERE campaign = :campaign AND status = 'sent'"),
            "sent_by_channel": dict(conn.execute(sa.text(
                "SELECT channel, COUNT(*) FROM delivery WHERE campaign = :campaign AND status = 'sent' "
                "GROUP BY channel"), {"campaign": campaign}).all()),
            "messaged": scalar(
                "SELECT COUNT(DISTINCT e.id) FROM enrollment e JOIN delivery d ON d.enrollment_id = e.id "
                "WHERE e.campaign = :campaign AND e.holdout = 0 AND d.status = 'sent'"),
        }
        for kind in ("delivered", "opened", "clicked"):
            figures[kind] = scalar(
                "SELECT COUNT(DISTINCT e.id) FROM enrollment e JOIN delivery d ON d.enrollment_id = e.id "
                "JOIN response r ON r.delivery_id = d.id "
                "WHERE e.campaign = :campaign AND e.holdout = 0 AND d.status = 'sent' AND r.kind = :kind",
                kind=kind)
        enrolments = conn.execute(sa.text(
            "SELECT customer_id, enrolled_at, holdout FROM enrollment WHERE campaign = :campaign"),
            {"campaign": campaign}).all()
        orders = conn.execute(sa.text("SELECT customer_id, ordered_at FROM orders")).all()
    # Converted: an order after enrolling, within the window, and not after now.
    bought: dict[int, list[datetime]] = {}
    for customer, ordered_at in orders:
        bought.setdefault(customer, []).append(datetime.fromisoformat(ordered_at))
    now = NOW.replace(tzinfo=None)  # SQLite holds naive UTC
    converted = Counter()
    for customer, enrolled_at, holdout in enrolments:
        start = datetime.fromisoformat(enrolled_at)
        if any(start < moment <= min(start + WINDOW, now) for moment in bought.get(customer, [])):
            converted["holdout" if holdout else "treated"] += 1
    figures["converted"] = converted["treated"]
    figures["converted_holdout"] = converted["holdout"]
    return figures


def expected_store_channels(engine: sa.Engine) -> dict[str, dict[str, dict[str, float]]]:
    """Revenue share and repeat rate per acquisition and per purchase channel, from raw rows."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT c.id, c.acquisition_channel, o.channel, o.amount FROM orders o "
            "JOIN customer c ON c.id = o.customer_id")).all()
    total = sum(amount for *_, amount in rows)
    result: dict[str, dict[str, dict[str, float]]] = {}
    for dimension, pick in (("acquisition", lambda row: row[1]), ("purchase", lambda row: row[2])):
        revenue: Counter[str] = Counter()
        orders_per_buyer: dict[str, Counter[int]] = {}
        for row in rows:
            channel = pick(row) or "(unknown)"
            revenue[channel] += row[3]
            orders_per_buyer.setdefault(channel, Counter())[row[0]] += 1
        result[dimension] = {
            channel: {"revenue_share": revenue[channel] / total,
                      "repeat_rate": sum(1 for n in buyers.values() if n >= 2) / len(buyers)}
            for channel, buyers in orders_per_buyer.items()
        }
    return result


# --------------------------------------------------------------------------- reading the page


def count(text: str) -> int:
    return int(text.replace(",", ""))


def rate(text: str) -> float:
    assert text.endswith("%"), text
    return float(text[:-1]) / 100


def shown(page: Any) -> dict[str, str]:
    """``data-metric`` -> the text the browser renders for it."""
    return page.eval_on_selector_all(
        "[data-metric]", "nodes => Object.fromEntries(nodes.map(n => [n.dataset.metric, n.textContent.trim()]))")


def bar_width(page: Any, key: str) -> float:
    box = page.locator(f'[data-bar="{key}"]').bounding_box()
    assert box is not None, f"bar {key} is not rendered"
    return box["width"]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def chromium() -> str:
    path = shutil.which(os.environ.get("NURTURE_CHROMIUM") or "chromium")
    if not path:
        missing_service(f"no Chromium at {os.environ.get('NURTURE_CHROMIUM') or '`chromium` on PATH'}: run "
                        "`make browser` (Debian package chromium), or set NURTURE_CHROMIUM to the browser's path")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing_service("the playwright package is missing: run `make install` (pip install -e '.[test]')")
    return path


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.txt.j2").write_text("hi", encoding="utf-8")
    return parse_config(CONFIG, base=tmp_path)


@pytest.fixture
def served(config: AppConfig, sqlite_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The base URL of a uvicorn server with the dashboard over the seeded database."""
    seed_store(sqlite_engine)
    seed_loyalty(sqlite_engine, config)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    app = Starlette(routes=dashboard_routes(config=config, engine=sqlite_engine, clock=lambda: NOW))
    with ServerThread(app) as url:
        yield url


@pytest.fixture
def browser_page(chromium: str, served: str) -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page that sends the dashboard password, and the problems it reports:
    console errors (a CSP violation is one), page errors, failed requests, HTTP errors."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            context = browser.new_context(base_url=served, http_credentials={"username": "ops", "password": PASSWORD},
                                          viewport={"width": 1200, "height": 900})
            page = context.new_page()
            page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
                    if message.type in ("error", "warning") else None)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("requestfailed", lambda request: problems.append(f"failed: {request.url} {request.failure}"))
            page.on("response", lambda response: problems.append(f"HTTP {response.status}: {response.url}")
                    if response.status >= 400 else None)
            page.on("request", lambda request: None if request.url.startswith(served)
                    else problems.append(f"request elsewhere: {request.url}"))
            yield page, problems
        finally:
            browser.close()


# --------------------------------------------------------------------------- tests


def test_the_pages_show_the_figures_in_the_database(browser_page, sqlite_engine, tmp_path):
    page, problems = browser_page

    # The index: every campaign with its figures, and the store-wide channel analysis.
    assert page.goto("/dashboard").status == 200
    index = shown(page)
    for name in ("spring_sale", "welcome"):
        want = expected_figures(sqlite_engine, name)
        assert count(index[f"campaign.{name}.enrolled"]) == want["enrolled"], name
        assert count(index[f"campaign.{name}.held_out"]) == want["held_out"], name
        assert count(index[f"campaign.{name}.sent"]) == want["sent"], name
    store = expected_store_channels(sqlite_engine)
    for dimension, channels in store.items():
        for channel, figures in channels.items():
            for metric, value in figures.items():
                # One decimal on the page: within half a tenth of a percentage point.
                assert rate(index[f"{dimension}.{channel}.{metric}"]) == pytest.approx(value, abs=0.0005 + 1e-9), (
                    dimension, channel, metric)
    assert page.locator("svg#acquisition-chart rect.bar").count() == 2 * len(store["acquisition"])
    assert page.locator("svg#purchase-chart rect.bar").count() == 2 * len(store["purchase"])

    # Following the link to the campaign page.
    page.click('a[href="/dashboard/campaigns/spring_sale"]')
    page.wait_for_url("**/dashboard/campaigns/spring_sale")
    figures = shown(page)
    want = expected_figures(sqlite_engine, "spring_sale")
    assert count(figures["enrolled"]) == want["enrolled"] and count(figures["sent"]) == want["sent"]
    for stage in ("enrolled", "messaged", "delivered", "opened", "clicked", "converted"):
        assert count(figures[f"funnel.{stage}"]) == want[stage], stage
        assert rate(figures[f"funnel.{stage}.share"]) == pytest.approx(want[stage] / want["enrolled"], abs=0.0005 + 1e-9)
    assert count(figures["conversion.treated.converted"]) == want["converted"]
    assert count(figures["conversion.treated.enrolled"]) == want["enrolled"]
    assert count(figures["conversion.holdout.converted"]) == want["converted_holdout"]
    assert count(figures["conversion.holdout.enrolled"]) == want["held_out"]
    treated_rate = want["converted"] / want["enrolled"]
    holdout_rate = want["converted_holdout"] / want["held_out"]
    assert float(figures["lift.absolute"]) == pytest.approx((treated_rate - holdout_rate) * 100, abs=0.005 + 1e-9)
    assert {channel: count(figures[f"channel.{channel}.sent"]) for channel in ("mail", "text")} == want["sent_by_channel"]

    # The charts were drawn, to scale: bar widths in proportion to the figures they stand for.
    enrolled_bar = bar_width(page, "funnel.enrolled")
    assert enrolled_bar > 100
    for stage in ("messaged", "opened", "clicked", "converted"):
        assert bar_width(page, f"funnel.{stage}") / enrolled_bar == pytest.approx(want[stage] / want["enrolled"], abs=0.01)
    assert bar_width(page, "funnel.opened") < bar_width(page, "funnel.messaged") < enrolled_bar
    treated_bar, holdout_bar = bar_width(page, "conversion.treated"), bar_width(page, "conversion.holdout")
    assert treated_bar / max(treated_bar, holdout_bar) == pytest.approx(
        treated_rate / max(treated_rate, holdout_rate), abs=0.01)
    assert page.locator("svg#channel-chart rect.bar").count() == 3 * len(want["sent_by_channel"])
    assert page.locator("svg#funnel-chart text.value").first.text_content() == (
        f"{want['enrolled']:,} (100.0%)")

    page.screenshot(path=str(tmp_path / "campaign.png"), full_page=True)
    assert problems == []


def test_the_loyalty_page_shows_the_points_in_the_database(browser_page, sqlite_engine, config, tmp_path):
    page, problems = browser_page
    want = expected_loyalty(sqlite_engine, config)
    assert want["outstanding"] > 0 and want["debts"] > 0  # the seed has both, and refunds and expiry
    assert page.goto("/dashboard").status == 200
    page.click('a[data-nav="loyalty"]')  # from the nav of every page
    page.wait_for_url("**/dashboard/loyalty")
    figures = shown(page)
    assert count(figures["outstanding"]) == want["outstanding"]
    assert float(figures["liability"].replace(",", "")) == pytest.approx(want["liability"], abs=0.005)
    assert count(figures["debts"]) == want["debts"]
    assert 0 < want["expiring"][30] < want["expiring"][60] == want["expiring"][90]
    for days, points in want["expiring"].items():
        assert count(figures[f"expiring.{days}"]) == points, days
    months = want["months"]
    assert {"2026-05", "2026-06"} <= set(months)  # orders of the last 60 days; the reviews' expiry in June
    for month in ("2025-07", "2025-12", "2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06"):
        kinds = months.get(month, Counter())
        for measure, kind in (("earned", "earn"), ("redeemed", "redeem"), ("expired", "expire"),
                              ("reversed", "reverse")):
            assert count(figures[f"month.{month}.{measure}"]) == kinds[kind], (month, measure)
        for rule in ("purchase", "review", "share"):
            key = f"source.{month}.{rule}.earned"
            assert count(figures.get(key, "0")) == kinds[f"earn:{rule}"], key
    assert months["2026-06"]["expire"] > 0 and months["2026-06"]["reverse"] > 0
    for tier, customers in want["tiers"].items():
        assert count(figures[f"tier.{tier}.customers"]) == customers, tier
        assert rate(figures[f"tier.{tier}.share"]) == pytest.approx(customers / want["customers"], abs=0.0005 + 1e-9)
    assert want["tiers"]["silver"] > 0
    # The charts, to scale: June's earned bar against May's, and the tiers' shares.
    may, june = bar_width(page, "month.2026-05.earned"), bar_width(page, "month.2026-06.earned")
    assert june / may == pytest.approx(months["2026-06"]["earn"] / months["2026-05"]["earn"], abs=0.01)
    assert bar_width(page, "tier.silver") / bar_width(page, "tier.member") == pytest.approx(
        want["tiers"]["silver"] / want["tiers"]["member"], abs=0.01)
    page.screenshot(path=str(tmp_path / "loyalty.png"), full_page=True)
    assert problems == []


def test_a_browser_with_a_wrong_password_is_refused(chromium, served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            context = browser.new_context(base_url=served, http_credentials={"username": "ops", "password": "wrong"})
            page = context.new_page()
            # The server challenges, the browser answers with the wrong password, and gets
            # the refusal page: no figure on it.
            response = page.goto("/dashboard/campaigns/spring_sale")
            assert response is not None and response.status == 401
            assert response.headers["www-authenticate"].startswith("Basic ")
            assert page.locator("[data-metric]").count() == 0
            assert page.locator("h1").text_content() == "Password required"
        finally:
            browser.close()
