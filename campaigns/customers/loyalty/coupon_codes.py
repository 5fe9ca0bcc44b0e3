"""Generated coupon codes: keyed, unguessable, with a check character; pure functions.

::

    code      = prefix + body + check
    body      = the first ``length`` 5-bit groups of
                HMAC-SHA256(key, pool 0x1f send_key 0x1f attempt), as characters of ALPHABET
    key       = HKDF-SHA256(installation secret, info = b"nurture/coupon-code")
    check     = the Damm check character of the body, over ALPHABET

The alphabet is the 32 characters ``2-9`` and ``A-Z`` without ``I`` and ``O``, so a code
read aloud or typed from paper has no 0/O or 1/I to confuse. A code is:

* **keyed**: only a holder of the installation secret (``[security] secret_env``) can
  compute one, so knowing the send-key scheme gives nobody a valid code;
* **unguessable**: ``length`` characters are ``5 * length`` bits (50 by default); with a
  million codes issued, a random guess of the right shape is valid about once in 10^9 tries;
* **deterministic** per pool and send key: a retried message gets the same code. Should a
  code already belong to another message (a one-in-10^9 event), ``attempt`` 1, 2 ... give
  the next candidates, still the same for every retry;
* **checked**: the last character is Damm's check digit (H. M. Damm, *Total anti-symmetrische
  Quasigruppen*, 2004) over the quasigroup ``x * y = 2x + y`` in GF(32), the field of
  polynomials over GF(2) modulo ``x^5 + x^2 + 1``. Each row of that operation is a
  permutation, so every single-character substitution changes the result; and
  ``(c * x) * y = (c * y) * x`` only when ``x = y`` (it is ``4c + 2x + y`` against
  ``4c + 2y + x``, equal only if ``x = y``), so every transposition of two adjacent
  characters (the check character included) is detected too. Luhn mod N would miss some
  transpositions. The prefix is a fixed label and not covered.
"""

from __future__ import annotations

import hashlib
import hmac

#: The 32 characters of a code's body and check character, by value 0..31.
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_VALUE = {char: value for value, char in enumerate(ALPHABET)}
#: x^5 + x^2 + 1, the irreducible polynomial of GF(32).
_MODULUS = 0b100101
#: The HKDF purpose of the coupon key (campaigns.config.keys.derive_key).
CODE_PURPOSE = "coupon-code"
#: How many candidate codes one send key has before assignment gives up.
MAX_ATTEMPTS = 8


def _double(value: int) -> int:
    """``2 * value`` in GF(32)."""
    value <<= 1
    return value ^ _MODULUS if value & 0b100000 else value


def _interim(values: list[int]) -> int:
    interim = 0
    for value in values:
        interim = _double(interim) ^ value  # the quasigroup: interim * value = 2 interim + value
    return interim


def check_character(body: str) -> str:
    """The Damm check character of ``body`` (characters of :data:`ALPHABET`).

    Raises:
        ValueError: ``body`` has a character outside the alphabet.
    """
    try:
        values = [_VALUE[char] for char in body]
    except KeyError as exc:
        raise ValueError(f"{exc.args[0]!r} is not a coupon code character ({ALPHABET})") from None
    # The character c with interim * c = 0: 2 interim + c = 0, and in GF(2^k) minus is plus.
    return ALPHABET[_double(_interim(values))]


def is_valid(body_and_check: str) -> bool:
    """True when the last character is the check character of the rest (prefix removed)."""
    if len(body_and_check) < 2 or any(char not in _VALUE for char in body_and_check):
        return False
    return _interim([_VALUE[char] for char in body_and_check]) == 0


def generated_code(key: bytes, *, pool: str, send_key: str, prefix: str, length: int, attempt: int = 0) -> str:
    """The code generated for ``send_key`` in ``pool``: ``prefix``, ``length`` keyed
    characters and the check character. ``attempt`` picks the next candidate."""
    if not 1 <= length <= 51:  # 51 five-bit groups fit in SHA-256's 256 bits
        raise ValueError("length must be between 1 and 51")
    message = "\x1f".join((pool, send_key, str(attempt))).encode("utf-8")
    bits = int.from_bytes(hmac.new(key, message, hashlib.sha256).digest(), "big")
    body = "".join(ALPHABET[(bits >> (251 - 5 * index)) & 31] for index in range(length))
    return prefix + body + check_character(body)


def has_valid_check(code: str, *, prefix: str) -> bool:
    """True when ``code`` starts with ``prefix`` and the rest passes :func:`is_valid`."""
    return code.startswith(prefix) and is_valid(code[len(prefix):])


__all__ = ["ALPHABET", "CODE_PURPOSE", "MAX_ATTEMPTS", "check_character", "generated_code", "has_valid_check",
           "is_valid"]
