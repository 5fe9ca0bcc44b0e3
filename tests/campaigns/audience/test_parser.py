"""Parsing audience expressions (campaigns.audience.parser): every error says what, where
(line and character column) and, where it can, how to fix it."""

from __future__ import annotations

import pytest

from campaigns.audience.language import ExpressionError
from campaigns.audience.parser import parse_expression
from campaigns.config.schema import AppConfig

RFM_NAMES = AppConfig().rfm.names


def parse(text: str, segments=(), rfm_names=RFM_NAMES):
    return parse_expression(text, rfm_names=rfm_names, segment_names=segments)


def errors_of(text: str, segments=()) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        parse(text, segments)
    return caught.value


def test_a_syntax_error_has_a_column():
    error = errors_of('orders_count >= 2 and (stage == "new"')
    assert error.message.startswith("syntax error:")
    assert (error.message, error.column) == ("syntax error: '(' was never closed", 23)
    error = errors_of('stage = "new"')
    assert error.message.startswith("syntax error:") and error.column is not None
    error = errors_of('has_email AND has_phone')
    assert error.hint == "write and, or, not in lower case"
    error = errors_of('stage == "new\n')
    assert (error.message, error.column) == ("syntax error: unterminated string literal", 10)


def test_pathologically_deep_expressions_are_rejected_not_crashing():
    assert "nested more than 100 levels" in errors_of("not " * 2000 + "has_email").message
    assert errors_of("x" * 10_001).message.startswith("audience expression is longer than")


def test_unbalanced_brackets_are_not_absorbed_by_the_multi_line_wrapping():
    error = errors_of('has_email) or (has_phone')
    assert "unmatched ')'" in error.message and error.column == 10


def test_errors_on_later_lines_name_the_line():
    error = errors_of('stage == "new"\nor stagee == "x"')
    assert (error.line, error.column) == (2, 4)
    assert str(error) == "unknown field 'stagee' at line 2, column 4 (did you mean 'stage'?)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('__import__("os")', "unknown function '__import__'"),
        ('__import__("os").system("true")', "calling __import__(\"os\").system is not allowed"),
        ("stage.__class__", "attribute access is not allowed (stage.__class__)"),
        ("attributes.vip.__class__ == 1", "attribute access is not allowed"),
        ("1 + 2", "arithmetic is not allowed"),
        ("orders_count + 1 > 2", "arithmetic is not allowed"),
        ('attributes["vip"]', "subscripts ([...]) are not allowed"),
        ("r_score[0] == 1", "subscripts ([...]) are not allowed"),
        ("lambda: true", "lambda is not allowed"),
        ("(x := 1)", "':=' is not allowed"),
        ('f"{stage}" == "new"', "f-strings are not allowed"),
        ('{"a": 1}', "dicts are not allowed"),
        ("[c for c in stage]", "comprehensions are not allowed"),
        ("stage is None", "'is' is not supported"),
        ('stage == None', "NoneType literals are not allowed"),
        ('open("x")', "unknown function 'open'"),
        ('did("review", since="30d")', "did() has no argument since="),
        ('did(stage)', "did() needs a non-empty string"),
        ('did("review", within="soon")', "invalid duration 'soon'"),
        ('did("review", within="0d")', "within must be longer than zero"),
        ('consent("fax")', "unknown consent channel 'fax'"),
        ("orders_count", "field 'orders_count' is not a condition"),
        ('count_of("review")', 'count_of("review") is a number, not a condition'),
        ('"active"', 'the value "active" alone is not a condition'),
        ("", "empty audience expression"),
        ("   \n ", "empty audience expression"),
    ],
)
def test_anything_outside_the_language_is_rejected(text, message):
    assert message in errors_of(text).message


def test_unknown_field_suggests_the_closest_name():
    error = errors_of('stagee == "active"')
    assert error.message == "unknown field 'stagee'"
    assert error.column == 1
    assert str(error) == "unknown field 'stagee' at column 1 (did you mean 'stage'?)"
    far = errors_of("zzz == 1")
    assert "known: stage, rfm_segment" in str(far) and "attributes.NAME" in str(far)


def test_columns_count_characters_not_bytes():
    error = errors_of('attributes.city == "武汉" and stagee == "new"')
    assert error.column == 29  # 33 if counted in UTF-8 bytes


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ('stage == "activ"', "unknown stage 'activ'", 10),
        ('stage in ["new", "lost"]', "unknown stage 'lost'", 18),
        ('rfm_segment == "champs"', "unknown RFM segment 'champs'", 16),
        ('r_score == "5"', "r_score is a number", 12),
        ('orders_count > true', "orders_count is a number", 16),
        ("stage == 1", "stage is text", 10),
        ('stage < "new"', "stage is text: use ==, !=, in or not in, not <", 1),
        ("has_email == 1", "has_email is true or false", 14),
        ("has_email > false", "has_email is true or false: use == or !=", 1),
        ('purchase_channel != "store"', "purchase_channel supports ==, in and not in", 1),
        ('purchase_channel > "store"', "purchase_channel supports ==, in and not in", 1),
        ("stage in has_email", "in and not in need a list of values", 10),
        ('stage == has_email', "a field can only be compared with a literal value", 10),
        ("1 == 1", "a comparison needs a field on one side", 1),
        ('attributes.vip in [true, "x"]', "values of one type", 20),
        ('attributes.city > "a"', "> needs a number", 1),
        ('did("review") > 1', "did(\"review\") is true or false", 17),
    ],
)
def test_values_are_type_checked(text, message, column):
    error = errors_of(text)
    assert message in error.message
    assert error.column == column


def test_rfm_values_follow_the_configured_table():
    assert parse('rfm_segment == "whales"', rfm_names=["whales", "minnows"]).text
    with pytest.raises(ExpressionError, match="unknown RFM segment 'champions'"):
        parse('rfm_segment == "champions"', rfm_names=["whales", "minnows"])
