"""Matching on import (campaigns.customers.identity.resolution) over the hand-made three-source
data set (three_sources.py), on SQLite and PostgreSQL: the persons found are the true ones,
whatever the order of the imports and of the rows in a file."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.config.identity import IdentityConfig
from campaigns.customers.identity.identifiers import Identifier
from campaigns.customers.identity.resolution import (
    MatchPlan,
    attach_identifiers,
    match_batch,
    row_identity,
)
from campaigns.customers.importing.files import import_file
from campaigns.errors import DataImportError
from campaigns.store.db import make_engine, upgrade
from campaigns.store.models import Consent, Customer, CustomerIdentifier, CustomerMerge, IdentityReview
from tests.campaigns.customers.identity import three_sources as data

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def import_sources(engine, directory: Path, order=data.SOURCES, *, batch_size: int = 1000) -> dict[str, object]:
    reports = {}
    for source in order:
        path = data.write_file(directory, source)
        reports[source] = import_file(engine, "customers", path, source=source, identity=data.RULES,
                                      batch_size=batch_size)
        assert reports[source].rejected == []
    return reports


def customer_of(engine, reference: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(CustomerIdentifier.customer_id).where(
            CustomerIdentifier.kind == "id", CustomerIdentifier.value == reference)).scalar_one()


def test_three_sources_end_as_the_true_persons(engine, tmp_path: Path) -> None:
    reports = import_sources(engine, tmp_path)
    assert data.grouping(engine) == data.truth()
    # pos: three new persons; shop: chain and consent join pos customers, five new;
    # wechat: chain and follower join by unionid, the lurker is new.
    assert [(r.created, r.updated, r.merged) for r in reports.values()] == [(3, 0, 0), (5, 2, 0), (1, 2, 0)]
    assert reports["shop"].reviews_opened == 2  # the family email, the twins' phone
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Customer.__table__)).scalar_one() == 9


def test_chain_a_b_by_phone_b_c_by_unionid_merges_when_c_and_a_come_first(engine, tmp_path: Path) -> None:
    # wechat (C) and pos (A) first are two customers; shop (B) links both: a merge.
    reports = import_sources(engine, tmp_path, ("wechat", "pos", "shop"))
    assert data.grouping(engine) == data.truth()
    shop = reports["shop"]
    assert (shop.created, shop.updated, shop.merged) == (4, 3, 1)  # only the chain is a merge
    with engine.connect() as conn:
        merges = conn.execute(sa.select(CustomerMerge.reason, CustomerMerge.actor)).all()
    assert merges == [("import:shop", "match:phone+unionid")]
    chain = customer_of(engine, "pos:88")
    assert {customer_of(engine, ref) for ref in data.person_ids("chain")} == {chain}
    with engine.connect() as conn:
        survivor = conn.execute(sa.select(Customer).where(Customer.id == chain)).one()
        kinds = set(conn.execute(sa.select(CustomerIdentifier.kind, CustomerIdentifier.value)
                                 .where(CustomerIdentifier.customer_id == chain)).all())
    # The earliest customer survives: the wechat one, where the person first came from.
    assert survivor.external_id == "wechat:o-chain"
    assert survivor.acquisition_channel == "social"
    assert {("phone", "+8613800000001"), ("unionid", "U-chain"), ("openid", "mp:o-chain"),
            ("email", "li.wei@example.com")} <= kinds


def test_family_email_opens_a_review_item_not_a_merge(engine, tmp_path: Path) -> None:
    import_sources(engine, tmp_path)
    dad, mum = customer_of(engine, "shop:1003"), customer_of(engine, "shop:1004")
    assert dad != mum
    with engine.connect() as conn:
        reviews = conn.execute(sa.select(IdentityReview.customer_id, IdentityReview.other_customer_id,
                                         IdentityReview.kind, IdentityReview.value, IdentityReview.status)).all()
    assert (min(dad, mum), max(dad, mum), "email", "family@example.com", "open") in reviews
    twins = sorted((customer_of(engine, "shop:1005"), customer_of(engine, "shop:1006")))
    assert (*twins, "phone", "+8613800000007", "open") in reviews


def test_conflicting_consent_ends_withdrawn_in_either_order(engine, tmp_path: Path) -> None:
    for order, directory in ((("pos", "shop"), tmp_path / "a"), (("shop", "pos"), tmp_path / "b")):
        directory.mkdir()
        with engine.begin() as conn:  # a clean database per order
            for table in ("identity_review", "customer_merge", "consent", "customer_identifier", "customer"):
                conn.execute(sa.text(f"DELETE FROM {table}"))
        import_sources(engine, directory, order)
        person = customer_of(engine, "pos:89")
        assert customer_of(engine, "shop:1002") == person
        with engine.connect() as conn:
            status = conn.execute(sa.select(Consent.status).where(Consent.customer_id == person,
                                                                  Consent.channel == "email")).scalar_one()
        assert status == "withdrawn", order


def test_reimport_changes_nothing(engine, tmp_path: Path) -> None:
    import_sources(engine, tmp_path)
    before = data.snapshot(engine)
    again = import_sources(engine, tmp_path)  # the same files again, in the same order
    assert data.snapshot(engine) == before
    assert all((r.created, r.merged, r.reviews_opened) == (0, 0, 0) for r in again.values())


def test_rows_of_one_batch_sharing_a_strong_identifier_are_one_person(engine, tmp_path: Path) -> None:
    path = tmp_path / "shop.csv"
    path.write_text("customer_id,unionid,email\n1,U9,a@example.com\n2,U9,\n3,,a@example.com\n", encoding="utf-8")
    report = import_file(engine, "customers", path, source="shop", identity=data.RULES)
    assert (report.created, report.updated, report.merged, report.reviews_opened) == (2, 0, 0, 1)
    assert customer_of(engine, "shop:1") == customer_of(engine, "shop:2") != customer_of(engine, "shop:3")


def test_match_option_overrides_the_source_and_an_unknown_source_namespaces_ids(engine, tmp_path: Path) -> None:
    import_sources(engine, tmp_path, ("shop",))
    path = tmp_path / "crm.csv"
    path.write_text("customer_id,email\n7,fang@example.com\n8,family@example.com\n", encoding="utf-8")
    # crm is in no config: without --match its rows only namespace their ids.
    report = import_file(engine, "customers", path, source="crm", identity=data.RULES)
    assert (report.created, report.merged) == (2, 0)
    strong_email = IdentityConfig(weak=(), sources=data.RULES.sources)
    report = import_file(engine, "customers", path, source="crm2", match=("email",), identity=strong_email)
    assert report.created == 0 and report.updated == 2
    assert customer_of(engine, "crm2:7") == customer_of(engine, "shop:1002")


def test_unknown_match_kind_is_a_clear_error(engine, tmp_path: Path) -> None:
    path = data.write_file(tmp_path, "pos")
    with pytest.raises(DataImportError, match="cannot match on 'fax'"):
        import_file(engine, "customers", path, source="pos", match=("fax",), identity=data.RULES)


def test_identifier_given_to_another_customer_meanwhile_merges(engine) -> None:
    """Race safety: a concurrent import attached the unionid to another customer between
    this batch's read and its write; the batch's re-read finds it and merges."""
    plan = MatchPlan.of(rules=data.RULES, source="shop")
    row = row_identity("1", {"unionid": "U-race"}, plan=plan)
    with engine.begin() as conn:
        mine = conn.execute(sa.insert(Customer.__table__).values(external_id="shop:1", created_at=NOW,
                            updated_at=NOW, attributes={}).returning(Customer.__table__.c.id)).scalar_one()
        batch = match_batch(conn, [row], plan=plan)
        other = conn.execute(sa.insert(Customer.__table__).values(external_id="wechat:o9", created_at=NOW,
                             updated_at=NOW, attributes={}).returning(Customer.__table__.c.id)).scalar_one()
        conn.execute(sa.insert(CustomerIdentifier.__table__).values(
            customer_id=other, kind="unionid", value="U-race", first_seen_at=NOW, last_seen_at=NOW))
        attached = attach_identifiers(conn, batch, [mine], plan=plan, now=NOW)
    assert attached.merged == 1
    assert attached.customer(mine) == attached.customer(other)
    with engine.connect() as conn:
        holders = conn.execute(sa.select(CustomerIdentifier.kind, CustomerIdentifier.value,
                                         CustomerIdentifier.customer_id)).all()
    survivor = attached.customer(mine)
    assert {(kind, value) for kind, value, pk in holders if pk == survivor} >= {
        ("id", "shop:1"), ("unionid", "U-race")}


def test_phone_verification_makes_a_match_strong() -> None:
    plan = MatchPlan.of(rules=data.RULES, source="shop")
    assert not plan.joins("phone")
    assert plan.joins("phone", stored_verified=True)
    assert not plan.joins("email")
    assert MatchPlan.of(rules=data.RULES, source="pos").joins("phone")
    assert MatchPlan.of(rules=IdentityConfig(require_verified_phone=False), match=("phone",)).joins("phone")
    assert row_identity("o1", {"wechat_openid": "o1"}, plan=MatchPlan.of(rules=data.RULES, source="wechat")).all == (
        Identifier("id", "wechat:o1"), Identifier("openid", "mp:o1"))


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    """One migrated SQLite file, copied for each example (a migration per example is slow)."""
    path = tmp_path_factory.mktemp("template") / "nurture.db"
    made = make_engine(f"sqlite:///{path}")
    upgrade(made)
    made.dispose()
    return path


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    order=st.permutations(data.SOURCES),
    row_orders=st.tuples(*(st.permutations(range(len(data.ROWS[source]))) for source in data.SOURCES)),
    batch_size=st.sampled_from([1, 2, 1000]),
)
def test_grouping_does_not_depend_on_import_or_row_order(template_db: Path, tmp_path_factory, order, row_orders,
                                                         batch_size) -> None:
    directory = tmp_path_factory.mktemp("example")
    shutil.copy(template_db, directory / "nurture.db")
    made = make_engine(f"sqlite:///{directory / 'nurture.db'}")
    try:
        for source in order:
            rows = row_orders[data.SOURCES.index(source)]
            path = data.write_file(directory, source, rows)
            report = import_file(made, "customers", path, source=source, identity=data.RULES, batch_size=batch_size)
            assert report.rejected == []
        assert data.grouping(made) == data.truth()
    finally:
        made.dispose()


def test_a_batch_of_new_identifiers_is_not_read_back_after_its_insert(engine) -> None:
    """The insert's row count says every identifier was taken, so nothing is read again
    and no last-seen time is rewritten (at 1M persons, doing both anyway doubled the import)."""
    plan = MatchPlan.of(rules=data.RULES, source="shop")
    rows = [row_identity(str(n), {"email": f"new{n}@example.com", "unionid": f"U-{n}"}, plan=plan) for n in range(5)]
    statements: list[str] = []
    with engine.begin() as conn:
        customers = [conn.execute(sa.insert(Customer.__table__).values(
            external_id=f"shop:{n}", created_at=NOW, updated_at=NOW, attributes={})
            .returning(Customer.__table__.c.id)).scalar_one() for n in range(5)]
        batch = match_batch(conn, rows, plan=plan)
        sa.event.listen(conn, "before_cursor_execute", lambda *args: statements.append(args[2]))
        attached = attach_identifiers(conn, batch, customers, plan=plan, now=NOW)
    assert attached.merged == 0 and attached.reviews_opened == 0
    assert [" ".join(sql.split()[:3]) for sql in statements] == ["INSERT INTO customer_identifier"]
