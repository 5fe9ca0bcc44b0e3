"""Property: whatever ``nurture check`` accepts, a scheduler tick survives.

Hypothesis writes configs from the pieces that used to pass check and then stop the
scheduler (issue #12): cron strings that never fire, zero or huge durations and rate
windows, integers beyond int64, day counts beyond date arithmetic, attribute names with
quotes, segments inlining each other (cycles, exponential growth). Each accepted config
gets one tick at a pinned moment on a fresh SQLite file, with the stub broker's worker
threads sending everything the tick enqueued (a worker error fails the join). Derandomized
and without an example database, so every run tries the same configs.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from campaigns.project.check import check_config_file
from campaigns.project.loading import load_config
from campaigns.store.db import make_engine, upgrade
from campaigns.store.models import Customer, Order
from workers.jobs.inprocess import InProcessWorkers
from workers.jobs.runtime import Runtime

#: 02:05 UTC: just after the "5 2 * * *" slot, before the default 03:00 profile recompute
#: of the day (yesterday's is within max_lateness, so profiles are recomputed too).
NOW = datetime(2026, 3, 2, 2, 5, tzinfo=UTC)



def mostly(sane: st.SearchStrategy, hostile: st.SearchStrategy) -> st.SearchStrategy:
    """``sane`` five times in six: with every knob hostile half the time, check refused
    nearly every config and few ticks were tried."""
    return st.integers(0, 5).flatmap(lambda n: hostile if n == 0 else sane)


BIG_INTS = st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**6, 36_500, 36_501, 10**20])
INTS = mostly(st.integers(-5, 400), st.one_of(BIG_INTS, st.integers(-(2**70), 2**70)))
UNITS = st.sampled_from(["s", "m", "h", "d", "w"])
DURATIONS = mostly(
    st.sampled_from(["0s", "1s", "30m", "2d", "1w2d", "36500d", "5200w"]),
    st.one_of(st.sampled_from(["36501d", "99999999999d", "5300w"]),
              st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 10**13), UNITS)),
)
POSITIVE_DURATIONS = mostly(st.sampled_from(["1s", "1m", "2d"]), DURATIONS)
CRONS = mostly(
    st.sampled_from(["5 2 * * *", "* * * * *", "0 0 29 2 *", "0 0 L 2 *", "@yearly", "5 2 * * 1", "*/7 * * * *"]),
    st.one_of(
        st.sampled_from(["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4 *", "0 0 * * * * 2099", "61 2 * * *", "5 2 * * 8"]),
        st.builds(lambda m, h, dom, mon: f"{m} {h} {dom} {mon} *",
                  st.integers(0, 62), st.integers(0, 25), st.integers(1, 33), st.integers(1, 13)),
    ),
)
ATTRIBUTE_KEYS = mostly(st.sampled_from(["vip", "tier", "a-b", "x.y"]),
                        st.text(alphabet='ab_-."\\\' 1', min_size=1, max_size=5))
IDENTIFIERS = st.sampled_from(["vip", "tier", "a_b", "n"])
SEGMENT_NAMES = ["s1", "s2", "s3"]


def _atoms(*, segments: bool = True) -> st.SearchStrategy[str]:
    plain = st.one_of(
        st.builds("orders_count >= {}".format, INTS),
        st.builds("days_since_signup >= {}".format, INTS),
        st.builds("days_since_last_order < {}".format, INTS),
        st.builds('count_of("order") > {}'.format, INTS),
        st.builds("attributes.{} == {}".format, IDENTIFIERS, INTS),
        st.builds('did("order", within="{}")'.format, DURATIONS),
        st.just("has_email"),
    )
    # Every expression may use segment "s0" (always defined, and itself without segments
    # unless hostile, when it may use itself: a cycle).
    return st.one_of(plain, st.just('segment("s0")')) if segments else plain


def _combined(atoms: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.recursive(
        atoms,
        lambda inner: st.one_of(
            st.builds("({}) or ({})".format, inner, inner),
            st.builds("({}) and ({})".format, inner, inner),
            st.builds("not ({})".format, inner),
        ),
        max_leaves=4,
    )


EXPRESSIONS = _combined(_atoms())
BASE_SEGMENT = mostly(_combined(_atoms(segments=False)), EXPRESSIONS)


def toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


@st.composite
def configs(draw: st.DrawFn) -> tuple[str, dict[str, int]]:
    """(the TOML text after [database], the attributes to give the seeded customers)."""
    lines = ['[compliance]', 'quiet_hours = ""', "[worker]", "threads = 2", 'backoff_base = "0s"',
             'backoff_cap = "0s"', "[lifecycle]", f"at_risk_after = {draw(st.integers(1, 90))}",
             f"churned_after = {draw(mostly(st.integers(91, 400), BIG_INTS))}",
             "[channels.mail]", 'kind = "outbox"', 'dir = "out"']
    if draw(st.booleans()):
        lines += ["[rate_limits]",
                  f"mail = {{ limit = {draw(mostly(st.integers(1, 3), BIG_INTS))}, "
                  f"per = {toml_string(draw(POSITIVE_DURATIONS))} }}"]
    segments = {"s0": draw(BASE_SEGMENT), **draw(st.dictionaries(st.sampled_from(SEGMENT_NAMES), EXPRESSIONS,
                                                                    max_size=3))}
    if draw(st.integers(0, 5)) == 0:
        # Two uses of the level below per level: exponential once inlined.
        depth = draw(st.integers(2, 24))
        segments = {f"x{n}": (f'segment("x{n - 1}") or segment("x{n - 1}")' if n else "has_email")
                    for n in range(depth)}
        segments["s0"] = f'segment("x{depth - 1}")'
    lines.append("[segments]")
    lines += [f"{name} = {toml_string(text)}" for name, text in segments.items()]
    attributes = draw(st.dictionaries(ATTRIBUTE_KEYS, st.integers(-(2**63), 2**63 - 1), max_size=2))
    odd = draw(st.dictionaries(ATTRIBUTE_KEYS, INTS, max_size=1))
    lines += ["[[campaigns]]", 'name = "c"', 'purpose = "transactional"', 'timezone = "UTC"',
              f"trigger = {{ cron = {toml_string(draw(CRONS))} }}", 'channels = ["mail"]', 'reentry = "every_run"']
    if draw(st.booleans()):
        lines.append(f"reentry_after = {toml_string(draw(DURATIONS))}")
    lines.append("[campaigns.audience]")
    if draw(st.booleans()):
        lines.append(f"where = {toml_string(draw(EXPRESSIONS))}")
    if segments and draw(st.booleans()):
        lines.append(f"segment = {toml_string(draw(st.sampled_from(sorted(segments))))}")
    if draw(st.booleans()):
        lines.append(f"last_order_more_than_days = {draw(mostly(st.integers(0, 400), BIG_INTS))}")
    if draw(st.booleans()):
        lines.append(f"min_orders = {draw(mostly(st.integers(0, 3), BIG_INTS))}")
    if odd:
        lines.append("attributes = { " + ", ".join(f"{toml_string(k)} = {v}" for k, v in odd.items()) + " }")
    for step in range(draw(st.integers(1, 2))):
        lines += ["[[campaigns.steps]]", 'template = "m"', f"delay = {toml_string(draw(DURATIONS) if step else '0s')}"]
        if draw(st.booleans()):
            lines.append(f"when = {toml_string(draw(EXPRESSIONS))}")
    return "\n".join(lines) + "\n", attributes


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "nurture.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(configs())
def test_whatever_check_accepts_a_tick_survives(migrated_db: Path, case: tuple[str, dict[str, int]]) -> None:
    body, attributes = case
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        shutil.copy(migrated_db, root / "nurture.db")
        (root / "templates").mkdir()
        (root / "templates" / "m.txt.j2").write_text("hi {{ customer.first_name }}\n")
        path = root / "config.toml"
        path.write_text(f'[database]\nurl = "sqlite:///{root / "nurture.db"}"\n' + body, encoding="utf-8")

        result = check_config_file(path)
        event("accepted by check" if result.ok else "refused by check: " + result.issues[0].key_path.split("[")[0].split(".")[0])
        if not result.ok:
            return  # refused, with file:line: key messages: nothing reaches the scheduler
        config = load_config(path)
        runtime = Runtime.from_config(config, clock=lambda: NOW)
        try:
            with runtime.engine.begin() as conn:
                for number in range(3):
                    customer_id = conn.execute(sa.insert(Customer.__table__).values(
                        external_id=f"C{number}", email=f"p{number}@example.com",
                        created_at=NOW - timedelta(days=400 * number), updated_at=NOW,
                        attributes={**attributes, "vip": number, "n": 2**62},
                    )).inserted_primary_key[0]
                    conn.execute(sa.insert(Order.__table__).values(
                        order_id=f"O{number}", customer_id=customer_id, amount=10.0, channel="store",
                        ordered_at=NOW - timedelta(days=100 * number + 1)))
            with InProcessWorkers(runtime=runtime).running() as workers:
                workers.tick(NOW)
        finally:
            runtime.close()
