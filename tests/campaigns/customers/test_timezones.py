"""Time zones of customers (campaigns/customers/timezones.py): the zone on file, else a guess
from the phone number where its country has only one zone, else the fallback."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from campaigns.customers.timezones import customer_zone, zone_of_phone

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_zone_guesses_from_the_phone_only_where_a_country_has_one_zone():
    assert zone_of_phone("+86 138 0000 0000") == SHANGHAI
    assert zone_of_phone("+85291234567") == ZoneInfo("Asia/Hong_Kong")
    assert zone_of_phone("+12125550100") is None  # the US spans six zones: no guess
    assert zone_of_phone("13800000000") is None  # not E.164
    fallback = ZoneInfo("Europe/Paris")
    assert customer_zone({"timezone": "Asia/Tokyo", "phone": "+8613800000000"}, fallback) == ZoneInfo("Asia/Tokyo")
    assert customer_zone({"timezone": "Not/AZone", "phone": None}, fallback) == fallback
