"""Opt-out words, the suppression list and consent records, and their CLI commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from campaigns.customers.addresses import address_digest, legacy_address_digest
from campaigns.responses.optout import family_of_address, is_opt_out, lift_suppression, opt_out
from campaigns.store.models import Consent, Customer, Suppression
from workers.cli.main import app

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["R", "r", " TD ", "退订", "取消", "Stop", "STOP!", "ＴＤ", "unsubscribe", "t。",
                                  "StopAll", "quit", "N"])
def test_opt_out_words_are_recognised_trimmed_and_in_any_case(text):
    assert is_opt_out(text)


@pytest.mark.parametrize("text", ["", "RR", "stop sending me coupons please", "退订了吗?", "yes", "STOPS", "好的"])
def test_other_replies_are_not_opt_outs(text):
    assert not is_opt_out(text)


def test_family_of_address():
    assert family_of_address("a@b.cn") == "email"
    assert family_of_address("+86 138-0000-0000") == "sms"
    assert family_of_address("oXyz_123abc") == "wechat"


def add_customer(engine, external_id: str, phone: str) -> int:
    with engine.begin() as conn:
        return conn.execute(sa.insert(Customer.__table__).values(
            external_id=external_id, phone=phone, attributes={}, created_at=NOW, updated_at=NOW,
        ).returning(Customer.__table__.c.id)).scalar_one()


def consents(engine) -> dict[tuple[int, str], tuple[str, str]]:
    with engine.connect() as conn:
        return {(r.customer_id, r.channel): (r.status, r.source)
                for r in conn.execute(sa.select(Consent.customer_id, Consent.channel, Consent.status, Consent.source))}


def test_opt_out_suppresses_and_withdraws_consent_of_everyone_with_the_number_once(sqlite_engine):
    first = add_customer(sqlite_engine, "a", "+8613800000001")
    second = add_customer(sqlite_engine, "b", "+8613800000001")  # a shared family phone
    add_customer(sqlite_engine, "c", "+8613800000002")
    with sqlite_engine.begin() as conn:
        conn.execute(sa.insert(Consent.__table__).values(customer_id=first, channel="sms", status="granted",
                                                         source="form", recorded_at=NOW))

    result = opt_out(sqlite_engine, family="sms", address="+8613800000001", reason="reply TD", source="reply", now=NOW)
    again = opt_out(sqlite_engine, family="sms", address="+8613800000001", reason="reply TD", source="reply", now=NOW)

    assert (result.suppressed, result.customers) == (True, 2)
    assert again.suppressed is False  # a provider's retried push changes nothing
    assert consents(sqlite_engine) == {(first, "sms"): ("withdrawn", "reply"), (second, "sms"): ("withdrawn", "reply")}
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Suppression)).scalar_one() == 1


def test_lifting_a_suppression_matches_its_digest_form_too(sqlite_engine):
    secret = "installation-secret-for-tests"
    with sqlite_engine.begin() as conn:
        conn.execute(sa.insert(Suppression.__table__), [
            {"channel": "email", "address": address_digest("x@y.cn", secret), "reason": "forgotten", "created_at": NOW},
            {"channel": "email", "address": legacy_address_digest("old@y.cn"), "reason": "forgotten",
             "created_at": NOW},
        ])
    # The keyed digest needs the secret; the unkeyed one of earlier versions does not.
    assert not lift_suppression(sqlite_engine, family="email", address="x@y.cn")
    assert lift_suppression(sqlite_engine, family="email", address="x@y.cn", secret=secret)
    assert not lift_suppression(sqlite_engine, family="email", address="x@y.cn", secret=secret)
    assert lift_suppression(sqlite_engine, family="email", address="old@y.cn")


@pytest.fixture
def cli_project(tmp_path, sqlite_url):
    (tmp_path / "config.toml").write_text(f'[database]\nurl = "{sqlite_url}"\n')
    return tmp_path / "config.toml"


def test_cli_suppress_add_list_remove_and_reply(cli_project, sqlite_url):
    from campaigns.store.db import make_engine

    engine = make_engine(sqlite_url)
    customer_id = add_customer(engine, "a", "+8613800000001")
    runner = CliRunner()
    config = ["--config", str(cli_project)]

    added = runner.invoke(app, ["suppress", "add", "bounce@x.cn", "--reason", "hard bounce 5.1.1", *config])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["suppress", "list", "--json", *config])
    assert json.loads(listed.output)["entries"][0]["address"] == "bounce@x.cn"

    # Every reply is recorded (tests/workers/cli/test_compliance_reply.py); only an opt-out suppresses.
    ignored = runner.invoke(app, ["reply", "+8613800000001", "thanks!", "--json", *config])
    assert json.loads(ignored.output)["opt_out"] is False
    stopped = runner.invoke(app, ["reply", "+8613800000001", "退订", "--json", *config])
    assert {key: value for key, value in json.loads(stopped.output).items()
            if key in ("opt_out", "family", "added", "customers")} == {
        "opt_out": True, "family": "sms", "added": True, "customers": 1}
    assert consents(engine)[(customer_id, "sms")][0] == "withdrawn"

    removed = runner.invoke(app, ["suppress", "remove", "bounce@x.cn", *config])
    assert removed.exit_code == 0
    missing = runner.invoke(app, ["suppress", "remove", "bounce@x.cn", *config])
    assert missing.exit_code == 1 and "not on the email suppression list" in missing.output
    assert "Traceback" not in missing.output


def test_cli_consent_records_source_and_refuses_unknowns(cli_project, sqlite_url):
    from campaigns.store.db import make_engine

    engine = make_engine(sqlite_url)
    customer_id = add_customer(engine, "a", "+8613800000001")
    runner = CliRunner()
    config = ["--config", str(cli_project)]

    ok = runner.invoke(app, ["consent", "a", "--channel", "sms", "--grant", "--source", "store signup", *config])
    assert ok.exit_code == 0, ok.output
    assert consents(engine)[(customer_id, "sms")] == ("granted", "store signup")
    ghost = runner.invoke(app, ["consent", "ghost", "--channel", "sms", "--grant", *config])
    assert ghost.exit_code == 1 and "not found" in ghost.output
    bad = runner.invoke(app, ["consent", "a", "--channel", "fax", "--withdraw", *config])
    assert bad.exit_code == 1 and "unknown channel family" in bad.output
