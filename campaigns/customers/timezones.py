"""Which time zone a customer lives in, for quiet hours and send windows.

The customer's own ``timezone`` wins. Without one, a phone number whose country uses a
single time zone answers (``+86`` is ``Asia/Shanghai`` everywhere in mainland China);
otherwise the campaign's time zone is the best guess left.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from campaigns.config.values import zone_named

#: Country calling codes of countries (and regions) with one time zone, longest first
#: when matched. Multi-zone countries (+1, +7, +55, +61 ...) are left out on purpose:
#: guessing wrong there would put a message in someone's night.
SINGLE_ZONE_CALLING_CODES: dict[str, str] = {
    "86": "Asia/Shanghai",
    "852": "Asia/Hong_Kong",
    "853": "Asia/Macau",
    "886": "Asia/Taipei",
    "81": "Asia/Tokyo",
    "82": "Asia/Seoul",
    "65": "Asia/Singapore",
    "60": "Asia/Kuala_Lumpur",
    "66": "Asia/Bangkok",
    "84": "Asia/Ho_Chi_Minh",
    "63": "Asia/Manila",
    "91": "Asia/Kolkata",
    "971": "Asia/Dubai",
    "44": "Europe/London",
    "353": "Europe/Dublin",
    "33": "Europe/Paris",
    "49": "Europe/Berlin",
    "39": "Europe/Rome",
    "34": "Europe/Madrid",
    "31": "Europe/Amsterdam",
    "32": "Europe/Brussels",
    "41": "Europe/Zurich",
    "46": "Europe/Stockholm",
    "48": "Europe/Warsaw",
    "64": "Pacific/Auckland",
}
_LONGEST_FIRST = sorted(SINGLE_ZONE_CALLING_CODES, key=len, reverse=True)


def zone_of_phone(phone: str | None) -> ZoneInfo | None:
    """The zone of an E.164 number's country when that country has only one, else None."""
    if not phone or not phone.startswith("+"):
        return None
    digits = phone[1:].replace(" ", "").replace("-", "")
    for code in _LONGEST_FIRST:
        if digits.startswith(code):
            return zone_named(SINGLE_ZONE_CALLING_CODES[code])
    return None


def customer_zone(customer: Mapping[str, Any], fallback: ZoneInfo) -> ZoneInfo:
    """The customer's time zone: their own, else their phone's country's, else ``fallback``."""
    name = customer.get("timezone")
    return (name and zone_named(name)) or zone_of_phone(customer.get("phone")) or fallback
