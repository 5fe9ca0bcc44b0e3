"""campaigns.config.jsonvalues: the one check of "storable JSON" shared by imports and POST /events."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.config.jsonvalues import MAX_JSON_DEPTH, UnstorableValue, check, loads

# Values of every kind, including the ones that cannot be stored.
leaves = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
          | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
values = st.recursive(leaves, lambda children: st.lists(children, max_size=4)
                      | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=20)


@pytest.mark.parametrize(("text", "field", "reason"), [
    ('{"a": NaN}', "x.a", "NaN"),
    ('{"a": [1, -Infinity]}', "x.a[1]", "-Infinity"),
    ('{"a": ' + "1" * 5000 + "}", "x.a", "integer of 5000 digits"),
    ('{"a": -9223372036854775809}', "x.a", "outside the storable range"),
    ('{"a": 1e400}', "x.a", "not a finite number"),
    ('{"a": "\\u0000"}', "x.a", "NUL"),
    ('{"a": "\\ud800"}', "x.a", "lone surrogate"),
    ('{"\\udfff": 1}', "x", "a key contains a lone surrogate"),
    ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "x", f"nested deeper than {MAX_JSON_DEPTH}"),
    ('"' + "x" * 70_000 + '"', "x", "bytes of JSON; at most 65536"),
])
def test_unstorable_values_are_named_by_field(text: str, field: str, reason: str) -> None:
    with pytest.raises(UnstorableValue) as caught:
        check(loads(text), "x")
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_parser_depth_failure_is_an_unstorable_value_not_a_recursion_error() -> None:
    with pytest.raises(UnstorableValue, match="nested deeper"):
        loads("[" * 100_000 + "]" * 100_000)


def test_limits_themselves_are_storable() -> None:
    check(loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH), "x")
    check(loads('{"a": 9223372036854775807, "b": -9223372036854775808, "c": 1.5e308}'), "x")


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=60))
def test_loads_raises_nothing_but_its_two_errors(text: str) -> None:
    try:
        value = loads(text)
    except (json.JSONDecodeError, UnstorableValue):
        return
    try:
        check(value, "x")
    except UnstorableValue:
        pass


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@pytest.fixture(scope="module")
def memory_engine() -> Any:
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE j (v TEXT)"))
    yield engine
    engine.dispose()


@settings(max_examples=150, deadline=None)
@given(value=values)
def test_what_check_accepts_sqlite_stores_and_reads_back(memory_engine: sa.Engine, value: Any) -> None:
    try:
        check(value, "x")
    except UnstorableValue:
        return
    with memory_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM j"))
        conn.execute(sa.text("INSERT INTO j VALUES (:v)"), {"v": json.dumps(value, ensure_ascii=False)})
        assert conn.execute(sa.text("SELECT json_valid(v) FROM j")).scalar_one() == 1
        stored = conn.execute(sa.text("SELECT v FROM j")).scalar_one()
    assert _same(json.loads(stored), value)
