"""How long an SMS is and how many segments (billed messages) it takes.

A text made only of GSM-7 characters (3GPP TS 23.038: the basic table, plus the extension
table's ``^{}\\[~]|€`` and form feed, which take two septets each) fits 160 septets in one
message, 153 per segment once split (the rest holds the concatenation header). Anything
else, one Chinese character or an emoji, switches the whole text to UCS-2: 70 UTF-16 code
units in one message, 67 per segment, and a character outside the BMP (most emoji) takes
two. A segment never splits an escape pair or a surrogate pair, so a few texts take one
segment more than a plain division says; :func:`sms_length` counts the way handsets do.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The GSM 03.38 basic character set (the escape 0x1B left out: it only introduces the
#: extension table).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The extension table: each character is sent as escape + code, two septets.
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")

#: (one-message limit, per-segment limit) in septets (GSM-7) or UTF-16 code units (UCS-2).
LIMITS = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


@dataclass(frozen=True)
class SmsLength:
    """An SMS text's encoding, its length in that encoding's units, and its segments."""

    encoding: str
    #: Septets (GSM-7) or UTF-16 code units (UCS-2).
    units: int
    #: Characters as a person counts them.
    characters: int
    segments: int

    def as_dict(self) -> dict[str, object]:
        """The length as JSON-ready values."""
        return {"encoding": self.encoding, "units": self.units, "characters": self.characters,
                "segments": self.segments}


def is_gsm7(text: str) -> bool:
    """Whether every character of ``text`` has a GSM-7 code."""
    return all(char in GSM_BASIC or char in GSM_EXTENSION for char in text)


def _weight(char: str, encoding: str) -> int:
    if encoding == "GSM-7":
        return 2 if char in GSM_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1


def sms_length(text: str) -> SmsLength:
    """The encoding, length and segment count of ``text`` as it would be sent."""
    encoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    single, per_segment = LIMITS[encoding]
    weights = [_weight(char, encoding) for char in text]
    units = sum(weights)
    if units == 0:
        segments = 0
    elif units <= single:
        segments = 1
    else:
        # Fill segments greedily: a two-unit character that does not fit opens the next one.
        segments, used = 1, 0
        for weight in weights:
            if used + weight > per_segment:
                segments, used = segments + 1, 0
            used += weight
    return SmsLength(encoding=encoding, units=units, characters=len(text), segments=segments)
