"""Identity resolution (issue #15 must-have 6): N customers from three sources with 30 %
overlap, resolved by nurture's import on PostgreSQL vs a bare SQL join of the same
identifier tables.

    .venv/bin/python -m bench.identity --customers 1000000

This

1. writes three CSV files for N true persons, deterministically (``--seed``): ``pos``
   (the store: a till id and the phone verified by SMS code, written ``13800000012``),
   ``shop`` (online: an account id, an email in mixed case, an unverified phone written
   ``+86 138 0000 0012``, a unionid when the account logged in with WeChat) and ``wechat``
   (the official account: openid and unionid). 70 % of the persons are in one source,
   30 % in two or three, and always linkable: pos-shop by phone, shop-wechat by unionid
   (the chain pos-shop-wechat included); a person in pos and wechat only would share no
   identifier, so the generator makes none. Rows are shuffled within each file. The truth
   (source id -> person) goes to a fourth file. Not measured;
2. creates a throwaway database ``nurture_bench_<hex>`` on 127.0.0.1:5432 (migrated);
3. measures the raw baseline in the same run, in the same database: the three files
   loaded with ``COPY`` into plain tables, their ``(kind, value)`` pairs normalised in SQL
   into one identifier table (phones to E.164, emails lower-cased, ids and openids
   prefixed as nurture stores them), the groups found by joining that table with itself
   on ``(kind, value)`` over the strong kinds and propagating the smallest row number
   until nothing changes, and the mapping written: one row per person, one per
   identifier (unique on ``(kind, value)``, as ``customer_identifier``); then the same
   mapping written once more where nurture keeps it (``customer`` and
   ``customer_identifier``, with their indexes and foreign key), timed apart: the import's
   end state reached by bulk SQL, the like-for-like baseline the target is read against;
4. runs the project's figure: ``import_file(engine, "customers", path, source=...,
   identity=...)`` for pos, shop and wechat in that order, with ``[identity.sources]``
   as a deployment would declare them (pos: match phone, verified phone; shop: match
   phone, email, unionid; wechat: match unionid). SQL time is summed with cursor events;
5. verifies both: persons found = true persons, and (nurture) every true person's source
   ids are held by one customer and no customer holds two persons' ids;
6. drops the database (``WITH (FORCE)``) and the files, even on error (unless ``--keep``).

Timings are printed, never asserted: benchmarks are not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import CONFIG_OVERRIDES, logger, throwaway_database

log = logger("identity")

#: Target (issue #15): the import within 3x the bare join of the same identifier tables.
TARGET_RATIO = 3.0
#: Import order of the sources (each a file of the same name).
SOURCES = ("pos", "shop", "wechat")
#: Persons in one source, by source; persons in several, by combination (pos and wechat
#: alone share no identifier, so that combination is never generated).
SINGLE = (("pos",), ("shop",), ("wechat",)), (0.40, 0.35, 0.25)
MULTI = (("pos", "shop"), ("shop", "wechat"), ("pos", "shop", "wechat")), (0.40, 0.30, 0.30)
COLUMNS = {
    "pos": ("customer_id", "phone", "acquisition_channel"),
    "shop": ("customer_id", "name", "email", "phone", "unionid", "acquisition_channel"),
    "wechat": ("customer_id", "wechat_openid", "unionid", "acquisition_channel"),
}
MOBILE_PREFIXES = ("138", "139", "135", "136", "137", "150", "151", "186", "187", "188")


def identity_config():  # type: ignore[no-untyped-def]
    """``[identity]`` as a deployment with these three systems would write it."""
    from campaigns.config.identity import IdentityConfig, IdentitySourceConfig

    return IdentityConfig(sources={
        "pos": IdentitySourceConfig(match=("phone",), verified=("phone",)),
        "shop": IdentitySourceConfig(match=("phone", "email", "unionid")),
        "wechat": IdentitySourceConfig(match=("unionid",), wechat_app="wechat"),
    })


# --------------------------------------------------------------------------- data


def mobile(person: int) -> str:
    """The person's 11-digit mobile number (unique per person below 10**9)."""
    return f"{MOBILE_PREFIXES[person % 10]}{person // 10:08d}"


