"""The demo's customers through the real import (issue #15 must-have 7): two sources with
overlap end as one customer per person, a second web shop account under a phone the till
verified is merged by the review decision, a family email stays two people, and the
omnichannel share is the people in both sources; on SQLite and PostgreSQL."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from campaigns.config.identity import IdentityConfig
from campaigns.config.schema import AppConfig
from campaigns.customers.demo_data import DemoFiles, write_demo_files
from campaigns.reports.identity import identity_report
from campaigns.store.db import make_engine
from campaigns.store.models import Customer, CustomerIdentifier, CustomerMerge, IdentityReview
from tests.e2e.test_demo import REPO_ROOT
from workers.cli import demo_identity

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[sa.Engine]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else sqlite_url
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def cfg() -> AppConfig:
    """The repository's [identity] (what `make demo` matches with); the rest is not read."""
    identity = IdentityConfig.model_validate(tomllib.loads((REPO_ROOT / "config.toml").read_text())["identity"])
    return AppConfig.model_construct(identity=identity)


def imported(engine: sa.Engine, cfg: AppConfig, files: DemoFiles) -> None:
    demo_identity.import_sources(engine, cfg, files)
    demo_identity.decide_reviews(engine, files, now=NOW)


def owner(conn: sa.Connection, external_id: str) -> int | None:
    source, _, value = external_id.partition(":")
    return conn.execute(sa.select(CustomerIdentifier.customer_id).where(
        CustomerIdentifier.kind == "id", CustomerIdentifier.value == f"{source}:{value}")).scalar()


def test_the_demo_people_end_as_one_customer_each_and_the_share_is_the_overlap(engine, cfg, tmp_path):
    files = write_demo_files(tmp_path / "data", customers=500, seed=7, now=NOW)
    assert files.two_accounts and files.family  # else the test proves nothing

    demo_identity.import_sources(engine, cfg, files)
    with engine.connect() as conn:
        opened = sorted(conn.execute(sa.select(IdentityReview.kind, IdentityReview.status)).all())
    demo_identity.decide_reviews(engine, files, now=NOW)

    # Every review item is one the data explains: the phone of a second web shop account
    # (the shop does not verify phones), a family email. No merge without a decision.
    assert opened == sorted([("phone", "open")] * len(files.two_accounts) + [("email", "open")] * len(files.family))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Customer)).scalar() == files.people
        for first, second, card in files.two_accounts:
            one = owner(conn, f"online:{first}")
            assert one is not None and owner(conn, f"online:{second}") == one == owner(conn, f"store:{card}")
        for shopper, member in files.family:
            assert owner(conn, f"online:{shopper}") != owner(conn, f"store:{member}")
        reviews = conn.execute(sa.select(IdentityReview.kind, IdentityReview.status)).all()
        merges = conn.execute(sa.select(CustomerMerge.reason, CustomerMerge.actor)).all()
    # A merged pair goes with the merged customer; the family's stays open for the user.
    assert reviews == [("email", "open")] * len(files.family)
    assert merges == [("review", demo_identity.DEMO_ACTOR)] * len(files.two_accounts)

    report = identity_report(engine, zone=ZoneInfo("Asia/Shanghai"))
    assert report["omnichannel_total"] == {"customers": files.people, "omnichannel": files.in_both,
                                           "share": files.in_both / files.people}
    assert {row["source"]: row["customers"] for row in report["sources"]}.keys() == {"online", "store"}
    store_share = next(row for row in report["omnichannel"] if row["channel"] == "store")
    assert store_share["share"] > report["omnichannel_total"]["share"]  # store members shop online most


def test_importing_the_store_first_gives_the_same_people(engine, cfg, tmp_path):
    files = write_demo_files(tmp_path / "data", customers=300, seed=5, now=NOW)
    reordered = DemoFiles(**{**vars(files), "customers": dict(reversed(files.customers.items()))})

    imported(engine, cfg, reordered)

    with engine.connect() as conn:
        customers = conn.execute(sa.select(sa.func.count()).select_from(Customer)).scalar()
        both = conn.execute(sa.select(sa.func.count()).select_from(
            sa.select(CustomerIdentifier.customer_id).where(CustomerIdentifier.kind == "id")
            .group_by(CustomerIdentifier.customer_id)
            .having(sa.func.count(sa.distinct(CustomerIdentifier.source)) > 1).subquery())).scalar()
    # With the store first a second account joins its person at once (the till verified the
    # phone before the shop's rows came), so there is nothing to review: one customer each.
    assert (customers, both) == (files.people, files.in_both)
