"""Deterministic assignment of customers to holdout groups and A/B variants, in SQL.

A customer's bucket for a campaign comes from a hash of (campaign, purpose, customer id):
a polynomial of degree :data:`DEGREE` in the id over the prime field of ``P = 2^31 - 1``,
its coefficients drawn from SHA-256 of the campaign name and purpose (``holdout``,
``step0`` ...), evaluated by Horner's rule, then scaled to ``[0, BUCKETS)``. Random
polynomials of degree d are (d + 1)-wise independent (Carter and Wegman): who is held out
does not follow the order of the ids (the linear hash this replaces held out 7 of every
32 consecutive ids), nor the order customers signed up in, and groups of different
campaigns are independent (a customer held out of one campaign is no more likely to be
held out of another).

Integer arithmetic that SQLite and PostgreSQL evaluate identically (every product stays
below 2^62), so planning stays one set-based statement, the same customer always lands
in the same group, and :func:`bucket` gives the same answer in Python. Ids are taken
modulo ``P``: the hash is defined for ids below 2^31 - 1 (two thousand million customers).

An enrolment records its holdout and a delivery its variant when they are written, so
changing this function never moves a customer already enrolled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa

#: Buckets per assignment: shares are honoured to 0.01 %.
BUCKETS = 10_000
#: Degree of the hashing polynomial: 5-independent, enough for every test of independence
#: a marketer's report can ask (pairs, blocks, lags) and cheap in SQL (one product per degree).
DEGREE = 4
_PRIME = 2**31 - 1


def coefficients(campaign: str, purpose: str) -> tuple[int, ...]:
    """The polynomial's coefficients for one campaign and purpose, highest degree first
    (that one never zero, so the degree is exact)."""
    digest = hashlib.sha256(f"nurture-assignment|{campaign}|{purpose}".encode()).digest()
    words = [int.from_bytes(digest[4 * i : 4 * i + 4], "big") for i in range(DEGREE + 1)]
    return (1 + words[0] % (_PRIME - 1), *(word % _PRIME for word in words[1:]))


def bucket(customer_id: int, campaign: str, purpose: str) -> int:
    """The customer's bucket in ``[0, BUCKETS)``; the Python mirror of :func:`bucket_sql`."""
    leading, *rest = coefficients(campaign, purpose)
    x = customer_id % _PRIME
    hashed = leading
    for coefficient in rest:
        hashed = (hashed * x + coefficient) % _PRIME
    return hashed * BUCKETS // _PRIME


def bucket_sql(customer_id: sa.ColumnElement[int], campaign: str, purpose: str) -> sa.ColumnElement[int]:
    """:func:`bucket` as a SQL expression (the id appears once per degree)."""
    leading, *rest = coefficients(campaign, purpose)
    x = sa.cast(customer_id, sa.BigInteger) % _PRIME
    hashed: sa.ColumnElement[int] = sa.literal(leading, sa.BigInteger)
    for coefficient in rest:
        hashed = (hashed * x + coefficient) % _PRIME
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