def unionid(person: int) -> str:
    """The person's unionid: an odd multiplier mod 2**64 is a bijection, so unique."""
    return f"oU{(person * 0x9E3779B97F4A7C15) % 2**64:016x}"


def generate(directory: Path, customers: int, *, overlap: float = 0.3, seed: int = 15) -> dict[str, Any]:
    """Write ``pos.csv``, ``shop.csv``, ``wechat.csv`` and ``truth.csv`` (source, id,
    person) for ``customers`` true persons into ``directory``; returns the counts."""
    rng = random.Random(seed)
    bit = {name: 1 << index for index, name in enumerate(SOURCES)}
    membership = bytearray(customers)
    multi = 0
    for person in range(customers):
        combos, weights = MULTI if rng.random() < overlap else SINGLE
        chosen = rng.choices(combos, weights)[0]
        multi += len(chosen) > 1
        membership[person] = sum(bit[name] for name in chosen)
    rows = {}
    with (directory / "truth.csv").open("w", newline="") as truth_file:
        truth = csv.writer(truth_file)
        for name in SOURCES:
            persons = [p for p in range(customers) if membership[p] & bit[name]]
            rng.shuffle(persons)
            with (directory / f"{name}.csv").open("w", newline="") as handle:
                out = csv.writer(handle)
                out.writerow(COLUMNS[name])
                for index, person in enumerate(persons, start=1):
                    row = source_row(name, person, index, membership[person], bit, rng)
                    out.writerow(row)
                    truth.writerow((name, row[0], person))
            rows[name] = len(persons)
    return {"customers": customers, "multi_source": multi, "rows": rows, "total_rows": sum(rows.values()),
            "seed": seed, "overlap": overlap}


def source_row(name: str, person: int, index: int, member: int, bit: dict[str, int],
               rng: random.Random) -> tuple[str, ...]:
    """One person's row in source ``name`` (its ``index``-th row)."""
    if name == "pos":
        return (f"{100000 + index}", mobile(person), "store")
    if name == "shop":
        email = f"user{person}@example.com"
        if person % 5 == 0:
            email = f"User{person}@Example.COM"  # normalised to one address
        # A phone links to the store: always given when the person shops there too.
        has_phone = bool(member & bit["pos"]) or rng.random() < 0.6
        phone = f"+86 {(m := mobile(person))[:3]} {m[3:7]} {m[7:]}" if has_phone else ""
        # A unionid links to the official account; 40 % of the others logged in with WeChat.
        has_union = bool(member & bit["wechat"]) or rng.random() < 0.4
        return (f"U{index:07d}", f"Person {person}", email, phone, unionid(person) if has_union else "",
                "ecommerce")
    openid = f"o{rng.getrandbits(108):027x}"
    return (openid, openid, unionid(person), "social")


# --------------------------------------------------------------------------- baseline

