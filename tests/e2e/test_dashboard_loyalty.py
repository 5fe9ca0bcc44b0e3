"""The dashboard's loyalty page over Starlette's TestClient: the hand-computed history of
tests/campaigns/reports/test_loyalty.py shown figure by figure, the nav link, the JSON
twin, the password rule, and a 404 page while ``[loyalty]`` is off."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

from campaigns.project.loading import parse_config
from tests.campaigns.reports import test_loyalty as hand
from tests.e2e.test_dashboard import AUTH, PASSWORD, PASSWORD_ENV, assert_secured, metrics
from workers.http.dashboard import dashboard_routes, format_signed

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

CONFIG = f"""
[api]
dashboard_password_env = "{PASSWORD_ENV}"

[loyalty]
enabled = true
point_value = 0.05
"""


def client_for(text: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    config = parse_config(text, base=tmp_path)
    return TestClient(Starlette(routes=dashboard_routes(config=config, engine=engine, clock=lambda: hand.REPORT_NOW)))


@pytest.fixture
def client(sqlite_engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    hand.build_history(sqlite_engine)
    with client_for(CONFIG, sqlite_engine, tmp_path, monkeypatch) as test_client:
        yield test_client


def test_the_page_shows_the_hand_computed_figures(client):
    response = client.get("/dashboard/loyalty", auth=AUTH)
    assert response.status_code == 200
    assert_secured(response)
    shown = metrics(response.text).values
    assert (shown["outstanding"], shown["liability"], shown["holders"], shown["debts"]) == (
        "1,163", "58.15", "3", "300")
    assert (shown["expiring.30"], shown["expiring.60"], shown["expiring.90"]) == ("15", "25", "30")
    assert [shown[f"month.2026-04.{m}"] for m in ("earned", "redeemed", "expired", "reversed", "adjusted", "net")] == [
        "20", "0", "10", "1,200", "30", "-1,160"]
    assert (shown["month.2026-03.earned"], shown["month.2026-03.upgrades"], shown["month.2026-05.downgrades"]) == (
        "1,000", "1", "1")
    assert shown["source.2026-04.purchase.adjusted"] == "-17"
    assert shown["source.2026-05.referral.earned"] == "100"
    assert shown["kind.2026-03.coupons"] == "12"
    assert (shown["tier.member.customers"], shown["tier.member.share"], shown["tier.silver.customers"]) == (
        "3", "75.0%", "1")
    assert shown["move.2026-05.silver.member"] == "1"
    assert '<a href="/dashboard/loyalty" data-nav="loyalty">' in response.text
    # Every page links to it.
    assert 'data-nav="loyalty"' in client.get("/dashboard", auth=AUTH).text


def test_the_json_twin_and_the_password(client):
    data = client.get("/dashboard/api/loyalty", auth=AUTH).json()
    assert (data["outstanding"], data["liability"], data["now"]) == (1163, 58.15, hand.REPORT_NOW.isoformat())
    for path in ("/dashboard/loyalty", "/dashboard/api/loyalty"):
        refused = client.get(path, auth=("anyone", "wrong"))
        assert refused.status_code == 401 and "data-metric" not in refused.text, path


def test_with_loyalty_off_the_page_is_a_404_and_not_linked(sqlite_engine, tmp_path, monkeypatch):
    text = CONFIG.replace("enabled = true", "enabled = false")
    with client_for(text, sqlite_engine, tmp_path, monkeypatch) as off:
        page = off.get("/dashboard/loyalty", auth=AUTH)
        assert page.status_code == 404 and "Loyalty is off" in page.text
        assert off.get("/dashboard/api/loyalty", auth=AUTH).status_code == 404
        assert 'data-nav="loyalty"' not in off.get("/dashboard", auth=AUTH).text


def test_signed_changes():
    assert [format_signed(value) for value in (-1160, 0, 1225, None)] == ["-1,160", "+0", "+1,225", "–"]
