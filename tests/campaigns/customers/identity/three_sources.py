"""A hand-made data set of three sources with the true person behind every row.

* ``pos`` (the store's till): phones verified by SMS code; matches on phone.
* ``shop`` (the online shop): account ids, email, unverified phone, unionid; matches on
  phone, email and unionid.
* ``wechat`` (the official account, app ``mp``): openid and unionid; matches on unionid.

The persons, and what makes them hard:

* ``chain``: pos by phone (A), shop by the same phone and a unionid (B), wechat by that
  unionid (C): A-B via phone, B-C via unionid, one person whatever the order.
* ``consent``: withdrew email consent at the till, granted it online (phone written
  another way): one person, consent withdrawn.
* ``dad`` and ``mum``: two shop accounts sharing the family email: two persons, one
  review item, never a merge.
* ``twins``: two shop accounts sharing an unverified phone: two persons (no source
  verified it), one review item.
* ``follower``: wechat and shop linked by unionid only.
* ``walk_in``: pos only. ``lurker``: wechat without unionid.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.identity import IdentityConfig, IdentitySourceConfig
from campaigns.store.models import CustomerIdentifier

RULES = IdentityConfig(sources={
    "pos": IdentitySourceConfig(match=("phone",), verified=("phone",)),
    "shop": IdentitySourceConfig(match=("phone", "email", "unionid")),
    "wechat": IdentitySourceConfig(match=("unionid",), wechat_app="mp"),
})

COLUMNS = ("customer_id", "name", "phone", "email", "wechat_openid", "unionid", "acquisition_channel",
           "email_consent")

#: source -> [(true person, row)], rows as a file of that source holds them.
ROWS: dict[str, list[tuple[str, dict[str, str]]]] = {
    "pos": [
        ("chain", {"customer_id": "88", "name": "Li Wei", "phone": "13800000001", "acquisition_channel": "store"}),
        ("consent", {"customer_id": "89", "name": "Wang Fang", "phone": "13800000002",
                     "acquisition_channel": "store", "email_consent": "no"}),
        ("walk_in", {"customer_id": "90", "name": "Zhao Lei", "phone": "13800000005",
                     "acquisition_channel": "store"}),
    ],
    "shop": [
        ("chain", {"customer_id": "1001", "name": "Wei Li", "phone": "+86 138 0000 0001", "unionid": "U-chain",
                   "email": "li.wei@example.com", "acquisition_channel": "ecommerce"}),
        ("consent", {"customer_id": "1002", "phone": "+86-138-0000-0002", "email": "fang@example.com",
                     "acquisition_channel": "ecommerce", "email_consent": "yes"}),
        ("dad", {"customer_id": "1003", "name": "Dad", "email": "Family@Example.com", "acquisition_channel": "ecommerce"}),
        ("mum", {"customer_id": "1004", "name": "Mum", "email": "family@example.com ", "acquisition_channel": "ecommerce"}),
        ("twin_a", {"customer_id": "1005", "name": "Twin A", "phone": "13800000007", "acquisition_channel": "ecommerce"}),
        ("twin_b", {"customer_id": "1006", "name": "Twin B", "phone": "13800000007", "acquisition_channel": "ecommerce"}),
        ("follower", {"customer_id": "1007", "name": "Chen Jing", "unionid": "U-follower",
                      "acquisition_channel": "ecommerce"}),
    ],
    "wechat": [
        ("chain", {"customer_id": "o-chain", "wechat_openid": "o-chain", "unionid": "U-chain",
                   "acquisition_channel": "social"}),
        ("follower", {"customer_id": "o-follower", "wechat_openid": "o-follower", "unionid": "U-follower",
                      "acquisition_channel": "social"}),
        ("lurker", {"customer_id": "o-lurker", "wechat_openid": "o-lurker", "acquisition_channel": "social"}),
    ],
}

SOURCES: tuple[str, ...] = tuple(ROWS)


def own_id(source: str, row: dict[str, str]) -> str:
    """The row's own identifier value (``pos:88``)."""
    return f"{source}:{row['customer_id']}"


def truth() -> frozenset[frozenset[str]]:
    """The true persons, as a partition of the rows' own ids."""
    persons: dict[str, set[str]] = defaultdict(set)
    for source, rows in ROWS.items():
        for person, row in rows:
            persons[person].add(own_id(source, row))
    return frozenset(frozenset(ids) for ids in persons.values())


def person_ids(person: str) -> set[str]:
    """The own ids of one true person's rows."""
    return {own_id(source, row) for source, rows in ROWS.items() for name, row in rows if name == person}


def write_file(directory: Path, source: str, order: Sequence[int] | None = None) -> Path:
    """The CSV file of ``source`` in ``directory``, its rows in ``order`` (indexes)."""
    rows = [row for _, row in ROWS[source]]
    if order is not None:
        rows = [rows[index] for index in order]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = directory / f"{source}.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def grouping(engine: Engine) -> frozenset[frozenset[str]]:
    """The customers as they are stored, as a partition of the ``id`` identifiers they hold."""
    table = CustomerIdentifier.__table__
    held: dict[int, set[str]] = defaultdict(set)
    with engine.connect() as conn:
        for customer_id, value in conn.execute(
            sa.select(table.c.customer_id, table.c.value).where(table.c.kind == "id")
        ):
            held[customer_id].add(value)
    return frozenset(frozenset(ids) for ids in held.values())


def snapshot(engine: Engine) -> dict[str, Any]:
    """Everything an import decides, without timestamps: customers, identifiers, consents,
    merges and review items (to show that a re-import changes nothing)."""
    with engine.connect() as conn:
        customers = conn.execute(sa.text(
            "SELECT id, external_id, name, email, phone, wechat_openid, acquisition_channel FROM customer ORDER BY id"
        )).all()
        identifiers = conn.execute(sa.text(
            "SELECT customer_id, kind, value, source, verified FROM customer_identifier ORDER BY kind, value"
        )).all()
        consents = conn.execute(sa.text(
            "SELECT customer_id, channel, status, source FROM consent ORDER BY customer_id, channel"
        )).all()
        merges = conn.execute(sa.text("SELECT survivor_id, merged_id, reason, actor FROM customer_merge ORDER BY id")).all()
        reviews = conn.execute(sa.text(
            "SELECT customer_id, other_customer_id, kind, value, status FROM identity_review ORDER BY id"
        )).all()
    return {"customers": customers, "identifiers": identifiers, "consents": consents, "merges": merges,
            "reviews": reviews}
