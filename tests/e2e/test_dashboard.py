"""The dashboard over Starlette's TestClient: authentication, security headers, 404s,
escaping, the JSON endpoint, and the figures the pages show for the hand-computed
campaign of ``tests/campaigns/reports/test_funnel.py``."""

from __future__ import annotations

import base64
import json
import re
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

from campaigns.config.schema import AppConfig
from campaigns.project.loading import parse_config
from campaigns.reports.campaign import campaign_report
from campaigns.reports.funnel import campaign_funnel
from campaigns.store.models import Customer, Order
from tests.campaigns.reports import test_funnel as hand
from workers.http.dashboard import (
    SECURITY_HEADERS,
    dashboard_routes,
    format_count,
    format_money,
    format_pct,
    format_pts,
)

with warnings.catch_warnings():
    # Starlette 1.x wants httpx2 for its test client and warns at import; httpx works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

PASSWORD_ENV = "NURTURE_TEST_DASHBOARD_PASSWORD"
PASSWORD = "correct horse battery staple ü"
NOW = hand.NOW
NASTY = '<script>alert("x")</script>'
#: The hand-computed campaigns, a dashboard password variable of our own, and a
#: description a careless page would execute.
CONFIG = f"""
[api]
dashboard_password_env = "{PASSWORD_ENV}"
""" + hand.CONFIG.replace('name = "promo"\n', f'name = "promo"\ndescription = {json.dumps(NASTY)}\n')


