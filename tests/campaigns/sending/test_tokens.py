"""Click, open and unsubscribe tokens (campaigns.sending.tokens): round trip, nothing readable in them,
tampering, other secrets, garbage, no cross-use between kinds, and format-1 tokens (in
mail sent before format 2) still verified."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.sending import tokens
from campaigns.sending.tokens import (
    MAX_CLICK_TOKEN_LENGTH,
    make_click_token,
    make_open_token,
    make_unsubscribe_token,
    verify_click_token,
    verify_open_token,
    verify_unsubscribe_token,
)

SECRET = "click-secret-1"
SEND_KEY = "win_back:0:42:once"
URL = "https://shop.example.com/p/123?utm_source=nurture&x=%E2%9C%93"
#: A link whose query carries the customer's email and phone, as shop links often do.
PERSONAL_KEY = "order_confirm:0:bob@example.org:13812345678"
PERSONAL_URL = "https://shop.example.com/track?email=bob@example.org&phone=%2B8613812345678"


def decode(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def legacy_click_token(send_key: str, url: str, secret: str) -> str:
    """A format-1 token, as mail sent before format 2 carries (built without the project's code)."""
    payload = len(send_key.encode()).to_bytes(2, "big") + send_key.encode() + url.encode()
    return encode(payload + hmac.new(secret.encode(), b"nurture-click-v1:" + payload, hashlib.sha256).digest())


def readable_forms(token: str) -> list[bytes]:
    """Every way someone reading an access log might try to read a token: as is, base64
    decoded from each of the first few offsets, with and without the URL-safe alphabet."""
    forms = [token.encode()]
    for skip in range(4):
        chunk = token[skip:]
        for decoder in (base64.urlsafe_b64decode, base64.b64decode):
            try:
                forms.append(decoder(chunk + "=" * (-len(chunk) % 4)))
            except (binascii.Error, ValueError):
                pass
    return forms


def test_a_token_carries_the_send_key_and_url_back() -> None:
    token = make_click_token(SEND_KEY, URL, SECRET)
    assert verify_click_token(token, SECRET) == (SEND_KEY, URL)
    # URL-safe as it is: no padding, no characters a URL path would need to escape.
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_click_and_open_tokens_reveal_neither_send_key_nor_url() -> None:
    click = make_click_token(PERSONAL_KEY, PERSONAL_URL, SECRET)
    opened = make_open_token(PERSONAL_KEY, SECRET)
    assert verify_click_token(click, SECRET) == (PERSONAL_KEY, PERSONAL_URL)
    assert verify_open_token(opened, SECRET) == PERSONAL_KEY
    secrets_in_clear = [b"bob@example.org", b"bob", b"13812345678", b"8613812345678", b"order_confirm",
                        b"shop.example.com", b"track", b"email=", PERSONAL_KEY.encode(), PERSONAL_URL.encode()]
    for token in (click, opened):
        for form in readable_forms(token):
            for needle in secrets_in_clear:
                assert needle not in form, (needle, token)
    # Lengths are padded: a longer URL of the same 32-byte block gives a token as long.
    assert len(make_click_token(SEND_KEY, "https://a.example/1", SECRET)) == len(
        make_click_token(SEND_KEY, "https://a.example/12", SECRET))


def test_tokens_are_deterministic_and_differ_per_link() -> None:
    assert make_click_token(SEND_KEY, URL, SECRET) == make_click_token(SEND_KEY, URL, SECRET)
    assert make_click_token(SEND_KEY, URL, SECRET) != make_click_token(SEND_KEY, URL + "&y=1", SECRET)
    assert make_click_token(SEND_KEY, URL, SECRET) != make_click_token(SEND_KEY + "x", URL, SECRET)


def test_another_secret_does_not_verify() -> None:
    assert verify_click_token(make_click_token(SEND_KEY, URL, SECRET), "other-secret") is None
    assert verify_click_token(make_click_token(SEND_KEY, URL, SECRET), "") is None


def test_changing_any_byte_breaks_the_token() -> None:
    data = decode(make_click_token(SEND_KEY, URL, SECRET))
    for position in range(len(data)):
        tampered = bytearray(data)
        tampered[position] ^= 0x01
        assert verify_click_token(encode(bytes(tampered)), SECRET) is None, position


def test_format_1_tokens_in_mail_already_sent_still_verify() -> None:
    old = legacy_click_token(SEND_KEY, URL, SECRET)
    assert verify_click_token(old, SECRET) == (SEND_KEY, URL)
    assert verify_click_token(old, "other-secret") is None
    old_open = encode(SEND_KEY.encode() + hmac.new(SECRET.encode(), b"nurture-open-v1:" + SEND_KEY.encode(),
                                                   hashlib.sha256).digest())
    assert verify_open_token(old_open, SECRET) == SEND_KEY


def test_a_format_1_url_cannot_be_swapped_nor_bytes_moved() -> None:
    # An attacker rewrites the URL part to make our redirect an open redirect.
    data = decode(legacy_click_token(SEND_KEY, URL, SECRET))
    evil = data.replace(b"shop.example.com", b"evil.example.net")
    assert evil != data
    assert verify_click_token(encode(evil), SECRET) is None
    # The send key's length is signed: "k:1" + "2/x" cannot become "k:12" + "/x".
    data = decode(legacy_click_token("k:1", "https://a.example/2", SECRET))
    payload, mac = data[:-32], data[-32:]
    shifted = (int.from_bytes(payload[:2], "big") + 1).to_bytes(2, "big") + payload[2:]
    assert verify_click_token(encode(shifted + mac), SECRET) is None


def test_an_unsubscribe_token_is_not_a_click_token_and_vice_versa() -> None:
    unsubscribe = make_unsubscribe_token(SEND_KEY, SECRET)
    assert verify_unsubscribe_token(unsubscribe, SECRET) == SEND_KEY
    assert verify_click_token(unsubscribe, SECRET) is None
    click = make_click_token(SEND_KEY, URL, SECRET)
    assert verify_unsubscribe_token(click, SECRET) is None


def test_an_open_token_is_not_a_click_token_and_vice_versa() -> None:
    click = make_click_token(SEND_KEY, URL, SECRET)
    opened = make_open_token(SEND_KEY, SECRET)
    assert verify_click_token(opened, SECRET) is None
    assert verify_open_token(click, SECRET) is None


def test_an_unsubscribe_mac_over_a_click_payload_does_not_verify() -> None:
    # Domain separation: the same bytes signed for unsubscribing are no click.
    payload = len(SEND_KEY).to_bytes(2, "big") + SEND_KEY.encode() + URL.encode()
    mac = hmac.new(SECRET.encode(), b"nurture-unsubscribe-v1:" + payload, hashlib.sha256).digest()
    assert verify_click_token(encode(payload + mac), SECRET) is None
    mac = hmac.new(SECRET.encode(), tokens.CLICK_CONTEXT + payload, hashlib.sha256).digest()
    assert verify_click_token(encode(payload + mac), SECRET) == (SEND_KEY, URL)


def test_format_1_macs_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    assert verify_click_token(legacy_click_token(SEND_KEY, URL, SECRET), SECRET) == (SEND_KEY, URL)
    assert len(calls) == 1


@pytest.mark.parametrize(
    "token",
    ["", "!!!", "a", "====", "A" * 10, encode(b"\x00" * 40), encode(b"\xff\xff" + b"x" * 40),
     encode(b"\x02" * 60), encode(b"\x02"), "A" * (MAX_CLICK_TOKEN_LENGTH + 4)],
)
def test_garbage_fails_verification_without_raising(token: str) -> None:
    assert verify_click_token(token, SECRET) is None
    assert verify_open_token(token, SECRET) is None


@pytest.mark.parametrize(
    ("send_key", "url", "secret", "message"),
    [
        (SEND_KEY, URL, "", "secret is required"),
        ("", URL, SECRET, "send key"),
        ("k" * 256, URL, SECRET, "send key"),
        (SEND_KEY, "javascript:alert(1)", SECRET, "http(s) URL"),
        (SEND_KEY, "/relative/path", SECRET, "http(s) URL"),
        (SEND_KEY, "https://example.com/" + "a" * 2100, SECRET, "http(s) URL"),
    ],
)
def test_making_a_token_refuses_bad_input(send_key: str, url: str, secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_click_token(send_key, url, secret)


@given(
    send_key=st.text(min_size=1, max_size=60).filter(lambda s: len(s.encode()) <= 255),
    path=st.text(max_size=200),
    secret=st.text(min_size=1, max_size=40),
)
def test_any_send_key_and_url_round_trip(send_key: str, path: str, secret: str) -> None:
    url = "https://example.com/" + path
    if len(url) > tokens.MAX_URL_LENGTH:
        return
    token = make_click_token(send_key, url, secret)
    assert len(token) <= MAX_CLICK_TOKEN_LENGTH
    assert verify_click_token(token, secret) == (send_key, url)
