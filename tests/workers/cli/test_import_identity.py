"""``nurture import ... --source NAME --match KINDS`` through the Typer app (issue #15): two
systems' files end as one customer per person under the project's ``[identity]``, ``--match``
overrides a source's configured kinds, orders name their customer by its id in the source,
an import's merges bring the survivor's profile in step, and mistakes in the options are one
line and exit 2 (the matching itself: tests/campaigns/customers/identity/test_resolution.py)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from campaigns.store.models import Customer, CustomerIdentifier, CustomerProfile, Order
from tests.workers.cli.win_back import assert_no_crash, invoke

#: The tills verify phones by SMS code; the web shop matches on phone but verifies nothing.
IDENTITY = """
[identity.sources.store]
match = ["phone"]
verified = ["phone"]

[identity.sources.shop]
match = ["phone"]
"""

#: Ann is in both systems under one phone written two ways; Bob only in the store, Cy only online.
STORE_CSV = """
customer_id,name,phone,acquisition_channel
S1,Ann,138 0013 8000,store
S2,Bob,139 0013 9000,store
"""
SHOP_CSV = """
customer_id,name,phone,email,acquisition_channel
1001,Ann Lee,+86 138-0013-8000,ann@example.com,ecommerce
1002,Cy,137 0013 7000,cy@example.com,ecommerce
"""
ANN_PHONE = "+8613800138000"


def with_identity(project, text: str = IDENTITY):
    """The project's config with ``text`` (an [identity] section) appended."""
    project.config.write_text(project.config.read_text() + text)
    return project


def holders(engine) -> dict[str, int]:
    """Every ``id`` identifier -> the customer row holding it."""
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(CustomerIdentifier.value, CustomerIdentifier.customer_id)
                                 .where(CustomerIdentifier.kind == "id")).all())


def customers(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(Customer)).scalar_one()


def import_file(project, kind: str, name: str, text: str, *args: str):
    result = invoke("import", kind, project.write(name, text), "-c", project.config, *args)
    assert_no_crash(result)
    return result


def test_two_sources_end_as_one_customer_per_person(project, engine):
    with_identity(project)

    store = import_file(project, "customers", "store.csv", STORE_CSV, "--source", "store")
    shop = import_file(project, "customers", "shop.csv", SHOP_CSV, "--source", "shop")

    assert (store.exit_code, shop.exit_code) == (0, 0), store.output + shop.output
    ids = holders(engine)
    assert set(ids) == {"store:S1", "store:S2", "shop:1001", "shop:1002"}
    assert ids["store:S1"] == ids["shop:1001"]  # Ann, by the phone the till verified
    assert len({ids["store:S1"], ids["store:S2"], ids["shop:1002"]}) == 3
    assert customers(engine) == 3
    # The text output tells in persons what the matching did
    assert "as source shop, matching on id, phone: 1 new customer(s), 1 updated, 0 merge(s), " \
           "0 review item(s) opened" in shop.output


def test_match_overrides_the_sources_configured_kinds(project, engine):
    with_identity(project)
    import_file(project, "customers", "store.csv", STORE_CSV, "--source", "store")

    # shop matches on phone by config; on email only for this import, Ann's phone does not
    # make her one person: it opens a review item instead
    email_only = import_file(project, "customers", "shop.csv", SHOP_CSV, "--source", "shop", "--match", "email",
                             "--json")

    assert email_only.exit_code == 0, email_only.output
    report = json.loads(email_only.stdout)
    assert (report["match"], report["created"], report["updated"], report["reviews_opened"]) == (["email"], 2, 0, 1)
    ids = holders(engine)
    assert ids["store:S1"] != ids["shop:1001"] and customers(engine) == 4


def test_match_takes_kinds_comma_separated_or_repeated(project, engine):
    with_identity(project)
    import_file(project, "customers", "store.csv", STORE_CSV, "--source", "store")

    # A source not configured matches on nothing unless --match says so
    comma = import_file(project, "customers", "web.csv", SHOP_CSV, "--source", "web", "--match", "phone,email",
                        "--json")
    repeated = import_file(project, "customers", "web2.csv", SHOP_CSV, "--source", "web2", "--match", "phone",
                           "--match", "EMAIL", "--json")

    assert json.loads(comma.stdout)["match"] == json.loads(repeated.stdout)["match"] == ["phone", "email"]
    ids = holders(engine)
    assert ids["store:S1"] == ids["web:1001"] == ids["web2:1001"]  # Ann, by the till's phone
    # Cy's second account shares an unverified phone and an email, both weak: a review item
    assert ids["web:1002"] != ids["web2:1002"] and json.loads(repeated.stdout)["reviews_opened"] == 1


