"""Compiling an audience expression to one SQL condition over ``customer`` LEFT OUTER
JOIN ``customer_profile`` (see :mod:`campaigns.audience.language` for the language).

The compiler also type-checks: :func:`check_expression` compiles an expression against a
fixed date, without inlining segments, only for the errors it raises, so parsing
(:func:`campaigns.audience.parser.parse_expression`) and compiling refuse the same things.

The loyalty fields and functions compile to the scalar subqueries of
:mod:`campaigns.customers.loyalty.balances` over ``customer.id``, evaluated at ``now``.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from campaigns.audience.conditions import (
    SQL_OPERATORS,
    as_bigint,
    balanced,
    days_comparison,
    null_safe,
)
from campaigns.audience.language import (
    CONSENT_CHANNELS,
    FIELDS,
    FUNCTIONS,
    LOYALTY_NAMES,
    MAX_EXPANDED_NODES,
    MAX_SEGMENT_NESTING,
    Expression,
    ExpressionError,
    known_hint,
    line_texts,
    loyalty_off,
    suggest,
    tier_hint,
)
from campaigns.audience.literals import Literal, NodeReader
from campaigns.config.durations import MAX_DAYS, parse_duration
from campaigns.config.loyalty import LoyaltyConfig
from campaigns.config.vocabulary import STAGES
from campaigns.customers.loyalty.balances import balance_of, earned_of, expiring_of, tier_of
from campaigns.customers.loyalty.referrals import converted_referrals_of
from campaigns.store.jsonattr import typed_attribute
from campaigns.store.models import Consent, Customer, CustomerProfile, Event, Order

_CUSTOMER = Customer.__table__
_PROFILE = CustomerProfile.__table__

#: The customer column each has_* field looks at.
_ADDRESS = {"has_email": "email", "has_phone": "phone", "has_wechat": "wechat_openid"}

_FLIP = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE, ast.Eq: ast.Eq, ast.NotEq: ast.NotEq}
_OP_TEXT = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
            ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
_ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def compile_expression(
    expr: Expression,
    *,
    now: datetime,
    segments: Mapping[str, Expression],
    profile: sa.FromClause = _PROFILE,
    loyalty: LoyaltyConfig | None = None,
) -> sa.ColumnElement[bool]:
    """The SQL condition for ``expr`` at ``now``, over ``customer`` LEFT JOIN ``profile``.

    ``segments`` are the parsed named segments ``segment("...")`` inlines; an unknown name
    or a cycle raises :class:`ExpressionError`. The caller joins ``profile`` (the
    ``customer_profile`` table or an alias of it) on ``customer_id = customer.id``.
    ``loyalty`` is the ``[loyalty]`` section: without it, or with the programme off, the
    loyalty fields and functions are errors.
    """
    on = loyalty if loyalty is not None and loyalty.enabled else None
    return _Compiler(
        text=expr.text, lines=line_texts(expr.text), now=now, profile=profile, rfm_names=None,
        segment_names=frozenset(segments), segments=segments, stack=(), budget=[MAX_EXPANDED_NODES],
        loyalty=on, tiers=None if on is None else tuple(tier.name for tier in on.tiers),
    ).condition(expr.tree.body)


def check_expression(expr: Expression, *, rfm_names: Sequence[str], segment_names: Collection[str],
                     tiers: Sequence[str] | None = None) -> None:
    """Raise the :class:`ExpressionError` compiling ``expr`` would raise: unknown fields,
    functions, stages, RFM segments (``rfm_names``), tiers (``tiers``, None while the
    loyalty programme is off) or segments (``segment_names``, not inlined: each is
    checked on its own), and values of the wrong type."""
    _Compiler(
        text=expr.text, lines=line_texts(expr.text), now=datetime(2000, 1, 1, tzinfo=UTC), profile=_PROFILE,
        rfm_names=tuple(rfm_names), segment_names=frozenset(segment_names), segments=None, stack=(),
        loyalty=None, tiers=None if tiers is None else tuple(tiers),
    ).condition(expr.tree.body)


@dataclass(frozen=True)
class _Operand:
    """The non-literal side of a comparison."""

    kind: str  # str, int, number, bool, days, purchase_channel, attribute, count, predicate
    node: ast.expr
    name: str
    column: Any = None  # a SQL element (or, for predicates, the condition)


class _Compiler(NodeReader):
    def __init__(self, *, text: str, lines: list[str], now: datetime, profile: sa.FromClause,
                 rfm_names: tuple[str, ...] | None, segment_names: frozenset[str],
                 segments: Mapping[str, Expression] | None, stack: tuple[str, ...],
                 budget: list[int] | None = None, loyalty: LoyaltyConfig | None = None,
                 tiers: tuple[str, ...] | None = None) -> None:
        super().__init__(text=text, lines=lines)
        self.now = now
        #: The programme's config when compiling (None when checking only), and its tier
        #: names, lowest first (None: the programme is off, its names are errors).
        self.loyalty = loyalty
        self.tiers = tiers
        self.profile = profile
        self.rfm_names = rfm_names
        self.segment_names = segment_names
        self.segments = segments
        self.stack = stack
        #: Conditions left to compile, shared with inlined segments (a guard for
        #: expressions that bypassed validate_segments, which refuses them first).
        self.budget = budget if budget is not None else [MAX_EXPANDED_NODES]

    # -- conditions --------------------------------------------------------------------

    def condition(self, node: ast.expr) -> sa.ColumnElement[bool]:
        self.budget[0] -= 1
        if self.budget[0] < 0:
            raise self.error(node, f"expression is larger than {MAX_EXPANDED_NODES} conditions once "
                             "its segments are inlined")
        if isinstance(node, ast.BoolOp):
            parts = [self.condition(value) for value in node.values]
            return balanced(sa.and_ if isinstance(node.op, ast.And) else sa.or_, parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return sa.not_(self.condition(node.operand))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        literal = self.literal_or_none(node)
        if literal is not None:
            if isinstance(literal.value, bool):
                return sa.true() if literal.value else sa.false()
            raise self.error(node, f"the value {self.source_of(node)} alone is not a condition",
                             'compare a field with it, e.g. stage == "active"')
        if isinstance(node, (ast.List, ast.Tuple)):
            raise self.error(node, "a list alone is not a condition", 'use it after in, e.g. stage in ["new", "active"]')
        operand = self.operand(node)
        if operand.kind in ("bool", "predicate"):
            return operand.column
        if operand.kind == "attribute":
            column, key = operand.column.left, operand.column.right.value
            return null_safe(typed_attribute(column, key, "bool"), ast.Eq, True)
        if operand.kind == "count":
            raise self.error(node, f"{self.source_of(node)} is a number, not a condition",
                             f"compare it, e.g. {self.source_of(node)} >= 1")
        example = {"str": f'{operand.name} == "..."', "purchase_channel": 'purchase_channel in ["store"]'}
        raise self.error(node, f"field {operand.name!r} is not a condition",
                         f"compare it, e.g. {example.get(operand.kind, f'{operand.name} >= 1')}")

    def compare(self, node: ast.Compare) -> sa.ColumnElement[bool]:
        parts = []
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            parts.append(self.pair(node, left, op, right))
            left = right
        return parts[0] if len(parts) == 1 else sa.and_(*parts)

    def pair(self, node: ast.Compare, left: ast.expr, op: ast.cmpop, right: ast.expr) -> sa.ColumnElement[bool]:
        op_type = type(op)
        if op_type in (ast.Is, ast.IsNot):
            raise self.error(node, f"{_OP_TEXT[op_type]!r} is not supported", "use == or != instead")
        if op_type in (ast.In, ast.NotIn):
            operand = self.operand(left)
            values = self.literal_list(right)
            return self.membership(operand, values, negate=op_type is ast.NotIn, node=node)
        left_literal = self.literal_or_none(left)
        right_literal = self.literal_or_none(right)
        if left_literal is not None and right_literal is not None:
            raise self.error(left, "a comparison needs a field on one side",
                             f"{self.source_of(left)} and {self.source_of(right)} are both values")
        if left_literal is not None:
            operand, literal, op_type = self.operand(right), left_literal, _FLIP[op_type]
        elif right_literal is not None:
            operand, literal = self.operand(left), right_literal
        else:
            if isinstance(right, (ast.List, ast.Tuple)):
                raise self.error(right, f"a list can only follow in or not in, not {_OP_TEXT[op_type]}")
            self.operand(left)
            self.operand(right)
            raise self.error(right, "a field can only be compared with a literal value",
                             f"{self.source_of(left)} {_OP_TEXT[op_type]} {self.source_of(right)} compares two fields")
        return self.comparison(operand, op_type, literal)

    # -- operands ----------------------------------------------------------------------

    def operand(self, node: ast.expr) -> _Operand:
        if isinstance(node, ast.Name):
            return self.field(node)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "attributes":
                column = _CUSTOMER.c.attributes[node.attr]
                return _Operand("attribute", node, f"attributes.{node.attr}", column)
            raise self.error(node, f"attribute access is not allowed ({self.source_of(node)})",
                             "the only dotted names are attributes.NAME")
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, (ast.BoolOp, ast.Compare)) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
            return _Operand("predicate", node, self.source_of(node), self.condition(node))
        if isinstance(node, ast.UnaryOp):
            raise self.error(node, "arithmetic is not allowed in an audience expression")
        self.reject_if_disallowed(node)
        if isinstance(node, (ast.List, ast.Tuple)):
            raise self.error(node, "a list can only follow in or not in")
        raise self.error(node, f"{type(node).__name__} is not allowed in an audience expression")

    def field(self, node: ast.Name) -> _Operand:
        spec = FIELDS.get(node.id)
        if spec is None:
            if node.id == "attributes":
                raise self.error(node, "attributes needs a name", "e.g. attributes.vip == true")
            if node.id in FUNCTIONS:
                raise self.error(node, f"{node.id} is a function", f"call it, e.g. {FUNCTIONS[node.id]}")
            known = [*FIELDS, "attributes.NAME"]
            guess = suggest(node.id, [*FIELDS, *FUNCTIONS])
            hint = f"did you mean {guess!r}?" if guess else f"known: {', '.join(known)}"
            raise self.error(node, f"unknown field {node.id!r}", hint)
        if spec.source == "loyalty":
            return self.loyalty_field(node, spec.name)
        if spec.kind == "bool":
            column = _CUSTOMER.c[_ADDRESS[spec.name]]
            return _Operand("bool", node, spec.name, sa.and_(column.is_not(None), column != ""))
        if spec.kind == "days":
            moment = self.profile.c.last_order_at if spec.source == "profile" else _CUSTOMER.c.created_at
            return _Operand("days", node, spec.name, moment)
        if spec.kind == "purchase_channel":
            return _Operand("purchase_channel", node, spec.name, None)
        table = self.profile if spec.source == "profile" else _CUSTOMER
        return _Operand(spec.kind, node, spec.name, table.c[spec.name])

    def call(self, node: ast.Call) -> _Operand:
        if not isinstance(node.func, ast.Name):
            raise self.error(node, f"calling {self.source_of(node.func)} is not allowed",
                             f"functions: {', '.join(FUNCTIONS)}")
        name = node.func.id
        if name not in FUNCTIONS:
            guess = suggest(name, FUNCTIONS)
            hint = f"did you mean {guess!r}?" if guess else f"known: {', '.join(FUNCTIONS)}"
            raise self.error(node, f"unknown function {name!r}", hint)
        usage = f"usage: {FUNCTIONS[name]}"
        if name in ("points_expiring", "points_earned"):
            return self.points_call(node, name, usage)
        takes_within = name in ("did", "count_of")
        if len(node.args) != 1 or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.error(node, f"{name}() takes exactly one value", usage)
        allowed_keywords = {"within"} if takes_within else set()
        within: timedelta | None = None
        for keyword in node.keywords:
            if keyword.arg not in allowed_keywords:
                label = f"{keyword.arg}=" if keyword.arg else "**"
                raise self.error(keyword.value, f"{name}() has no argument {label}", usage)
            within = self.duration(keyword.value)
        argument = node.args[0]
        if not (isinstance(argument, ast.Constant) and isinstance(argument.value, str) and argument.value):
            raise self.error(argument, f"{name}() needs a non-empty string", usage)
        value: str = argument.value

        if name == "consent":
            if value not in CONSENT_CHANNELS:
                raise self.error(argument, f"unknown consent channel {value!r}",
                                 known_hint(value, CONSENT_CHANNELS))
            granted = sa.exists().where(Consent.customer_id == Customer.id, Consent.channel == value,
                                        Consent.status == "granted")
            return _Operand("predicate", node, self.source_of(node), granted)
        if name == "segment":
            return _Operand("predicate", node, self.source_of(node), self.segment(argument, value))
        if value == "order":
            time, filters = Order.ordered_at, [Order.customer_id == Customer.id]
        else:
            time, filters = Event.occurred_at, [Event.customer_id == Customer.id, Event.name == value]
        filters.append(time <= self.now)
        if within is not None:
            filters.append(time >= self.now - within)
        if name == "did":
            table = Order if value == "order" else Event
            return _Operand("predicate", node, self.source_of(node), sa.exists().select_from(table).where(*filters))
        counted = sa.select(sa.func.count()).select_from(Order if value == "order" else Event).where(*filters)
        return _Operand("count", node, self.source_of(node), counted.scalar_subquery())

    def require_loyalty(self, node: ast.expr, name: str) -> None:
        """Refuse a loyalty field or function while the programme is off."""
        if self.tiers is None and name in LOYALTY_NAMES:
            message, hint = loyalty_off(name)
            raise self.error(node, message, hint)

    def loyalty_field(self, node: ast.Name, name: str) -> _Operand:
        """``points_balance`` and ``referrals_converted`` (numbers, never missing) or ``tier``
        (text, never missing: the lowest tier for a customer with no ``loyalty_member`` row)."""
        self.require_loyalty(node, name)
        customer = _CUSTOMER.c.id
        if name == "points_balance":
            return _Operand("count", node, name, balance_of(customer, now=self.now))
        if name == "referrals_converted":
            return _Operand("count", node, name, converted_referrals_of(customer))
        # Checking only (no config at hand): the column is never executed.
        column = (tier_of(customer, self.loyalty) if self.loyalty is not None
                  else sa.literal(self.tiers[0] if self.tiers else ""))
        return _Operand("str", node, name, column)

    def points_call(self, node: ast.Call, name: str, usage: str) -> _Operand:
        """``points_expiring(within=...)`` (points expiring in ``(now, now + within]``) or
        ``points_earned(within=...)`` (earned in ``(now - within, now]``, ever without
        ``within``): numbers, 0 when there are none."""
        self.require_loyalty(node, name)
        if node.args:
            raise self.error(node.args[0], f"{name}() takes no positional value, only within=", usage)
        within: timedelta | None = None
        for keyword in node.keywords:
            if keyword.arg != "within":
                label = f"{keyword.arg}=" if keyword.arg else "**"
                raise self.error(keyword.value, f"{name}() has no argument {label}", usage)
            within = self.duration(keyword.value)
        customer = _CUSTOMER.c.id
        if name == "points_expiring":
            if within is None:
                raise self.error(node, "points_expiring() needs within=, how far ahead to look", usage)
            column = expiring_of(customer, now=self.now, within=within)
        else:
            column = earned_of(customer, now=self.now, within=within)
        return _Operand("count", node, self.source_of(node), column)

    def duration(self, node: ast.expr) -> timedelta:
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            raise self.error(node, 'within must be a duration string such as "30d" or "12h"')
        try:
            value = parse_duration(node.value)
        except ValueError as exc:
            raise self.error(node, str(exc)) from None
        if value <= timedelta(0):
            raise self.error(node, "within must be longer than zero")
        return value

    def segment(self, node: ast.expr, name: str) -> sa.ColumnElement[bool]:
        if name not in self.segment_names:
            raise self.error(node, f"unknown segment {name!r}", known_hint(name, self.segment_names, "defined"))
        if self.segments is None:  # validating only: the segment is checked on its own
            return sa.true()
        if name in self.stack:
            chain = " -> ".join([*self.stack[self.stack.index(name):], name])
            raise self.error(node, f"segment {name!r} refers to itself ({chain})")
        if len(self.stack) >= MAX_SEGMENT_NESTING:
            raise self.error(node, f"segments use segments more than {MAX_SEGMENT_NESTING} levels deep")
        inner = self.segments[name]
        compiler = _Compiler(
            text=inner.text, lines=line_texts(inner.text), now=self.now, profile=self.profile, rfm_names=None,
            segment_names=self.segment_names, segments=self.segments, stack=(*self.stack, name),
            budget=self.budget, loyalty=self.loyalty, tiers=self.tiers,
        )
        try:
            return compiler.condition(inner.tree.body)
        except ExpressionError as exc:
            if exc.message.startswith("segment ") or exc.message.startswith(f"in segment {name!r}: "):
                raise
            raise ExpressionError(f"in segment {name!r}: {exc.message}", exc.column, line=exc.line,
                                  hint=exc.hint) from None

    # -- comparisons -------------------------------------------------------------------

    def check_value(self, operand: _Operand, literal: Literal) -> None:
        value = literal.value
        kind = operand.kind
        if kind in ("str", "purchase_channel"):
            if not isinstance(value, str):
                raise self.error(literal.node, f"{operand.name} is text: compare it with a string, "
                                 f"not {self.source_of(literal.node)}")
            if operand.name == "stage" and value not in STAGES:
                raise self.error(literal.node, f"unknown stage {value!r}", known_hint(value, STAGES))
            if operand.name == "rfm_segment" and self.rfm_names is not None and value not in self.rfm_names:
                raise self.error(literal.node, f"unknown RFM segment {value!r}", known_hint(value, self.rfm_names))
            if operand.name == "tier" and self.tiers is not None and value not in self.tiers:
                raise self.error(literal.node, f"unknown tier {value!r}", tier_hint(value, self.tiers))
        elif kind in ("int", "number", "days", "count"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.error(literal.node, f"{operand.name} is a number: compare it with a number, "
                                 f"not {self.source_of(literal.node)}")
            if kind == "days" and abs(value) > MAX_DAYS:
                raise self.error(literal.node, f"{operand.name} counts days: compare it with at most "
                                 f"{MAX_DAYS} (100 years), not {self.source_of(literal.node)}")
        elif kind in ("bool", "predicate"):
            if not isinstance(value, bool):
                raise self.error(literal.node, f"{operand.name} is true or false: compare it with true or false, "
                                 f"not {self.source_of(literal.node)}")

    def comparison(self, operand: _Operand, op_type: type, literal: Literal) -> sa.ColumnElement[bool]:
        self.check_value(operand, literal)
        kind, value = operand.kind, literal.value
        op_text = _OP_TEXT[op_type]
        if kind in ("bool", "predicate"):
            if op_type not in (ast.Eq, ast.NotEq):
                raise self.error(operand.node, f"{operand.name} is true or false: use == or !=, not {op_text}")
            return operand.column if (op_type is ast.Eq) == value else sa.not_(operand.column)
        if kind == "purchase_channel":
            if op_type is not ast.Eq:
                raise self.error(operand.node, f"purchase_channel supports ==, in and not in, not {op_text}",
                                 'e.g. purchase_channel not in ["store"]' if op_type is ast.NotEq else None)
            return self.membership(operand, [literal], negate=False, node=operand.node)
        if kind == "str" and op_type in _ORDERING:
            raise self.error(operand.node, f"{operand.name} is text: use ==, !=, in or not in, not {op_text}",
                             self.tier_range_hint(op_type, value) if operand.name == "tier" else None)
        if kind == "days":
            return days_comparison(op_type, value, operand.column, now=self.now)
        if kind == "count":  # a COUNT is never NULL
            return SQL_OPERATORS[op_type](operand.column, as_bigint(value))
        column = operand.column
        if kind == "attribute":
            column = self.attribute_element(column, [literal])
            if isinstance(value, (bool, str)) and op_type in _ORDERING:
                raise self.error(operand.node, f"{op_text} needs a number, not {self.source_of(literal.node)}")
        return null_safe(column, op_type, as_bigint(value))

    def tier_range_hint(self, op_type: type, value: Any) -> str | None:
        """For ``tier >= "silver"``: the ``in`` list that means it (tiers are ranked
        lowest first in ``[[loyalty.tiers]]``)."""
        if not self.tiers or value not in self.tiers:
            return None
        rank = self.tiers.index(value)
        chosen = {ast.GtE: self.tiers[rank:], ast.Gt: self.tiers[rank + 1:],
                  ast.LtE: self.tiers[:rank + 1], ast.Lt: self.tiers[:rank]}[op_type]
        listed = ", ".join(f'"{name}"' for name in chosen)
        return f"list the tiers you mean: tier in [{listed}]"

    def attribute_element(self, element: Any, literals: list[Literal]) -> Any:
        values = [literal.value for literal in literals]
        column, key = element.left, element.right.value  # attributes[key], built in operand()
        if all(isinstance(v, bool) for v in values):
            return typed_attribute(column, key, "bool")
        if all(isinstance(v, str) for v in values):
            return typed_attribute(column, key, "str")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return typed_attribute(column, key, "int")
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return typed_attribute(column, key, "float")
        raise self.error(literals[0].node, "a list compared with an attribute must hold values of one type")

    def membership(self, operand: _Operand, literals: list[Literal], *, negate: bool,
                   node: ast.expr) -> sa.ColumnElement[bool]:
        kind = operand.kind
        if kind in ("bool", "predicate"):
            raise self.error(operand.node, f"{operand.name} is true or false: use == or !=, not in")
        for literal in literals:
            self.check_value(operand, literal)
        values = [literal.value for literal in literals]
        if kind == "purchase_channel":
            bought = sa.exists().where(Order.customer_id == Customer.id, Order.channel.in_(values)) if values else sa.false()
            return sa.not_(bought) if negate else bought
        if kind == "days":
            matched = sa.or_(*(days_comparison(ast.Eq, v, operand.column, now=self.now) for v in values)) if values else sa.false()
            present = operand.column.is_not(None)
            return sa.or_(~present, sa.not_(matched)) if negate else sa.and_(present, matched)
        column = operand.column
        if kind == "attribute":
            if not values:
                return sa.true() if negate else sa.false()
            column = self.attribute_element(column, literals)
        if not values:
            return sa.true() if negate else sa.false()
        bound = [as_bigint(value) for value in values]
        if kind == "count":
            return column.not_in(bound) if negate else column.in_(bound)
        if negate:
            return sa.or_(column.is_(None), column.not_in(bound))
        return sa.and_(column.is_not(None), column.in_(bound))
