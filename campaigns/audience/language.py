"""Audience expressions: one small language for campaigns, ``[segments]`` and the CLI.

An audience expression is a Python-like boolean expression::

    stage == "at_risk" and orders_count >= 2 and not did("review", within="30d")

It is parsed with :mod:`ast` (``mode="eval"``) and only an allow-list of nodes is
accepted: ``and``/``or``/``not``, parentheses, comparisons (``== != < <= > >=``, chained
as in ``1 <= r_score <= 3``), ``in [...]``/``not in [...]``, string and number literals,
``true``/``false`` and lists. Nothing is ever evaluated by Python: the tree is compiled
to one SQLAlchemy condition over ``customer`` LEFT OUTER JOIN ``customer_profile``.

Fields and functions are listed in :data:`FIELDS` and :data:`FUNCTIONS` (and in
docs/segments.md). Profile fields describe the customer as of the last profile
recompute; a customer without a profile row (imported since) has no value for them.
Loyalty fields and functions (:data:`LOYALTY_NAMES`) read the points lots and member
tiers at evaluation time, and exist only while ``[loyalty] enabled`` is true.

Missing values follow Python, not SQL: every comparison is either true or false, a
missing value equals nothing (``==``, ``<``, ``in`` are false; ``!=`` and ``not in`` are
true), so ``not (x == 1)`` always selects the same customers as ``x != 1``.

This module holds what the language is (its fields, functions, limits, parsed form and
error); :mod:`campaigns.audience.parser` reads it, :mod:`campaigns.audience.compiler`
turns it into SQL and :mod:`campaigns.audience.segments` checks the named ``[segments]``.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from campaigns.config.jsonvalues import MAX_INTEGER, MIN_INTEGER
from campaigns.config.vocabulary import CHANNEL_FAMILIES
from campaigns.errors import NurtureError

#: Longest expression accepted and deepest nesting of its tree (guards against
#: pathological input, not style rules).
MAX_LENGTH = 10_000
MAX_DEPTH = 100
#: Most syntax nodes an expression may have once every ``segment("...")`` it uses is
#: inlined (segments inlining each other twice per level grew exponentially: 2**30 nodes).
#: Its inlined depth is bounded by MAX_DEPTH, like a hand-written expression's.
MAX_EXPANDED_NODES = 20_000
#: Longest chain of segments using segments (a -> b -> c ...).
MAX_SEGMENT_NESTING = 16
#: Numbers an expression may compare with: integers must fit the databases' BIGINT
#: (SQLite refused to bind larger ones mid-tick); day counts stay within date arithmetic
#: (MAX_DAYS, the bound config and durations use too).
INT64_MIN, INT64_MAX = MIN_INTEGER, MAX_INTEGER

#: Consent channel families ``consent()`` accepts.
CONSENT_CHANNELS = CHANNEL_FAMILIES


class ExpressionError(NurtureError, ValueError):
    """An audience expression is invalid.

    ``message`` says what is wrong, ``column`` (1-based) and ``line`` (1-based, only
    interesting in multi-line expressions) where, ``hint`` how to fix it; ``str()`` puts
    them together: ``unknown field 'stagee' at column 1 (did you mean 'stage'?)``.
    """

    def __init__(self, message: str, column: int | None = None, *, line: int | None = None,
                 hint: str | None = None) -> None:
        self.message = message
        self.column = column
        self.line = line
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        text = self.message
        if self.column is not None:
            if self.line and self.line > 1:
                text += f" at line {self.line}, column {self.column}"
            else:
                text += f" at column {self.column}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def __str__(self) -> str:
        return self._render()


@dataclass(frozen=True)
class Expression:
    """A parsed and validated audience expression (build it with
    :func:`~campaigns.audience.parser.parse_expression`).

    ``tree``'s line numbers count from the first line of ``text``.
    """

    text: str
    tree: ast.Expression


@dataclass(frozen=True)
class FieldSpec:
    """One field of the language: its value type and where it comes from."""

    name: str
    #: str, int, number, bool, days (days_since_signup), purchase_channel.
    kind: str
    source: str
    doc: str


FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("stage", "str", "profile", 'Lifecycle stage: "prospect", "new", "active", "at_risk" or "churned".'),
        FieldSpec("rfm_segment", "str", "profile", 'RFM segment name from `[[rfm.segments]]` (e.g. "champions").'),
        FieldSpec("r_score", "int", "profile", "Recency score 1-5 (5 = bought most recently)."),
        FieldSpec("f_score", "int", "profile", "Frequency score 1-5 (5 = most orders)."),
        FieldSpec("m_score", "int", "profile", "Monetary score 1-5 (5 = highest spend)."),
        FieldSpec("orders_count", "int", "profile", "Number of orders."),
        FieldSpec("total_spent", "number", "profile", "Sum of order amounts."),
        FieldSpec("avg_order_value", "number", "profile", "Average order amount (no value without orders)."),
        FieldSpec("days_since_last_order", "days", "profile", "Whole days since the last order, at evaluation time (no value without orders)."),
        FieldSpec("acquisition_channel", "str", "customer", 'Where the customer came from, e.g. "store".'),
        FieldSpec("locale", "str", "customer", 'The customer\'s locale, e.g. "zh-CN".'),
        FieldSpec("timezone", "str", "customer", 'The customer\'s IANA time zone, e.g. "Asia/Shanghai".'),
        FieldSpec("days_since_signup", "days", "customer", "Whole days since the customer was created, at evaluation time."),
        FieldSpec("has_email", "bool", "customer", "The customer has a non-empty email address."),
        FieldSpec("has_phone", "bool", "customer", "The customer has a non-empty phone number."),
        FieldSpec("has_wechat", "bool", "customer", "The customer has a non-empty WeChat OpenID."),
        FieldSpec("purchase_channel", "purchase_channel", "orders",
                  'A channel the customer bought through; only `==`, `in`, `not in`: '
                  '`purchase_channel in ["store"]` = at least one order through the store.'),
        FieldSpec("points_balance", "int", "loyalty", "Points the customer holds at evaluation time (0 without any)."),
        FieldSpec("tier", "str", "loyalty", 'Member tier from `[[loyalty.tiers]]` (e.g. "gold"); the lowest tier '
                  "for a customer the tier recompute has not placed yet."),
        FieldSpec("referrals_converted", "int", "loyalty", "The customer's referrals whose referee bought (rewarded, "
                  "not reversed): `referrals_converted >= 1` is the advocate segment."),
    )
}

#: The functions, with their call shape (for messages and docs).
FUNCTIONS: dict[str, str] = {
    "did": 'did("review", within="30d")',
    "count_of": 'count_of("review", within="30d")',
    "consent": 'consent("email")',
    "segment": 'segment("lapsed_vips")',
    "points_expiring": 'points_expiring(within="30d")',
    "points_earned": 'points_earned(within="90d")',
}

#: The fields and functions of the points programme: errors unless ``[loyalty] enabled``.
LOYALTY_NAMES = frozenset(("points_balance", "tier", "points_expiring", "points_earned", "referrals_converted"))


def expression_tiers(loyalty: Any) -> tuple[str, ...] | None:
    """The tier names expressions may compare ``tier`` with, from a ``[loyalty]`` section
    (:class:`~campaigns.config.loyalty.LoyaltyConfig`); None while the programme is off."""
    return tuple(tier.name for tier in loyalty.tiers) if loyalty.enabled else None


def tier_hint(value: str, tiers: Sequence[str]) -> str:
    """An error hint for an unknown tier name: the closest one, and always the whole list
    (lowest first, as ``[[loyalty.tiers]]`` ranks them)."""
    guess = suggest(value, tiers)
    listed = f"tiers: {', '.join(tiers) or 'none'}"
    return f"did you mean {guess!r}? {listed}" if guess else listed


def loyalty_off(name: str) -> tuple[str, str]:
    """The message and hint of an expression using ``name`` while the programme is off."""
    return (f"{name} needs the loyalty programme, which is off ([loyalty] enabled = false)",
            "set enabled = true under [loyalty] in config.toml")


def suggest(word: str, choices: Collection[str]) -> str | None:
    """The choice closest to a misspelt ``word``, if one is close enough."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return match[0] if match else None


def known_hint(word: str, choices: Collection[str], what: str = "known") -> str:
    """An error hint for an unknown ``word``: the closest choice, else all of them."""
    guess = suggest(word, choices)
    if guess:
        return f"did you mean {guess!r}?"
    return f"{what}: {', '.join(sorted(choices)) or 'none'}"


def line_texts(text: str) -> list[str]:
    """The lines of an expression, split as :mod:`ast` counts them."""
    return re.split(r"\r\n|\r|\n", text)


def char_column(lines: list[str], line: int, byte_offset: int) -> int:
    """1-based character column from ast's 0-based UTF-8 byte offset."""
    if 1 <= line <= len(lines):
        return len(lines[line - 1].encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore")) + 1
    return byte_offset + 1


def calls_segment(node: ast.AST) -> bool:
    """True when ``node`` is a ``segment("name")`` call with one string argument."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "segment"
            and len(node.args) == 1 and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str))
