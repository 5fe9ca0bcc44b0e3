"""Deterministic assignment of customers to holdout groups and A/B variants, in SQL.

A customer's bucket for a campaign comes from a universal hash of the customer id,
``((id * a + b) mod P) * BUCKETS // P`` with the Mersenne prime ``P = 2^31 - 1`` and ``a``,
``b`` derived from the campaign name and purpose. Integer arithmetic that SQLite and
PostgreSQL evaluate identically (products stay below 2^63), so planning stays one
set-based statement, the same customer always lands in the same group, groups of
different campaigns are independent (a customer held out of one campaign is no more
likely to be held out of another), and :func:`bucket` gives the same answer in Python.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import sqlalchemy as sa

#: Buckets per assignment: shares are honoured to 0.01 %.
BUCKETS = 10_000
_PRIME = 2**31 - 1


def coefficients(campaign: str, purpose: str) -> tuple[int, int]:
    """The hash's ``(a, b)`` for one campaign and purpose (``holdout``, ``step0`` ...)."""
    a = 1 + zlib.crc32(f"{campaign}|{purpose}|a".encode()) % (_PRIME - 1)
    b = zlib.crc32(f"{campaign}|{purpose}|b".encode()) % _PRIME
    return a, b


def bucket(customer_id: int, campaign: str, purpose: str) -> int:
    """The customer's bucket in ``[0, BUCKETS)``; the Python mirror of :func:`bucket_sql`."""
    a, b = coefficients(campaign, purpose)
    return ((customer_id * a + b) % _PRIME) * BUCKETS // _PRIME


def bucket_sql(customer_id: sa.ColumnElement[int], campaign: str, purpose: str) -> sa.ColumnElement[int]:
    """:func:`bucket` as a SQL expression."""
    a, b = coefficients(campaign, purpose)
    hashed = (sa.cast(customer_id, sa.BigInteger) * a + b) % _PRIME
    return (hashed * BUCKETS) // _PRIME


def in_holdout_sql(customer_id: sa.ColumnElement[int], campaign: str, share: float) -> sa.ColumnElement[bool]:
    """True for the customers held out of ``campaign`` (``share`` of them, 0 to 1)."""
    return bucket_sql(customer_id, campaign, "holdout") < round(share * BUCKETS)


def variant_sql(
    customer_id: sa.ColumnElement[int], campaign: str, step: int, weights: Sequence[float]
) -> sa.ColumnElement[int]:
    """The index of the variant a customer gets at ``step``, by relative ``weights``."""
    total = sum(weights)
    edges, running = [], 0.0
    for weight in weights[:-1]:
        running += weight
        edges.append(round(running / total * BUCKETS))
    value = bucket_sql(customer_id, campaign, f"step{step}")
    return sa.case(*[(value < edge, index) for index, edge in enumerate(edges)], else_=len(weights) - 1)


def variant_of(customer_id: int, campaign: str, step: int, weights: Sequence[float]) -> int:
    """The Python mirror of :func:`variant_sql`."""
    total = sum(weights)
    value = bucket(customer_id, campaign, f"step{step}")
    running = 0.0
    for index, weight in enumerate(weights[:-1]):
        running += weight
        if value < round(running / total * BUCKETS):
            return index
    return len(weights) - 1
