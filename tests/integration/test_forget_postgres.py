"""`nurture forget` on PostgreSQL: the SQLite scenario of tests/campaigns/customers/test_forget.py
(personal data gone from every table, every report number unchanged, nothing sent
again), plus the row lock and transaction as PostgreSQL runs them."""

from __future__ import annotations

import pytest

import campaigns.customers.forget as forget_module
from campaigns.customers.forget import forget_customer
from tests.campaigns.customers.test_forget import (
    LATER,
    SECRET,
    TARGET,
    all_text,
    build_world,
    check_forget,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("hook_secret")]


def test_forget_erases_personal_data_and_keeps_every_report_number(tmp_path, postgres_url, http_sink):
    check_forget(tmp_path, postgres_url, http_sink)


def test_forget_is_one_transaction(tmp_path, postgres_url, http_sink, monkeypatch):
    world = build_world(tmp_path, postgres_url, http_sink.url)
    dump = all_text(world.engine)

    def fail(*args: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(forget_module, "_digest_suppressions", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        forget_customer(world.engine, TARGET, now=LATER, secret=SECRET)
    assert all_text(world.engine) == dump
    world.engine.dispose()