#: The (kind, value) pairs of each staging table, normalised as nurture stores them.
IDENTIFIER_SQL = """
INSERT INTO b_ident (n, kind, value)
SELECT n, 'id', 'pos:' || customer_id FROM b_pos
UNION ALL SELECT n, 'phone', '+86' || right(regexp_replace(phone, '\\D', '', 'g'), 11) FROM b_pos WHERE phone <> ''
UNION ALL SELECT n, 'id', 'shop:' || customer_id FROM b_shop
UNION ALL SELECT n, 'email', lower(trim(email)) FROM b_shop WHERE email <> ''
UNION ALL SELECT n, 'phone', '+86' || right(regexp_replace(phone, '\\D', '', 'g'), 11) FROM b_shop WHERE phone <> ''
UNION ALL SELECT n, 'unionid', unionid FROM b_shop WHERE unionid <> ''
UNION ALL SELECT n, 'id', 'wechat:' || customer_id FROM b_wechat
UNION ALL SELECT n, 'openid', 'wechat:' || wechat_openid FROM b_wechat
UNION ALL SELECT n, 'unionid', unionid FROM b_wechat WHERE unionid <> ''
"""
#: One round: every row takes the smallest label among the rows it shares a strong
#: identifier with (email is weak: it never joins).
PROPAGATE_SQL = """
UPDATE b_label AS l SET person = m.person
FROM (SELECT e.a AS n, min(l2.person) AS person
      FROM (SELECT a, b FROM b_edge UNION ALL SELECT b, a FROM b_edge) AS e
      JOIN b_label AS l2 ON l2.n = e.b GROUP BY e.a) AS m
WHERE m.n = l.n AND m.person < l.person
"""

#: Every source row with the customer columns it gives (the import writes the same ones).
SOURCE_ROWS_SQL = """
SELECT n, NULL AS name, NULL AS email, phone, NULL AS wechat_openid, acquisition_channel FROM b_pos
UNION ALL SELECT n, name, email, phone, NULL, acquisition_channel FROM b_shop
UNION ALL SELECT n, NULL, NULL, NULL, wechat_openid, acquisition_channel FROM b_wechat
"""
#: One customer per person: its first row's id, a value per column from its rows, and where
#: it first came from (its first row's channel).
NURTURE_CUSTOMERS_SQL = f"""
CREATE TEMP TABLE b_person_customer AS
SELECT DISTINCT ON (l.person) l.person, i.value AS external_id
FROM b_label AS l JOIN b_ident AS i USING (n) WHERE i.kind = 'id' ORDER BY l.person, l.n;
INSERT INTO customer (external_id, name, email, phone, wechat_openid, acquisition_channel, created_at,
                      updated_at, attributes)
SELECT pc.external_id, max(NULLIF(r.name, '')), max(lower(NULLIF(r.email, ''))), max(NULLIF(r.phone, '')),
       max(NULLIF(r.wechat_openid, '')), (array_agg(r.acquisition_channel ORDER BY r.n))[1], now(), now(), '{{}}'
FROM b_person_customer AS pc JOIN b_label AS l USING (person) JOIN ({SOURCE_ROWS_SQL}) AS r USING (n)
GROUP BY pc.person, pc.external_id
"""
#: One customer_identifier per identifier, held by its person's customer.
NURTURE_IDENTIFIERS_SQL = """
INSERT INTO customer_identifier (customer_id, kind, value, source, verified, first_seen_at, last_seen_at)
SELECT c.id, g.kind, g.value, NULL, false, now(), now()
FROM (SELECT i.kind, i.value, min(l.person) AS person FROM b_ident AS i JOIN b_label AS l USING (n)
      GROUP BY i.kind, i.value) AS g
JOIN b_person_customer AS pc USING (person) JOIN customer AS c ON c.external_id = pc.external_id
"""


