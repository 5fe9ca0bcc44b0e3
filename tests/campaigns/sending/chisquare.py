"""Pearson's chi-square tests for the assignment tests, without scipy: the statistic and
its p-value (the chi-square distribution's survival function, by the regularized upper
incomplete gamma function; Numerical Recipes' series and continued fraction)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def chi2_sf(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X chi-square with ``dof`` degrees of freedom."""
    if statistic <= 0:
        return 1.0
    a, x = dof / 2, statistic / 2
    if x < a + 1:  # series for the lower function, then its complement
        term = total = 1 / a
        n = a
        while abs(term) > abs(total) * 1e-15:
            n += 1
            term *= x / n
            total += term
        return max(0.0, 1 - total * math.exp(-x + a * math.log(x) - math.lgamma(a)))
    tiny = 1e-300  # Lentz's continued fraction for the upper function
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def blocks_p(members: Sequence[bool], *, blocks: int) -> float:
    """p-value that ``members`` (in some order) fall evenly across ``blocks`` consecutive
    blocks of equal size, as independent draws at their overall share would."""
    size = len(members) // blocks
    share = sum(members[: size * blocks]) / (size * blocks)
    expected = size * share
    # Binomial counts: variance size * share * (1 - share), not Poisson's expected.
    statistic = sum((sum(members[k * size : (k + 1) * size]) - expected) ** 2 for k in range(blocks))
    return chi2_sf(statistic / (expected * (1 - share)), blocks - 1)


def pairs_p(members: Sequence[bool], *, lag: int) -> float:
    """p-value that membership of the item ``lag`` places on is independent of this one's
    (a 2x2 contingency table over every such pair)."""
    table = [[0, 0], [0, 0]]
    for first, second in zip(members, members[lag:], strict=False):
        table[first][second] += 1
    n = sum(map(sum, table))
    rows = [sum(table[0]), sum(table[1])]
    cols = [table[0][0] + table[1][0], table[0][1] + table[1][1]]
    statistic = sum((table[r][c] - rows[r] * cols[c] / n) ** 2 / (rows[r] * cols[c] / n)
                    for r in (0, 1) for c in (0, 1))
    return chi2_sf(statistic, 1)
