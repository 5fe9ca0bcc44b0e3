"""Generated coupon codes (campaigns/customers/loyalty/coupon_codes.py): keyed, deterministic
per send key, and a check character that catches every single-character substitution and
every transposition of adjacent characters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.customers.loyalty.coupon_codes import (
    ALPHABET,
    check_character,
    generated_code,
    has_valid_check,
    is_valid,
)

KEY = b"k" * 32
bodies = st.text(alphabet=ALPHABET, min_size=1, max_size=24)


def test_the_alphabet_has_32_characters_none_of_them_confusable():
    assert len(ALPHABET) == len(set(ALPHABET)) == 32
    assert not set("01IO") & set(ALPHABET)


def test_a_hand_computed_check_character():
    # Values: "2" is 0, "3" is 1. interim = 2*0 + 0 = 0, then 2*0 + 1 = 1; the check
    # character c solves 2*1 + c = 0 in GF(32): c = 2, the character "4".
    assert check_character("23") == "4"
    assert is_valid("234")
    # "Z" (31): 2*31 = 62 = 0b111110, reduced by x^5 + x^2 + 1 (0b100101): 0b011011 = 27, "V".
    assert check_character("Z") == ALPHABET[27] == "V"


@given(bodies)
def test_a_body_with_its_check_character_is_valid(body):
    assert is_valid(body + check_character(body))


@given(bodies)
def test_every_single_character_substitution_is_detected(body):
    code = body + check_character(body)
    for position, original in enumerate(code):
        for replacement in ALPHABET:
            if replacement != original:
                assert not is_valid(code[:position] + replacement + code[position + 1:]), (code, position, replacement)


@given(bodies)
def test_every_adjacent_transposition_is_detected(body):
    code = body + check_character(body)
    for position in range(len(code) - 1):
        first, second = code[position], code[position + 1]
        if first != second:
            swapped = code[:position] + second + first + code[position + 2:]
            assert not is_valid(swapped), (code, position)


def test_the_quasigroup_is_totally_anti_symmetric_for_every_triple():
    # What the property tests sample, checked exhaustively: (c*x)*y == (c*y)*x only if x == y.
    for c in ALPHABET:
        for x in ALPHABET:
            for y in ALPHABET:
                if x != y:
                    assert check_character(c + x + y) != check_character(c + y + x)


def test_characters_outside_the_alphabet_are_refused():
    with pytest.raises(ValueError, match="not a coupon code character"):
        check_character("AB0")
    assert not is_valid("AB0C") and not is_valid("") and not is_valid("A")


def test_a_generated_code_is_the_prefix_the_length_and_a_valid_check_character():
    code = generated_code(KEY, pool="wb", send_key="win_back:0:7:once", prefix="WB", length=10)
    assert len(code) == 2 + 10 + 1 and code.startswith("WB")
    assert set(code[2:]) <= set(ALPHABET)
    assert has_valid_check(code, prefix="WB")
    assert not has_valid_check(code, prefix="XX")


def test_a_code_is_the_same_for_a_retry_and_differs_per_send_key_attempt_pool_and_key():
    code = generated_code(KEY, pool="wb", send_key="s1", prefix="", length=10)
    assert generated_code(KEY, pool="wb", send_key="s1", prefix="", length=10) == code
    others = {
        generated_code(KEY, pool="wb", send_key="s2", prefix="", length=10),
        generated_code(KEY, pool="wb", send_key="s1", prefix="", length=10, attempt=1),
        generated_code(KEY, pool="other", send_key="s1", prefix="", length=10),
        generated_code(b"j" * 32, pool="wb", send_key="s1", prefix="", length=10),
    }
    assert code not in others and len(others) == 4


def test_ten_thousand_send_keys_get_ten_thousand_codes():
    codes = {generated_code(KEY, pool="wb", send_key=f"c:0:{n}:once", prefix="", length=8) for n in range(10_000)}
    assert len(codes) == 10_000