def run_baseline(dsn: str, directory: Path) -> dict[str, Any]:
    """Load, resolve and write the mapping with bare SQL; returns the timings and persons."""
    import psycopg

    seconds: dict[str, float] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Row numbers are unique across the three tables, so one label space serves all.
        conn.execute("CREATE SEQUENCE b_rows")
        for name in SOURCES:
            columns = ", ".join(f"{column} text" for column in COLUMNS[name])
            conn.execute(f"CREATE TABLE b_{name} (n bigint DEFAULT nextval('b_rows'), {columns})")
        conn.execute("CREATE TABLE b_ident (n bigint, kind text, value text)")
        conn.execute("CREATE TABLE b_person (id bigint PRIMARY KEY)")
        conn.execute("CREATE TABLE b_identifier (kind text, value text, person bigint, UNIQUE (kind, value))")
        started = time.perf_counter()
        with conn.transaction():
            for name in SOURCES:
                with conn.cursor().copy(f"COPY b_{name} ({', '.join(COLUMNS[name])}) FROM STDIN "
                                        "(FORMAT csv, HEADER true)") as copy, (directory / f"{name}.csv").open("rb") as f:
                    while block := f.read(1 << 20):
                        copy.write(block)
        seconds["load (COPY)"] = time.perf_counter() - started
        started = time.perf_counter()
        with conn.transaction():
            conn.execute(IDENTIFIER_SQL)
            conn.execute("CREATE INDEX ON b_ident (kind, value)")
            conn.execute("ANALYZE b_ident")
        seconds["identifier table"] = time.perf_counter() - started
        started = time.perf_counter()
        rounds = 0
        with conn.transaction():
            conn.execute("CREATE TABLE b_edge AS SELECT DISTINCT x.n AS a, y.n AS b FROM b_ident AS x "
                         "JOIN b_ident AS y ON y.kind = x.kind AND y.value = x.value AND y.n > x.n "
                         "WHERE x.kind IN ('id', 'phone', 'openid', 'unionid')")
            conn.execute("CREATE TABLE b_label AS SELECT DISTINCT n, n AS person FROM b_ident")
            conn.execute("CREATE UNIQUE INDEX ON b_label (n)")
            conn.execute("ANALYZE b_label")
            while True:
                rounds += 1
                if conn.execute(PROPAGATE_SQL).rowcount == 0:
                    break
        seconds["join (groups)"] = time.perf_counter() - started
        started = time.perf_counter()
        with conn.transaction():
            conn.execute("INSERT INTO b_person (id) SELECT DISTINCT person FROM b_label")
            conn.execute("INSERT INTO b_identifier (kind, value, person) SELECT i.kind, i.value, min(l.person) "
                         "FROM b_ident AS i JOIN b_label AS l USING (n) GROUP BY i.kind, i.value")
        seconds["write mapping"] = time.perf_counter() - started
        # The same mapping written where nurture keeps it, with that schema's indexes and
        # foreign key: one customer per person (known by its first row's id, its columns
        # from its rows) and one customer_identifier per identifier. Timed apart: the
        # like-for-like end state of the import, reached by bulk SQL.
        started = time.perf_counter()
        with conn.transaction():
            conn.execute(NURTURE_CUSTOMERS_SQL)
            conn.execute(NURTURE_IDENTIFIERS_SQL)
        nurture_tables = time.perf_counter() - started
        persons, = conn.execute("SELECT count(*) FROM b_person").fetchone()
        identifiers, = conn.execute("SELECT count(*) FROM b_identifier").fetchone()
        same, = conn.execute("SELECT count(*) FROM customer_identifier").fetchone()
        same_customers, = conn.execute("SELECT count(*) FROM customer").fetchone()
        if same != identifiers:
            raise AssertionError(f"the baseline wrote {same} identifiers into nurture's table, {identifiers} bare")
        # The import starts from empty tables, as the bare baseline's did.
        conn.execute("TRUNCATE customer, customer_identifier RESTART IDENTITY CASCADE")
        for table in ("b_edge", "b_label", "b_ident", "b_identifier", "b_person",
                      *(f"b_{name}" for name in SOURCES)):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DROP SEQUENCE b_rows")
        conn.execute("CHECKPOINT")
    total = sum(seconds.values())
    return {"seconds": seconds, "total": total, "persons": persons, "identifiers": identifiers, "rounds": rounds,
            "nurture_tables_write": nurture_tables, "nurture_tables_customers": same_customers,
            "nurture_tables_total": total - seconds["write mapping"] + nurture_tables}


# --------------------------------------------------------------------------- project