def test_bad_match_kind_or_source_name_is_one_line_exit_2_and_nothing_is_imported(project, engine):
    with_identity(project)
    file = project.write("shop.csv", SHOP_CSV)
    cases = [
        (("--source", "shop", "--match", "phone,bogus"), "cannot match on 'bogus': use phone, email, openid, unionid"),
        (("--source", "a b"), "source 'a b': use 1-32 letters, digits, '_' or '-'"),
        (("--source", "x" * 33), "use 1-32 letters"),
    ]
    for args, message in cases:
        result = invoke("import", "customers", file, "-c", project.config, *args)
        assert_no_crash(result)
        assert result.exit_code == 2, (args, result.output)
        assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
    bad_orders = invoke("import", "orders", file, "-c", project.config, "--source", "a:b")
    assert bad_orders.exit_code == 2 and "source 'a:b'" in bad_orders.stderr
    assert customers(engine) == 0


def test_a_source_missing_from_the_configured_sources_is_warned_about_but_imported(project, engine):
    with_identity(project)

    result = import_file(project, "customers", "shop.csv", SHOP_CSV, "--source", "shpo")

    assert result.exit_code == 0, result.output
    [warning] = result.stderr.strip().splitlines()
    assert warning.startswith("warning: source 'shpo' is not in [identity.sources] (configured: shop, store)")
    assert {"shpo:1001", "shpo:1002"} <= set(holders(engine))


def test_no_warning_for_a_configured_source_or_without_configured_sources(project, engine):
    plain = import_file(project, "customers", "web.csv", SHOP_CSV, "--source", "web")  # no [identity.sources]
    with_identity(project)
    known = import_file(project, "customers", "shop.csv", SHOP_CSV, "--source", "shop")

    assert (plain.exit_code, known.exit_code) == (0, 0)
    assert "warning" not in plain.stderr + known.stderr


def test_orders_with_a_source_name_their_customer_by_its_id_there(project, engine):
    with_identity(project)
    import_file(project, "customers", "store.csv", STORE_CSV, "--source", "store")
    import_file(project, "customers", "shop.csv", SHOP_CSV, "--source", "shop")
    orders = ("order_id,customer_id,ordered_at,amount\n"
              "O1,1001,2026-05-01T10:00:00+00:00,30\n"           # Ann's shop account
              f"O2,phone:{ANN_PHONE},2026-05-02T10:00:00+00:00,20\n"  # any identifier still works
              "O3,S2,2026-05-03T10:00:00+00:00,10\n")            # a store id, bare: not a shop id

    result = import_file(project, "orders", "orders.csv", orders, "--source", "shop")

    assert result.exit_code == 3, result.output
    assert "2 imported, 1 rejected" in result.output and "orders.csv:4: customer_id 'S2' not found" in result.output
    assert "as source" not in result.output  # the persons line is for customer imports
    ann = holders(engine)["store:S1"]
    with engine.connect() as conn:
        assert dict(conn.execute(sa.select(Order.order_id, Order.customer_id)).all()) == {"O1": ann, "O2": ann}


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_an_import_that_merges_reports_it_and_recomputes_the_survivor(project, engine, as_json):
    # Given Ann twice: the shop imported on ids only, her web order on the shop's record,
    # and profiles computed while she was two customers
    with_identity(project)
    import_file(project, "customers", "store.csv", STORE_CSV, "--source", "store")
    apart = import_file(project, "customers", "shop.csv", SHOP_CSV, "--source", "shop", "--match", "")
    assert "as source shop, matching on id: 2 new customer(s), 0 updated, 0 merge(s)" in apart.output
    import_file(project, "orders", "orders.csv", "order_id,customer_id,ordered_at,amount\n"
                "O1,1001,2026-05-01T10:00:00+00:00,30\n", "--source", "shop")
    assert invoke("profiles", "--as-of", "2026-06-01", "-c", project.config).exit_code == 0
    survivor = holders(engine)["store:S1"]
    assert survivor != holders(engine)["shop:1001"]

    # When the shop is imported again matching on phone, as configured: the till's verified
    # phone makes her one person
    merged = import_file(project, "customers", "shop.csv", SHOP_CSV, "--source", "shop",
                         *(["--json"] if as_json else []))

    # Then the output says so, and the survivor's profile counts her web order
    assert merged.exit_code == 0, merged.output
    if as_json:
        report = json.loads(merged.stdout)
        assert (report["source"], report["match"]) == ("shop", ["phone"])
        assert (report["created"], report["updated"], report["merged"]) == (0, 2, 1)
        assert report["profiles_recomputed"] is True
    else:
        assert ("as source shop, matching on id, phone: 0 new customer(s), 2 updated, 1 merge(s), 0 review "
                "item(s) opened; profiles of 1 merged customer(s) recomputed") in merged.output
    assert holders(engine)["shop:1001"] == survivor and customers(engine) == 3
    with engine.connect() as conn:
        assert conn.execute(sa.select(CustomerProfile.orders_count)
                            .where(CustomerProfile.customer_id == survivor)).scalar() == 1


def test_a_plain_import_has_no_persons_line(project, engine):
    result = import_file(project, "customers", "store.csv", STORE_CSV)

    assert result.exit_code == 0 and "as source" not in result.output and "matching on" not in result.output
    assert set(holders(engine)) == {"S1", "S2"}
