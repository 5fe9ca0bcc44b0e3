"""Phone normal forms (campaigns.customers.identity.identifiers): the fast path for mainland
mobiles gives exactly what phonenumbers gives, for any text and any default region."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.customers.identity.identifiers import library_e164, normalize_phone

#: Pieces a phone number is written with, including look-alikes the fast path must not
#: take (full-width digits, a leading 0 or 0086, parentheses, dots, letters).
PIECES = st.sampled_from(["+86", "86", "0086", "+", "0", "1", "3", "8", "9", "2", "5", " ", "-", "(", ")",
                          ".", "１", "３", "x", "+1", "+852"])
REGIONS = st.sampled_from(["CN", "US", "HK", "GB"])


@settings(max_examples=600, derandomize=True)
@given(pieces=st.lists(PIECES, max_size=18), region=REGIONS)
def test_any_text_gets_what_phonenumbers_gives(pieces, region):
    text = "".join(pieces)
    assert normalize_phone(text, region=region) == library_e164(text, region=region)


@settings(max_examples=300, derandomize=True)
@given(digits=st.text("0123456789", min_size=9, max_size=9), second=st.sampled_from("3456789"),
       spelling=st.sampled_from(["{n}", "+86{n}", "+86 {a} {b} {c}", "{a}-{b}-{c}", " +86-{n} "]),
       region=REGIONS)
def test_mainland_mobiles_in_every_spelling_are_e164(digits, second, spelling, region):
    number = f"1{second}{digits}"
    text = spelling.format(n=number, a=number[:3], b=number[3:7], c=number[7:])
    expected = library_e164(text, region=region)
    assert normalize_phone(text, region=region) == expected
    if text.strip().startswith("+86") or region == "CN":
        assert expected == "+86" + number


def test_look_alikes_are_left_to_phonenumbers():
    # Full-width digits (a Chinese input method's), other countries' numbers, a trunk 0.
    for text in ("１３８００１３８０００", "+86１３８００１３８０００", "+85213800138000", "013800138000",
                 "(+86) 138 0013 8000", "138.0013.8000", "12800138000", "1３８００１３８０００",
                 "13８00138000", "+86 13８0013800０"):
        assert normalize_phone(text) == library_e164(text), text
    assert normalize_phone("１３８００１３８０００") == "+8613800138000"
