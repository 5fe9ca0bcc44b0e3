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

Missing values follow Python, not SQL: every comparison is either true or false, a
missing value equals nothing (``==``, ``<``, ``in`` are false; ``!=`` and ``not in`` are
true), so ``not (x == 1)`` always selects the same customers as ``x != 1``.
"""

from __future__ import annotations

import ast
import difflib
import io
import math
import re
import tokenize
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BooleanClauseList, ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from campaigns.store.jsonattr import typed_attribute
from campaigns.config.schema import DEFAULT_RFM_RULES, STAGES
from campaigns.config.durations import MAX_DAYS, parse_duration
from campaigns.errors import NurtureError
from campaigns.config.jsonvalues import MAX_INTEGER, MIN_INTEGER
from campaigns.store.models import Consent, Customer, CustomerProfile, Event, Order

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

_STAGES = STAGES

#: Consent channel families ``consent()`` accepts.
CONSENT_CHANNELS = ("email", "sms", "wechat")


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
    """A parsed and validated audience expression (build it with :func:`parse_expression`).

    ``tree``'s line numbers count from the first line of ``text``.
    """

    text: str
    tree: ast.Expression


# --------------------------------------------------------------------------------------
# Fields and functions


@dataclass(frozen=True)
class FieldSpec:
    """One field of the language: its value type and where it comes from."""

    name: str
    #: str, int, number, bool, days (days_since_signup), purchase_channel.
    kind: str
    source: str
    doc: str


_CUSTOMER = Customer.__table__
_PROFILE = CustomerProfile.__table__

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
    )
}

#: The functions, with their call shape (for messages and docs).
FUNCTIONS: dict[str, str] = {
    "did": 'did("review", within="30d")',
    "count_of": 'count_of("review", within="30d")',
    "consent": 'consent("email")',
    "segment": 'segment("lapsed_vips")',
}

_ADDRESS = {"has_email": "email", "has_phone": "phone", "has_wechat": "wechat_openid"}

_DISALLOWED = {
    "BinOp": "arithmetic is",
    "Subscript": "subscripts ([...]) are",
    "Lambda": "lambda is",
    "IfExp": "if/else is",
    "Dict": "dicts are",
    "Set": "sets are",
    "ListComp": "comprehensions are",
    "SetComp": "comprehensions are",
    "DictComp": "comprehensions are",
    "GeneratorExp": "comprehensions are",
    "JoinedStr": "f-strings are",
    "NamedExpr": "':=' is",
    "Starred": "'*' is",
    "Await": "await is",
    "Yield": "yield is",
    "YieldFrom": "yield is",
    "Slice": "slices are",
}

_FLIP = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE, ast.Eq: ast.Eq, ast.NotEq: ast.NotEq}
_OP_TEXT = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
            ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
_SQL_OP: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
}
_ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _suggest(word: str, choices: Collection[str]) -> str | None:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return match[0] if match else None


def _known_hint(word: str, choices: Collection[str], what: str = "known") -> str:
    guess = _suggest(word, choices)
    if guess:
        return f"did you mean {guess!r}?"
    return f"{what}: {', '.join(sorted(choices)) or 'none'}"


# --------------------------------------------------------------------------------------
# Parsing


def _line_texts(text: str) -> list[str]:
    return re.split(r"\r\n|\r|\n", text)


def _char_column(lines: list[str], line: int, byte_offset: int) -> int:
    """1-based character column from ast's 0-based UTF-8 byte offset."""
    if 1 <= line <= len(lines):
        return len(lines[line - 1].encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore")) + 1
    return byte_offset + 1


def parse_expression(
    text: str, *, rfm_names: Sequence[str], segment_names: Collection[str] = ()
) -> Expression:
    """Parse and validate ``text``; :class:`ExpressionError` says what and where if invalid.

    ``rfm_names`` are the configured RFM segment names (values ``rfm_segment`` may take),
    ``segment_names`` the named segments ``segment("...")`` may refer to.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"an audience expression must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ExpressionError("empty audience expression", hint='write a condition such as stage == "active"')
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"audience expression is longer than {MAX_LENGTH} characters")
    lines = _line_texts(text)
    # Parenthesised, so an expression may span several lines (TOML multi-line strings).
    source = "(\n" + text + "\n)"
    _check_brackets(source)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        line = (exc.lineno or 1) - 1
        if line < 1 or line > len(lines):
            line, column = len(lines), len(lines[-1]) + 1
        else:
            column = max(exc.offset or 1, 1)
        message = re.sub(r" \(detected at line \d+\)", "", exc.msg)
        hint = None
        if re.search(r"\b(AND|OR|NOT)\b|&&|\|\||!(?!=)", text):
            hint = "write and, or, not in lower case"
        raise ExpressionError(f"syntax error: {message}", column, line=line, hint=hint) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ExpressionError(f"cannot parse the expression: {exc or 'too deeply nested'}") from None
    ast.increment_lineno(tree, -1)
    _check_depth(tree.body, lines)
    expression = Expression(text=text, tree=tree)
    _Compiler(
        text=text, lines=lines, now=datetime(2000, 1, 1, tzinfo=UTC), profile=_PROFILE,
        rfm_names=tuple(rfm_names), segment_names=frozenset(segment_names), segments=None, stack=(),
    ).condition(tree.body)
    return expression


def _check_brackets(source: str) -> None:
    """Bracket errors, located in the user's text rather than in the wrapping parentheses.

    Without this, ``a) or (b`` would parse (the wrapper closes around it) and ``(a`` would
    be reported at the end of the text.
    """
    last_line = source.count("\n") + 1
    stack: list[tokenize.TokenInfo] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type != tokenize.OP:
                continue
            if token.string in "([{":
                stack.append(token)
            elif token.string in ")]}":
                if token.start == (last_line, 0):  # the wrapper's closing parenthesis
                    if len(stack) > 1:
                        opened = stack[-1]
                        raise ExpressionError(f"syntax error: {opened.string!r} was never closed",
                                              opened.start[1] + 1, line=opened.start[0] - 1)
                    return
                if stack:
                    stack.pop()
                if not stack:
                    raise ExpressionError(f"syntax error: unmatched {token.string!r}",
                                          token.start[1] + 1, line=token.start[0] - 1)
    except (tokenize.TokenError, SyntaxError):
        return  # unterminated strings and the like: ast.parse reports them


def _check_depth(root: ast.AST, lines: list[str]) -> None:
    pending = [(root, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_DEPTH:
            line = getattr(node, "lineno", 1)
            raise ExpressionError(f"expression nested more than {MAX_DEPTH} levels deep",
                                  _char_column(lines, line, getattr(node, "col_offset", 0)), line=line)
        pending.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def segment_references(expr: Expression) -> set[str]:
    """Names of the segments ``expr`` calls with ``segment("...")`` directly."""
    found = set()
    for node in ast.walk(expr.tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "segment"
                and len(node.args) == 1 and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return found


# --------------------------------------------------------------------------------------
# Compiling


def compile_expression(
    expr: Expression,
    *,
    now: datetime,
    segments: Mapping[str, Expression],
    profile: sa.FromClause = _PROFILE,
) -> sa.ColumnElement[bool]:
    """The SQL condition for ``expr`` at ``now``, over ``customer`` LEFT JOIN ``profile``.

    ``segments`` are the parsed named segments ``segment("...")`` inlines; an unknown name
    or a cycle raises :class:`ExpressionError`. The caller joins ``profile`` (the
    ``customer_profile`` table or an alias of it) on ``customer_id = customer.id``.
    """
    return _Compiler(
        text=expr.text, lines=_line_texts(expr.text), now=now, profile=profile, rfm_names=None,
        segment_names=frozenset(segments), segments=segments, stack=(), budget=[MAX_EXPANDED_NODES],
    ).condition(expr.tree.body)


def _number(value: Any) -> Any:
    """An integer as a BIGINT parameter: bound as the compared column's type, PostgreSQL
    cast it to INTEGER and aborted the audience query on anything beyond 2**31
    (``orders_count >= 3000000000``, which check accepts)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return sa.literal(value, sa.BigInteger())
    return value


@dataclass(frozen=True)
class _Literal:
    value: str | int | float | bool
    node: ast.expr


@dataclass(frozen=True)
class _Operand:
    """The non-literal side of a comparison."""

    kind: str  # str, int, number, bool, days, purchase_channel, attribute, count, predicate
    node: ast.expr
    name: str
    column: Any = None  # a SQL element (or, for predicates, the condition)


class _Compiler:
    def __init__(self, *, text: str, lines: list[str], now: datetime, profile: sa.FromClause,
                 rfm_names: tuple[str, ...] | None, segment_names: frozenset[str],
                 segments: Mapping[str, Expression] | None, stack: tuple[str, ...],
                 budget: list[int] | None = None) -> None:
        self.text = text
        self.lines = lines
        self.now = now
        self.profile = profile
        self.rfm_names = rfm_names
        self.segment_names = segment_names
        self.segments = segments
        self.stack = stack
        #: Conditions left to compile, shared with inlined segments (a guard for
        #: expressions that bypassed validate_segments, which refuses them first).
        self.budget = budget if budget is not None else [MAX_EXPANDED_NODES]

    # -- errors ------------------------------------------------------------------------

    def error(self, node: ast.AST | None, message: str, hint: str | None = None) -> ExpressionError:
        if node is None or not hasattr(node, "lineno"):
            return ExpressionError(message, hint=hint)
        line = node.lineno
        return ExpressionError(message, _char_column(self.lines, line, node.col_offset), line=line, hint=hint)

    def source_of(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text, node) or ast.unparse(node)

    # -- conditions --------------------------------------------------------------------

    def condition(self, node: ast.expr) -> sa.ColumnElement[bool]:
        self.budget[0] -= 1
        if self.budget[0] < 0:
            raise self.error(node, f"expression is larger than {MAX_EXPANDED_NODES} conditions once "
                             "its segments are inlined")
        if isinstance(node, ast.BoolOp):
            parts = [self.condition(value) for value in node.values]
            return _balanced(sa.and_ if isinstance(node.op, ast.And) else sa.or_, parts)
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
            return self.null_safe(typed_attribute(column, key, "bool"), ast.Eq, True)
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

    def literal_or_none(self, node: ast.expr) -> _Literal | None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (str, int, float)) and not isinstance(node.value, complex):
                if isinstance(node.value, float) and not math.isfinite(node.value):
                    raise self.error(node, "numbers must be finite")
                return self.in_range(_Literal(node.value, node))
            raise self.error(node, f"{type(node.value).__name__} literals are not allowed",
                             "use strings, numbers, true or false")
        if isinstance(node, ast.Name) and node.id in ("true", "false", "True", "False"):
            return _Literal(node.id in ("true", "True"), node)
        if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
                and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)):
            value = node.operand.value
            return self.in_range(_Literal(-value if isinstance(node.op, ast.USub) else value, node))
        return None

    def in_range(self, literal: _Literal) -> _Literal:
        value = literal.value
        if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
            raise self.error(literal.node, "integer out of range: numbers must lie between "
                             "-9223372036854775808 and 9223372036854775807")
        return literal

    def literal_list(self, node: ast.expr) -> list[_Literal]:
        if not isinstance(node, (ast.List, ast.Tuple)):
            raise self.error(node, "in and not in need a list of values on the right",
                             'e.g. stage in ["new", "active"]')
        values = []
        for element in node.elts:
            literal = self.literal_or_none(element)
            if literal is None:
                self.reject_if_disallowed(element)
                raise self.error(element, "a list may only hold literal values (strings, numbers, true, false)")
            values.append(literal)
        return values

    def reject_if_disallowed(self, node: ast.AST) -> None:
        name = type(node).__name__
        if name in _DISALLOWED:
            raise self.error(node, f"{_DISALLOWED[name]} not allowed in an audience expression")

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
            guess = _suggest(node.id, [*FIELDS, *FUNCTIONS])
            hint = f"did you mean {guess!r}?" if guess else f"known: {', '.join(known)}"
            raise self.error(node, f"unknown field {node.id!r}", hint)
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
            guess = _suggest(name, FUNCTIONS)
            hint = f"did you mean {guess!r}?" if guess else f"known: {', '.join(FUNCTIONS)}"
            raise self.error(node, f"unknown function {name!r}", hint)
        usage = f"usage: {FUNCTIONS[name]}"
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
                                 _known_hint(value, CONSENT_CHANNELS))
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
            raise self.error(node, f"unknown segment {name!r}", _known_hint(name, self.segment_names, "defined"))
        if self.segments is None:  # validating only: the segment is checked on its own
            return sa.true()
        if name in self.stack:
            chain = " -> ".join([*self.stack[self.stack.index(name):], name])
            raise self.error(node, f"segment {name!r} refers to itself ({chain})")
        if len(self.stack) >= MAX_SEGMENT_NESTING:
            raise self.error(node, f"segments use segments more than {MAX_SEGMENT_NESTING} levels deep")
        inner = self.segments[name]
        compiler = _Compiler(
            text=inner.text, lines=_line_texts(inner.text), now=self.now, profile=self.profile, rfm_names=None,
            segment_names=self.segment_names, segments=self.segments, stack=(*self.stack, name),
            budget=self.budget,
        )
        try:
            return compiler.condition(inner.tree.body)
        except ExpressionError as exc:
            if exc.message.startswith("segment ") or exc.message.startswith(f"in segment {name!r}: "):
                raise
            raise ExpressionError(f"in segment {name!r}: {exc.message}", exc.column, line=exc.line,
                                  hint=exc.hint) from None

    # -- comparisons -------------------------------------------------------------------

    def check_value(self, operand: _Operand, literal: _Literal) -> None:
        value = literal.value
        kind = operand.kind
        if kind in ("str", "purchase_channel"):
            if not isinstance(value, str):
                raise self.error(literal.node, f"{operand.name} is text: compare it with a string, "
                                 f"not {self.source_of(literal.node)}")
            if operand.name == "stage" and value not in _STAGES:
                raise self.error(literal.node, f"unknown stage {value!r}", _known_hint(value, _STAGES))
            if operand.name == "rfm_segment" and self.rfm_names is not None and value not in self.rfm_names:
                raise self.error(literal.node, f"unknown RFM segment {value!r}", _known_hint(value, self.rfm_names))
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

    def comparison(self, operand: _Operand, op_type: type, literal: _Literal) -> sa.ColumnElement[bool]:
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
            raise self.error(operand.node, f"{operand.name} is text: use ==, !=, in or not in, not {op_text}")
        if kind == "days":
            return self.days_comparison(op_type, value, operand.column)
        if kind == "count":  # a COUNT is never NULL
            return _SQL_OP[op_type](operand.column, _number(value))
        column = operand.column
        if kind == "attribute":
            column = self.attribute_element(column, [literal])
            if isinstance(value, (bool, str)) and op_type in _ORDERING:
                raise self.error(operand.node, f"{op_text} needs a number, not {self.source_of(literal.node)}")
        return self.null_safe(column, op_type, _number(value))

    def null_safe(self, column: Any, op_type: type, value: Any) -> sa.ColumnElement[bool]:
        """``column op value`` that is false (or, for !=, true) when ``column`` is NULL."""
        compared = _SQL_OP[op_type](column, value)
        if op_type is ast.NotEq:
            return sa.or_(column.is_(None), compared)
        return sa.and_(column.is_not(None), compared)

    def attribute_element(self, element: Any, literals: list[_Literal]) -> Any:
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

    def membership(self, operand: _Operand, literals: list[_Literal], *, negate: bool,
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
            matched = sa.or_(*(self.days_comparison(ast.Eq, v, operand.column) for v in values)) if values else sa.false()
            present = operand.column.is_not(None)
            return sa.or_(~present, sa.not_(matched)) if negate else sa.and_(present, matched)
        column = operand.column
        if kind == "attribute":
            if not values:
                return sa.true() if negate else sa.false()
            column = self.attribute_element(column, literals)
        if not values:
            return sa.true() if negate else sa.false()
        bound = [_number(value) for value in values]
        if kind == "count":
            return column.not_in(bound) if negate else column.in_(bound)
        if negate:
            return sa.or_(column.is_(None), column.not_in(bound))
        return sa.and_(column.is_not(None), column.in_(bound))

    def days_comparison(self, op_type: type, value: float, moment: Any) -> sa.ColumnElement[bool]:
        """``days since moment op value`` as a range on the ``moment`` column (days are
        floored), so no date arithmetic happens in SQL and both dialects agree. A missing
        moment (no order yet) compares false, except for ``!=``."""
        present = moment.is_not(None)
        if op_type is ast.NotEq:
            return sa.or_(~present, self._days_range(ast.NotEq, value, moment))
        return sa.and_(present, self._days_range(op_type, value, moment))

    def _days_range(self, op_type: type, value: float, created: Any) -> sa.ColumnElement[bool]:
        def at_least(days: int) -> sa.ColumnElement[bool]:  # floor(age) >= days
            return created <= self.now - timedelta(days=days)

        if op_type is ast.GtE:
            return at_least(math.ceil(value))
        if op_type is ast.Gt:
            return at_least(math.floor(value) + 1)
        if op_type is ast.LtE:
            return sa.not_(at_least(math.floor(value) + 1))
        if op_type is ast.Lt:
            return sa.not_(at_least(math.ceil(value)))
        if value != int(value):
            equal: sa.ColumnElement[bool] = sa.false()
        else:
            equal = sa.and_(at_least(int(value)), sa.not_(at_least(int(value) + 1)))
        return sa.not_(equal) if op_type is ast.NotEq else equal


# --------------------------------------------------------------------------------------
# Configuration helpers


def segment_expressions(config: Any) -> dict[str, Expression]:
    """The parsed ``[segments]`` of an :class:`~campaigns.config.schema.AppConfig`."""
    names = list(config.segments)
    return {
        name: parse_expression(text, rfm_names=config.rfm.names, segment_names=names)
        for name, text in config.segments.items()
    }


def _raw_rfm_names(raw: Mapping[str, Any]) -> list[str]:
    rfm = raw.get("rfm")
    if isinstance(rfm, Mapping) and isinstance(rfm.get("segments"), list):
        return [rule["name"] for rule in rfm["segments"]
                if isinstance(rule, Mapping) and isinstance(rule.get("name"), str)]
    return [rule.name for rule in DEFAULT_RFM_RULES]


def _as_raw(config: Any) -> Mapping[str, Any]:
    if isinstance(config, Mapping):
        return config
    return {
        "rfm": {"segments": [{"name": name} for name in config.rfm.names]},
        "segments": dict(config.segments),
        "campaigns": [
            {
                "audience": {"where": c.audience.where, "segment": c.audience.segment},
                "trigger": {"segment_entered": getattr(c.trigger, "segment_entered", None)},
            }
            for c in config.campaigns
        ],
    }


def validate_segments(config: Any) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Problems with audience expressions as ``(key_path, message)``, like ``_reference_issues``.

    ``config`` is the raw TOML dict (garbage types are skipped: the schema reports them)
    or an ``AppConfig``. Checks every ``[segments]`` entry (and cycles among them), each
    campaign's ``audience.where`` and ``audience.segment``, and ``trigger.segment_entered``.
    """
    raw = _as_raw(config)
    rfm_names = _raw_rfm_names(raw)
    segments = raw.get("segments") if isinstance(raw.get("segments"), Mapping) else {}
    names = [name for name in segments if isinstance(name, str)]
    parsed: dict[str, Expression] = {}
    for name in names:
        text = segments[name]
        if not isinstance(text, str):
            continue
        try:
            parsed[name] = parse_expression(text, rfm_names=rfm_names, segment_names=names)
        except ExpressionError as exc:
            yield ("segments", name), str(exc)
    yield from _cycle_issues(parsed)
    memo: dict[str, tuple[int, int, int]] = {}
    for name, expr in parsed.items():
        problem = _expansion_problem(expr, parsed, memo)
        if problem:
            yield ("segments", name), problem

    campaigns = raw.get("campaigns") if isinstance(raw.get("campaigns"), list) else []
    for index, campaign in enumerate(campaigns):
        if not isinstance(campaign, Mapping):
            continue
        audience = campaign.get("audience")
        if isinstance(audience, Mapping):
            where = audience.get("where")
            if isinstance(where, str):
                try:
                    expr = parse_expression(where, rfm_names=rfm_names, segment_names=names)
                except ExpressionError as exc:
                    yield ("campaigns", index, "audience", "where"), str(exc)
                else:
                    problem = _expansion_problem(expr, parsed, memo)
                    if problem:
                        yield ("campaigns", index, "audience", "where"), problem
            segment = audience.get("segment")
            if isinstance(segment, str) and segment not in names:
                yield (("campaigns", index, "audience", "segment"),
                       f"unknown segment {segment!r} ({_known_hint(segment, names, 'defined in [segments]')})")
        steps = campaign.get("steps") if isinstance(campaign.get("steps"), list) else []
        for step_index, step in enumerate(steps):
            when = step.get("when") if isinstance(step, Mapping) else None
            if isinstance(when, str):
                try:
                    expr = parse_expression(when, rfm_names=rfm_names, segment_names=names)
                except ExpressionError as exc:
                    yield ("campaigns", index, "steps", step_index, "when"), str(exc)
                else:
                    problem = _expansion_problem(expr, parsed, memo)
                    if problem:
                        yield ("campaigns", index, "steps", step_index, "when"), problem
        trigger = campaign.get("trigger")
        if isinstance(trigger, Mapping):
            entered = trigger.get("segment_entered")
            if isinstance(entered, str) and entered not in rfm_names:
                yield (("campaigns", index, "trigger", "segment_entered"),
                       f"unknown RFM segment {entered!r} ({_known_hint(entered, rfm_names)})")


def _expansion_problem(expr: Expression, parsed: Mapping[str, Expression],
                       memo: dict[str, tuple[int, int, int]]) -> str | None:
    """Why ``expr`` is too big or too deep once its ``segment("...")`` calls are inlined
    as :func:`compile_expression` inlines them (None if it is not)."""
    size, depth, nesting = _expansion(expr, parsed, memo, set())
    if nesting > MAX_SEGMENT_NESTING:
        return (f"segments use segments more than {MAX_SEGMENT_NESTING} levels deep here "
                "(segment(\"a\") using segment(\"b\") using ...)")
    if size > MAX_EXPANDED_NODES:
        return (f"expression is too large once the segments it uses are inlined ({size} syntax nodes, "
                f"more than {MAX_EXPANDED_NODES}): segments that use other segments several times "
                "grow exponentially; write the condition once")
    if depth > MAX_DEPTH:
        return (f"expression is nested {depth} levels deep once the segments it uses are inlined "
                f"(more than {MAX_DEPTH})")
    return None


def _expansion(expr: Expression, parsed: Mapping[str, Expression], memo: dict[str, tuple[int, int, int]],
               visiting: set[str]) -> tuple[int, int, int]:
    """(syntax nodes, depth, segment nesting) of ``expr`` with every segment it calls
    inlined; memoised per segment, so the work is linear even when the inlined size is
    exponential. Calls that close a cycle count as themselves (cycles are reported
    separately); the search stops below MAX_SEGMENT_NESTING."""
    size = depth = nesting = 0
    pending: list[tuple[ast.AST, int]] = [(expr.tree.body, 1)]
    while pending:
        node, level = pending.pop()
        size += 1
        depth = max(depth, level)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "segment"
                and len(node.args) == 1 and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in parsed and node.args[0].value not in visiting):
            name = node.args[0].value
            if name not in memo:
                if len(visiting) > MAX_SEGMENT_NESTING:
                    return size, depth, len(visiting) + 1  # too deep already: no need to look further
                visiting.add(name)
                memo[name] = _expansion(parsed[name], parsed, memo, visiting)
                visiting.discard(name)
            inner_size, inner_depth, inner_nesting = memo[name]
            size += inner_size
            depth = max(depth, level + inner_depth - 1)
            nesting = max(nesting, inner_nesting + 1)
            continue
        pending.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return size, depth, nesting


def _cycle_issues(parsed: Mapping[str, Expression]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    graph = {name: sorted(segment_references(expr) & set(parsed)) for name, expr in parsed.items()}
    reported: set[str] = set()
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(name: str, path: list[str]) -> Iterator[tuple[tuple[str | int, ...], str]]:
        state[name] = 1
        for child in graph[name]:
            if state.get(child) == 1:
                cycle = path[path.index(child):] + [child]
                if child not in reported:
                    reported.add(child)
                    yield ("segments", child), f"segment {child!r} refers to itself ({' -> '.join(cycle)})"
            elif child not in state:
                yield from visit(child, [*path, child])
        state[name] = 2

    for name in graph:
        if name not in state:
            yield from visit(name, [name])


class _Parenthesized(ColumnElement[bool]):
    """A condition in parentheses that SQLAlchemy keeps as written: ``or_``/``and_``
    flatten nested lists of their own operator (and drop a ``Grouping`` around them),
    which would undo :func:`_balanced`."""

    __visit_name__ = "nurture_parenthesized"
    inherit_cache = True
    _traverse_internals = [("inner", InternalTraversal.dp_clauseelement)]
    type = sa.Boolean()

    def __init__(self, inner: ColumnElement[bool]) -> None:
        self.inner = inner


@compiles(_Parenthesized)
def _compile_parenthesized(element: _Parenthesized, compiler: SQLCompiler, **kw: Any) -> str:
    return "(" + compiler.process(element.inner, **kw) + ")"


def _balanced(combine: Callable[..., ColumnElement[bool]], parts: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    """``combine`` (``sa.and_`` or ``sa.or_``) of ``parts`` as a balanced tree of
    parenthesised halves, its nested lists kept apart.

    SQLite parses a flat ``a OR b OR c ...`` into a tree as deep as the chain is long and
    refuses one deeper than 1,000 (SQLITE_MAX_EXPR_DEPTH). Segments that use a segment
    twice reach that once inlined (ten levels: 1,024 conditions), and SQLAlchemy would
    flatten them into one chain; balanced, the depth grows with the logarithm instead.
    """
    kept = [_Parenthesized(part) if isinstance(part, BooleanClauseList) else part for part in parts]
    if len(kept) <= 2:
        return combine(*kept)
    middle = len(kept) // 2
    return combine(_Parenthesized(_balanced(combine, kept[:middle])),
                   _Parenthesized(_balanced(combine, kept[middle:])))