class Metrics(HTMLParser):
    """Collects the text of every element carrying ``data-metric``, and the ``data-bar`` hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.bars: list[str] = []
        self._open: list[tuple[str, str]] = []  # (tag, metric) of the hooked elements we are inside
        self._text: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("data-bar"):
            self.bars.append(attributes["data-bar"] or "")
        metric = attributes.get("data-metric")
        if metric:
            assert metric not in self._text, f"data-metric {metric!r} appears twice"
            self._open.append((tag, metric))
            self._text[metric] = []

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][0] == tag:
            _, metric = self._open.pop()
            self.values[metric] = " ".join("".join(self._text[metric]).split())

    def handle_data(self, data: str) -> None:
        for _, metric in self._open:
            self._text[metric].append(data)


def metrics(html: str) -> Metrics:
    parser = Metrics()
    parser.feed(html)
    parser.close()
    return parser


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    hand.make_config(tmp_path)  # writes the template the campaigns name
    return parse_config(CONFIG, base=tmp_path)


@pytest.fixture
def engine(sqlite_engine: sa.Engine) -> sa.Engine:
    hand.seed(sqlite_engine)
    with sqlite_engine.begin() as conn:
        # A channel name from imported data, which the index must escape.
        customer = conn.execute(sa.insert(Customer.__table__).values(
            external_id="shopper", acquisition_channel="<b>bold</b>", attributes={},
        ).returning(Customer.__table__.c.id)).scalar_one()
        conn.execute(sa.insert(Order.__table__).values(order_id="o-shopper", customer_id=customer, amount=1234.5,
                                                       ordered_at=datetime(2026, 5, 1, tzinfo=UTC)))
    return sqlite_engine


@pytest.fixture
def client(config: AppConfig, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    app = Starlette(routes=dashboard_routes(config=config, engine=engine, clock=lambda: NOW))
    with TestClient(app) as test_client:
        yield test_client


AUTH = ("anyone", PASSWORD)


def assert_secured(response) -> None:
    for header, value in SECURITY_HEADERS.items():
        assert response.headers.get(header) == value, header
    # The policy as the issue states it, not merely as the module defines it.
    assert response.headers["content-security-policy"] == (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'")
    assert response.headers["cache-control"] == "no-store"


# --------------------------------------------------------------------------- access


def test_without_the_password_variable_every_page_is_503_naming_the_variable(client, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV)
    for path in ("/dashboard", "/dashboard/campaigns/promo", "/dashboard/api/campaigns/promo"):
        response = client.get(path, auth=AUTH)
        assert response.status_code == 503, path
        assert response.headers["content-type"].startswith("text/html")
        assert PASSWORD_ENV in response.text
        assert "promo" not in response.text.replace("/dashboard", "")  # no figures, no names
        assert "www-authenticate" not in response.headers
        assert_secured(response)


@pytest.mark.parametrize("authorization", [
    None,
    "Basic " + base64.b64encode(b"anyone:wrong").decode(),
    "Basic " + base64.b64encode(PASSWORD.encode()).decode(),  # no user name separator
    "Basic " + base64.b64encode(f"anyone:{PASSWORD}x".encode()).decode(),
    "Basic not-base64!",
    f"Bearer {PASSWORD}".encode(),
])
def test_a_missing_or_wrong_password_is_401_with_a_basic_challenge(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    for path in ("/dashboard", "/dashboard/campaigns/promo", "/dashboard/api/campaigns/promo",
                 "/dashboard/campaigns/nope"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == 'Basic realm="nurture dashboard", charset="UTF-8"'
        assert "data-metric" not in response.text  # not a figure
        assert_secured(response)


def test_the_right_password_with_any_user_name_opens_every_page(client):
    for user in ("anyone", "", "ops@example.com"):
        for path in ("/dashboard", "/dashboard/campaigns/promo", "/dashboard/api/campaigns/other"):
            response = client.get(path, auth=(user, PASSWORD))
            assert response.status_code == 200, (user, path)
            assert_secured(response)


def test_an_unknown_campaign_is_a_404_page_not_a_traceback(client):
    response = client.get("/dashboard/campaigns/nope", auth=AUTH)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "No such campaign" in response.text and "nope" in response.text
    assert_secured(response)
    api = client.get("/dashboard/api/campaigns/nope", auth=AUTH)
    assert api.status_code == 404 and api.json() == {"error": "no campaign named 'nope'"}
    assert_secured(api)


# --------------------------------------------------------------------------- escaping


def test_a_name_in_the_url_is_escaped_on_the_404_page(client):
    response = client.get("/dashboard/campaigns/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E", auth=AUTH)
    assert response.status_code == 404
    assert "<img" not in response.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in response.text


def test_config_text_and_data_are_escaped(client):
    page = client.get("/dashboard/campaigns/promo", auth=AUTH).text
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    index = client.get("/dashboard", auth=AUTH).text
    assert "<b>" not in index
    assert "&lt;b&gt;bold&lt;/b&gt;" in index


def test_pages_load_nothing_from_elsewhere(client):
    for path in ("/dashboard", "/dashboard/campaigns/promo"):
        page = client.get(path, auth=AUTH).text
        assert "<script" not in page and not re.search(r"\son[a-z]+\s*=", page)  # no script, no handlers
        # The one URL on the page that is not ours is the SVG namespace, which loads nothing.
        assert page.replace('xmlns="http://www.w3.org/2000/svg"', "").count("http") == 0


# --------------------------------------------------------------------------- figures


def test_the_campaign_page_shows_the_hand_computed_funnel_and_conversion(client):
    page = metrics(client.get("/dashboard/campaigns/promo", auth=AUTH).text)
    shown = page.values

    for stage, count in hand.EXPECTED.items():
        assert shown[f"funnel.{stage}"] == format_count(count), stage
        assert shown[f"funnel.{stage}.share"] == f"{count / 9 * 100:.1f}%", stage
    assert (shown["conversion.treated.converted"], shown["conversion.treated.enrolled"]) == ("2", "9")
    assert (shown["conversion.holdout.converted"], shown["conversion.holdout.enrolled"]) == ("1", "2")
    assert (shown["conversion.treated.rate"], shown["conversion.holdout.rate"]) == ("22.2%", "50.0%")
    assert shown["lift.absolute"] == "-27.78"  # 2/9 - 1/2, in points
    assert shown["lift.significant"] == "not significant"
    # mail: c1 x2, c2, c7, c8 and the holdout's stray row sent, c4 failed; text: c3.
    assert (shown["channel.mail.sent"], shown["channel.mail.failed"], shown["channel.text.sent"]) == ("6", "1", "1")
    assert shown["now"] == "2026-06-30 12:00 UTC"
    # Every chart is there, with a bar per figure it draws.
    html = client.get("/dashboard/campaigns/promo", auth=AUTH).text
    assert all(f'<svg class="chart" id="{chart}"' in html for chart in ("funnel-chart", "conversion-chart", "channel-chart"))
    assert set(page.bars) >= {f"funnel.{stage}" for stage in hand.EXPECTED} | {
        "conversion.treated", "conversion.holdout", "channel.mail.open_rate", "channel.text.delivery_rate"}


def test_the_index_lists_every_campaign_in_config_order_with_its_figures(client, config, engine):
    response = client.get("/dashboard", auth=AUTH)
    page = metrics(response.text)

    assert response.text.index('data-campaign="promo"') < response.text.index('data-campaign="other"')
    assert '<a href="/dashboard/campaigns/promo">promo</a>' in response.text
    for name in ("promo", "other"):
        report = campaign_report(engine, config, name, now=NOW)
        assert page.values[f"campaign.{name}.enrolled"] == format_count(report["enrolled"])
        assert page.values[f"campaign.{name}.sent"] == format_count(report["sent"])
        assert page.values[f"campaign.{name}.open_rate"] == format_pct(report["engagement"]["open_rate"])
    assert (page.values["campaign.promo.enrolled"], page.values["campaign.promo.held_out"]) == ("9", "2")
    assert page.values["campaign.other.lift"] == "–"  # no holdout
    # Store-wide: the shopper (acquired through "<b>bold</b>") spent 1,234.50; the seeded
    # customers (no acquisition channel) 4 x 50. No order names its purchase channel.
    assert page.values["acquisition.<b>bold</b>.revenue"] == "1,234.50"
    assert page.values["acquisition.<b>bold</b>.revenue_share"] == format_pct(1234.5 / 1434.5)
    assert page.values["acquisition.(unknown).revenue"] == "200.00"
    assert (page.values["purchase.(unknown).orders"], page.values["purchase.(unknown).revenue_share"]) == ("5", "100.0%")
    assert all(f'<svg class="chart" id="{chart}"' in response.text for chart in ("acquisition-chart", "purchase-chart"))
    assert "acquisition.<b>bold</b>.repeat_rate" in page.bars


def test_a_channel_without_receipts_counts_accepted_sends_as_delivered_and_says_so(client, config, engine):
    # "other" went out on an outbox channel and no receipt came back: its delivery rate
    # read 0.0 %, as if nothing had arrived.
    report = campaign_report(engine, config, "other", now=NOW)
    index = metrics(client.get("/dashboard", auth=AUTH).text)
    page = metrics(client.get("/dashboard/campaigns/other", auth=AUTH).text)

    assert report["assumed_delivered"] == ["mail"] and report["engagement"]["delivery_rate"] == 1.0
    assert index.values["campaign.other.delivery_rate"] == "100.0%"
    assert "mail: no delivery receipts, so delivered counts the messages the provider accepted" in \
        " ".join(index.values["campaign.other.delivery_note"].split())
    assert "no delivery receipts" in page.values["delivery_note"]


def test_the_json_endpoint_is_the_report_and_the_funnel(client, config, engine):
    response = client.get("/dashboard/api/campaigns/promo", auth=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    report = campaign_report(engine, config, "promo", now=NOW)
    assert response.json() == json.loads(json.dumps({
        "report": report, "funnel": campaign_funnel(engine, config, "promo", now=NOW)}))
    assert response.json()["funnel"]["opened"] == hand.EXPECTED["opened"]


def test_figures_are_formatted_for_people():
    assert (format_count(1234567), format_count(0), format_count(None)) == ("1,234,567", "0", "–")
    assert (format_pct(0.12345), format_pct(1.0), format_pct(0.0), format_pct(None)) == ("12.3%", "100.0%", "0.0%", "–")
    assert (format_money(1234.5), format_money(0), format_money(None)) == ("1,234.50", "0.00", "–")
    assert (format_pts(0.0234), format_pts(-0.005), format_pts(None)) == ("+2.34", "-0.50", "–")


def test_password_guesses_are_throttled_per_address_with_retry_after(config, engine, monkeypatch):
    # [api] defaults: 5 wrong passwords per 300 s per client address. The clock is the
    # app's own, moved by hand: nothing sleeps.
    from datetime import timedelta

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    now = [NOW]
    app = Starlette(routes=dashboard_routes(config=config, engine=engine, clock=lambda: now[0]))
    with TestClient(app) as guesser, TestClient(app, client=("192.0.2.7", 50000)) as colleague:
        for attempt in range(5):
            assert guesser.get("/dashboard", auth=("x", f"guess {attempt}")).status_code == 401
            now[0] += timedelta(seconds=10)
        # The sixth try is refused, even with the right password, until the first guess
        # (made 50 s ago) leaves the 300 s window.
        for auth in (("x", "guess 6"), AUTH):
            refused = guesser.get("/dashboard", auth=auth)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "250"
            assert "data-metric" not in refused.text
            assert_secured(refused)
        # Another address is not locked out by someone else's guesses.
        assert colleague.get("/dashboard", auth=AUTH).status_code == 200
        # A browser's first request carries no password: not a guess.
        assert colleague.get("/dashboard").status_code == 401
        now[0] += timedelta(seconds=250)
        assert guesser.get("/dashboard", auth=AUTH).status_code == 200
        # A success forgets the failures: five more guesses are allowed.
        for attempt in range(5):
            assert guesser.get("/dashboard", auth=("x", f"again {attempt}")).status_code == 401
        assert guesser.get("/dashboard", auth=AUTH).status_code == 429
