"""Referral codes on the send path (workers/jobs/delivery.py over referral_codes.py), on
SQLite and PostgreSQL, with the outbox channel: each message shows its recipient's own
code and link, issued then and the same at every later message; without the secret only
codes already issued are shown; ``nurture check`` renders a sample, and fails a template
showing ``referral.code`` while referrals are off."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.config.keys import derive_key
from campaigns.customers.loyalty.referral_codes import CODE_PURPOSE, derived_code, looks_valid
from campaigns.project.check import check_config_file
from campaigns.project.loading import load_config
from campaigns.sending.ledger import run_batches
from campaigns.sending.planning import claim_run, plan_run
from campaigns.store.models import Delivery, ReferralCode
from tests.conftest import TICK_NOW, seed_customers
from workers.jobs.delivery import deliver_batch
from workers.jobs.runtime import Runtime

SECRET = "a test installation secret"
SHOWN = re.compile(r"code (\S+) link (\S+)")
TEMPLATE = "code {{ referral.code }} link {{ referral.link }}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


def write_project(tmp_path: Path, database_url: str, *, loyalty: str) -> Path:
    (tmp_path / "templates" / "c").mkdir(parents=True, exist_ok=True)
    (tmp_path / "templates" / "c" / "m.txt.j2").write_text(TEMPLATE)
    path = tmp_path / "config.toml"
    path.write_text(f"""
[database]
url = "{database_url}"
[worker]
backoff_base = "0s"
backoff_cap = "0s"
[compliance]
quiet_hours = ""
[channels.mail]
kind = "outbox"
dir = "out"
[[campaigns]]
name = "wb"
trigger = {{ cron = "0 10 * * *" }}
channels = ["mail"]
[[campaigns.steps]]
template = "c/m"
{loyalty}
""")
    return path


LOYALTY_ON = '[loyalty]\nenabled = true\n[loyalty.referrals]\nlink = "https://shop.example/r/{code}"\n'


def send_all(path: Path) -> tuple[sa.Engine, dict[int, tuple[str, str]]]:
    """Plan the campaign's run and deliver it: (engine, (code, link) shown per customer)."""
    config = load_config(path)
    runtime = Runtime.from_config(config, clock=lambda: TICK_NOW)
    engine = runtime.engine
    shown: dict[int, tuple[str, str]] = {}
    channel = runtime.channels["mail"]
    real_send = channel.send

    def send(message):  # type: ignore[no-untyped-def]
        with engine.connect() as conn:
            customer = conn.execute(sa.select(Delivery.customer_id).where(Delivery.id == message.delivery_id)).scalar()
        shown[customer] = SHOWN.search(message.parts["txt"]).groups()
        return real_send(message)

    channel.send = send
    with engine.connect() as conn:
        seeded = conn.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar()
    if not seeded:
        seed_customers(engine, count=4, now=TICK_NOW)
    run_id = claim_run(engine, "wb", TICK_NOW, lease=timedelta(minutes=5))
    plan_run(engine, config, config.campaigns[0], run_id=run_id, scheduled_at=TICK_NOW, now=TICK_NOW)
    ids = [i for batch in run_batches(engine, run_id, now=TICK_NOW, batch_size=100) for i in batch]
    deliver_batch(runtime, ids)
    return engine, shown


def test_each_message_shows_its_recipients_own_code_and_link(tmp_path, database_url, monkeypatch):
    monkeypatch.setenv("NURTURE_SECRET", SECRET)
    engine, shown = send_all(write_project(tmp_path, database_url, loyalty=LOYALTY_ON))
    key = derive_key(SECRET, CODE_PURPOSE)
    assert shown, "the campaign sent nothing"
    for customer, (code, link) in shown.items():
        assert code == derived_code(key, customer, length=8) and looks_valid(code)
        assert link == f"https://shop.example/r/{code}"
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(ReferralCode.customer_id, ReferralCode.code)).all())
    assert stored == {customer: code for customer, (code, _) in shown.items()}


def test_without_the_secret_no_code_is_issued_and_the_message_fails_to_render(tmp_path, database_url,
                                                                               monkeypatch):
    monkeypatch.delenv("NURTURE_SECRET", raising=False)
    engine, shown = send_all(write_project(tmp_path, database_url, loyalty=LOYALTY_ON))
    assert shown == {}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ReferralCode)).scalar() == 0
        errors = conn.execute(sa.select(Delivery.status, Delivery.last_error)).all()
    # referral is None for them: the template's referral.code fails, the message with it.
    assert errors and all(status == "failed" and "has no attribute 'code'" in error for status, error in errors)


def test_check_renders_a_sample_code_and_fails_a_template_without_referrals(tmp_path, database_url,
                                                                             monkeypatch):
    monkeypatch.delenv("NURTURE_SECRET", raising=False)
    on = check_config_file(write_project(tmp_path, database_url, loyalty=LOYALTY_ON))
    assert on.ok, on.issues
    assert any("referral codes are keyed" in warning for warning in on.warnings)
    off = check_config_file(write_project(tmp_path, database_url, loyalty="[loyalty]\nenabled = true\n"
                                          "[loyalty.referrals]\nenabled = false\n"))
    assert not off.ok and any("'None' has no attribute 'code'" in issue.message for issue in off.issues)
    no_link = check_config_file(write_project(tmp_path, database_url, loyalty="[loyalty]\nenabled = true\n"))
    # Without [loyalty.referrals] link, referral.link is undefined.
    assert not no_link.ok and any("no attribute 'link'" in issue.message for issue in no_link.issues)