@contextlib.contextmanager
def autoanalyze(dsn: str, every_s: float) -> Any:
    """``ANALYZE`` the tables an import grows every ``every_s`` seconds from a thread, as
    autovacuum does on a default server (this machine's PostgreSQL runs with autovacuum
    off); yields a list of the ANALYZE durations. ``every_s`` <= 0: nothing runs."""
    import threading

    import psycopg

    durations: list[float] = []
    stop = threading.Event()

    def loop() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.wait(every_s):
                started = time.perf_counter()
                conn.execute("ANALYZE customer, customer_identifier")
                durations.append(time.perf_counter() - started)

    thread = threading.Thread(target=loop, name="autoanalyze", daemon=True)
    if every_s > 0:
        thread.start()
    try:
        yield durations
    finally:
        stop.set()
        if every_s > 0:
            thread.join()


def run_project(url: str, directory: Path, *, batch_size: int, analyze_every_s: float) -> dict[str, Any]:
    """``import_file`` of the three sources in order; returns timings and report counts."""
    import sqlalchemy as sa

    from campaigns.customers.importing import upserts
    from campaigns.customers.importing.files import import_file
    from campaigns.store.db import make_engine

    engine = make_engine(url)
    in_sql = [0.0]
    # Resolve-and-write apart from reading and validating: the batch writer's time (identifiers
    # normalised, matched, merged, customers and identifiers written) is what the baseline's
    # SQL after its COPY does; the rest of the import reads and validates every row.
    in_writer = [0.0]
    write_customers = upserts.WRITERS["customers"]

    def timed_writer(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return write_customers(*args, **kwargs)
        finally:
            in_writer[0] += time.perf_counter() - started
    started_at: list[float] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _before(*_: Any) -> None:
        started_at.append(time.perf_counter())

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _after(*_: Any) -> None:
        in_sql[0] += time.perf_counter() - started_at.pop()

    rules = identity_config()
    sources: dict[str, Any] = {}
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    upserts.WRITERS["customers"] = timed_writer
    try:
        with autoanalyze(dsn, analyze_every_s) as analyzes:
            for name in SOURCES:
                in_sql[0] = in_writer[0] = 0.0
                started = time.perf_counter()
                report = import_file(engine, "customers", directory / f"{name}.csv", source=name,
                                     identity=rules, batch_size=batch_size)
                seconds = time.perf_counter() - started
                counts = report.to_dict()
                counts.pop("rejected", None)
                sources[name] = {"seconds": seconds, "sql_seconds": in_sql[0], "resolve_seconds": in_writer[0],
                                 "report": counts,
                                 "rejected": len(report.rejected),
                                 "first_rejections": [str(error) for error in report.rejected[:3]]}
                log(f"{name}: {seconds:.1f} s ({in_sql[0]:.1f} s in SQL), {len(report.rejected)} rejected")
    finally:
        upserts.WRITERS["customers"] = write_customers
        engine.dispose()
    return {"sources": sources, "total": sum(s["seconds"] for s in sources.values()),
            "sql_seconds": sum(s["sql_seconds"] for s in sources.values()),
            "resolve_seconds": sum(s["resolve_seconds"] for s in sources.values()),
            "analyze_every_s": analyze_every_s, "analyzes": len(analyzes), "analyze_seconds": sum(analyzes)}


def verify(dsn: str, directory: Path) -> dict[str, Any]:
    """Compare the customers nurture ended with to the truth file."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE truth (source text, id text, person bigint)")
        with conn.cursor().copy("COPY truth FROM STDIN (FORMAT csv)") as copy, \
                (directory / "truth.csv").open("rb") as handle:
            while block := handle.read(1 << 20):
                copy.write(block)
        conn.execute("CREATE TEMP TABLE held AS SELECT t.person, i.customer_id FROM truth AS t "
                     "LEFT JOIN customer_identifier AS i ON i.kind = 'id' AND i.value = t.source || ':' || t.id")
        customers, = conn.execute("SELECT count(*) FROM customer").fetchone()
        persons, = conn.execute("SELECT count(DISTINCT person) FROM truth").fetchone()
        unheld, = conn.execute("SELECT count(*) FROM held WHERE customer_id IS NULL").fetchone()
        split, = conn.execute("SELECT count(*) FROM (SELECT person FROM held GROUP BY person "
                              "HAVING count(DISTINCT customer_id) > 1) AS s").fetchone()
        fused, = conn.execute("SELECT count(*) FROM (SELECT customer_id FROM held GROUP BY customer_id "
                              "HAVING count(DISTINCT person) > 1) AS s").fetchone()
        identifiers = dict(conn.execute("SELECT kind, count(*) FROM customer_identifier GROUP BY kind").fetchall())
        merges, = conn.execute("SELECT count(*) FROM customer_merge").fetchone()
        reviews, = conn.execute("SELECT count(*) FROM identity_review").fetchone()
    return {"customers": customers, "true_persons": persons, "unheld_source_ids": unheld,
            "persons_split": split, "customers_fusing_persons": fused, "identifiers": identifiers,
            "merges": merges, "review_items": reviews,
            "ok": customers == persons and unheld == 0 and split == 0 and fused == 0}


# --------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Generate, baseline, import, verify; the database and files go unless ``--keep``."""
    with contextlib.ExitStack() as stack:
        if args.keep:
            directory = Path(tempfile.mkdtemp(prefix="nurture_identity_"))
            log(f"files kept in {directory}")
        else:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nurture_identity_")))
        started = time.perf_counter()
        data = generate(directory, args.customers, overlap=args.overlap, seed=args.seed)
        data["seconds"] = time.perf_counter() - started
        log(f"generated {data['total_rows']:,} rows for {args.customers:,} persons in {data['seconds']:.1f} s")
        database = stack.enter_context(throwaway_database(keep=args.keep, log=log))
        baseline = run_baseline(database.dsn, directory)
        log(f"baseline: {baseline['total']:.1f} s, {baseline['persons']:,} persons in {baseline['rounds']} rounds")
        project = run_project(database.url, directory, batch_size=args.batch_size,
                              analyze_every_s=args.analyze_every)
        log(f"import: {project['total']:.1f} s")
        checks = verify(database.dsn, directory)
        return {"data": data, "baseline": baseline, "project": project, "verify": checks,
                "database": database.name}
    raise AssertionError("unreachable")  # pragma: no cover (the with block returns)


def print_report(result: dict[str, Any]) -> None:
    """The project's figure beside the baseline, the ratio and the correctness checks."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=130)
    data, base, project, checks = result["data"], result["baseline"], result["project"], result["verify"]
    rows = data["total_rows"]
    table = Table(title=f"Identity resolution: {data['customers']:,} persons, {rows:,} source rows "
                        f"({data['multi_source']:,} persons in 2+ sources), PostgreSQL")
    table.add_column("", style="bold")
    table.add_column("seconds", justify="right")
    table.add_column("rows/s", justify="right")
    table.add_column("/ baseline", justify="right")
    table.add_row("baseline: COPY + normalise + self-join + write mapping", f"{base['total']:.2f}",
                  f"{rows / base['total']:,.0f}", "1.00x")
    for phase, seconds in base["seconds"].items():
        table.add_row(f"  {phase}", f"{seconds:.2f}", "", "")
    table.add_row("baseline without the load", f"{base['total'] - base['seconds']['load (COPY)']:.2f}", "", "")
    same = base["nurture_tables_total"]
    table.add_row("baseline into nurture's tables (the mapping written as customer + customer_identifier)",
                  f"{same:.2f}", f"{rows / same:,.0f}", f"{same / base['total']:.2f}x")
    table.add_row("  write into nurture's tables (instead of write mapping)", f"{base['nurture_tables_write']:.2f}",
                  "", "")
    table.add_row("nurture: import_file pos, shop, wechat", f"{project['total']:.2f}",
                  f"{rows / project['total']:,.0f}",
                  f"{project['total'] / base['total']:.2f}x / {project['total'] / same:.2f}x")
    for name, source in project["sources"].items():
        table.add_row(f"  {name} ({data['rows'][name]:,} rows; {source['sql_seconds']:.1f} s in SQL)",
                      f"{source['seconds']:.2f}", f"{data['rows'][name] / source['seconds']:,.0f}", "")
    resolve, without_load = project["resolve_seconds"], base["total"] - base["seconds"]["load (COPY)"]
    table.add_row("  of which reading and validating rows", f"{project['total'] - resolve:.2f}", "", "")
    table.add_row("  of which resolving and writing (vs baseline without the load)", f"{resolve:.2f}",
                  f"{rows / resolve:,.0f}", f"{resolve / without_load:.2f}x")
    console.print(table)
    for name, source in project["sources"].items():
        counts = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in source["report"].items()
                           if k not in ("kind", "path"))
        console.print(f"  {name}: {counts}")
        for rejection in source["first_rejections"]:
            console.print(f"    rejected: {rejection}", markup=False)
    console.print(
        f"Persons: true {checks['true_persons']:,}; nurture found {checks['customers']:,}; baseline found "
        f"{base['persons']:,} ({base['rounds']} join rounds). Source ids held by no customer "
        f"{checks['unheld_source_ids']:,}, persons split over customers {checks['persons_split']:,}, customers "
        f"holding 2+ persons {checks['customers_fusing_persons']:,}; merges {checks['merges']:,}, review items "
        f"{checks['review_items']:,}; identifiers {checks['identifiers']}: "
        + ("[green]correct[/]" if checks["ok"] and base["persons"] == checks["true_persons"] else "[red]NOT CORRECT[/]")
    )
    if project["analyze_every_s"] > 0:
        console.print(f"ANALYZE customer, customer_identifier every {project['analyze_every_s']:g} s during the import "
                      f"(autovacuum's part; off on this server): {project['analyzes']} runs, "
                      f"{project['analyze_seconds']:.1f} s in all")
    else:
        console.print("No ANALYZE during the import (--analyze-every 0): the planner knows nothing of the new rows")
    ratio, like_for_like = project["total"] / base["total"], project["total"] / same
    verdict = "meets" if like_for_like <= TARGET_RATIO else "misses"
    console.print(f"Target (issue #15): within {TARGET_RATIO:g}x the bare join of the same identifier tables: "
                  f"the whole import {like_for_like:.2f}x the baseline writing nurture's tables, {verdict} "
                  f"({ratio:.2f}x the one writing bare tables; resolving and writing alone "
                  f"{resolve / without_load:.2f}x that one's SQL after COPY)")


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.identity``."""
    parser = argparse.ArgumentParser(prog="python -m bench.identity", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="true persons (default 1000000)")
    parser.add_argument("--overlap", type=float, default=0.3, help="share of persons in 2+ sources (default 0.3)")
    parser.add_argument("--seed", type=int, default=15, help="random seed of the data (default 15)")
    parser.add_argument("--batch-size", type=int, default=1000, help="import batch size (default 1000, as nurture import)")
    parser.add_argument("--analyze-every", type=float, default=30, metavar="SECONDS",
                        help="ANALYZE the customer tables every SECONDS during the import, as autovacuum "
                             "would (this machine runs PostgreSQL with autovacuum off); 0: never (default 30)")
    parser.add_argument("--keep", action="store_true", help="keep the database and the files (default: drop)")
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = parser.parse_args(argv)
    if args.customers < 1 or not 0 <= args.overlap <= 1:
        parser.error("--customers must be at least 1 and --overlap within 0..1")
    for key in CONFIG_OVERRIDES:
        os.environ.pop(key, None)
    result = run(args)
    print_report(result)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
