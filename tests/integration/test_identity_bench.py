"""The identity benchmark (``bench/identity.py``, issue #15) at small scale: its data is what
it claims (deterministic, 30 % of persons in two or more sources, every such person
linkable), and on PostgreSQL both nurture's import and the bare-join baseline find exactly
the true persons. Nothing is timed.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

from bench.identity import SOURCES, generate, run_baseline, run_project, verify
from tests.conftest import POSTGRES_ADMIN_URL, missing_service


def read(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_the_data_is_seeded_overlapping_and_linkable(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()

    counts = generate(first, 3000, seed=7)
    generate(second, 3000, seed=7)

    for name in (*SOURCES, "truth"):
        assert (first / f"{name}.csv").read_bytes() == (second / f"{name}.csv").read_bytes(), name
    sources_of: dict[int, set[str]] = defaultdict(set)
    for source, _, person in read(first / "truth.csv"):
        sources_of[int(person)].add(source)
    assert len(sources_of) == 3000
    multi = [sources for sources in sources_of.values() if len(sources) > 1]
    assert len(multi) == counts["multi_source"]
    assert 0.27 < len(multi) / 3000 < 0.33
    # pos and wechat share no identifier: a person in both is always in shop too.
    assert all("shop" in sources for sources in multi)
    shop = {row[0]: row for row in read(first / "shop.csv")[1:]}
    truth = {(source, id_): int(person) for source, id_, person in read(first / "truth.csv")}
    for (source, id_), person in truth.items():
        if source == "shop" and len(sources_of[person]) > 1:
            _, _, _, phone, unionid, _ = shop[id_]
            assert ("pos" not in sources_of[person] or phone) and ("wechat" not in sources_of[person] or unionid)
    assert counts["total_rows"] == len(truth)


@pytest.mark.integration
def test_nurture_and_the_baseline_find_exactly_the_true_persons(tmp_path):
    import psycopg

    from bench.common import throwaway_database

    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    generate(tmp_path, 600, seed=3)

    with throwaway_database(prefix="nurture_test_identity") as database:
        baseline = run_baseline(database.dsn, tmp_path)
        project = run_project(database.url, tmp_path, batch_size=100, analyze_every_s=0)
        checks = verify(database.dsn, tmp_path)

    assert baseline["persons"] == baseline["nurture_tables_customers"] == 600
    assert all(source["rejected"] == 0 for source in project["sources"].values()), project
    assert checks["ok"], checks
    assert checks["customers"] == checks["true_persons"] == 600
    assert checks["merges"] == 0 and checks["review_items"] == 0
