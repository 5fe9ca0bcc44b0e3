"""Reading an audience expression's syntax tree: literal values, and errors located in
the expression's own text (line and character column, the offending source quoted).

:class:`NodeReader` is the base of the compiler (:mod:`campaigns.audience.compiler`).
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

from campaigns.audience.language import INT64_MAX, INT64_MIN, ExpressionError, char_column

#: Python syntax outside the language, and how an error names it.
DISALLOWED = {
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


@dataclass(frozen=True)
class Literal:
    """A literal value of an expression and the node it was read from."""

    value: str | int | float | bool
    node: ast.expr


class NodeReader:
    """Reads the nodes of one expression's tree; ``text`` is the expression, ``lines`` its
    lines (:func:`~campaigns.audience.language.line_texts`)."""

    def __init__(self, *, text: str, lines: list[str]) -> None:
        self.text = text
        self.lines = lines

    def error(self, node: ast.AST | None, message: str, hint: str | None = None) -> ExpressionError:
        """An :class:`ExpressionError` located at ``node`` (unlocated without one)."""
        if node is None or not hasattr(node, "lineno"):
            return ExpressionError(message, hint=hint)
        line = node.lineno
        return ExpressionError(message, char_column(self.lines, line, node.col_offset), line=line, hint=hint)

    def source_of(self, node: ast.AST) -> str:
        """The text of ``node`` as written in the expression."""
        return ast.get_source_segment(self.text, node) or ast.unparse(node)

    def literal_or_none(self, node: ast.expr) -> Literal | None:
        """``node`` as a literal (string, finite number, true/false), None if it is not one;
        refuses literals of other types and integers out of range."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (str, int, float)) and not isinstance(node.value, complex):
                if isinstance(node.value, float) and not math.isfinite(node.value):
                    raise self.error(node, "numbers must be finite")
                return self.in_range(Literal(node.value, node))
            raise self.error(node, f"{type(node.value).__name__} literals are not allowed",
                             "use strings, numbers, true or false")
        if isinstance(node, ast.Name) and node.id in ("true", "false", "True", "False"):
            return Literal(node.id in ("true", "True"), node)
        if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
                and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)):
            value = node.operand.value
            return self.in_range(Literal(-value if isinstance(node.op, ast.USub) else value, node))
        return None

    def in_range(self, literal: Literal) -> Literal:
        """``literal``, unless it is an integer the databases' BIGINT cannot hold."""
        value = literal.value
        if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
            raise self.error(literal.node, "integer out of range: numbers must lie between "
                             "-9223372036854775808 and 9223372036854775807")
        return literal

    def literal_list(self, node: ast.expr) -> list[Literal]:
        """The literal values of the list after ``in`` / ``not in``."""
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
        """Refuse ``node`` if it is Python syntax the language leaves out (:data:`DISALLOWED`)."""
        name = type(node).__name__
        if name in DISALLOWED:
            raise self.error(node, f"{DISALLOWED[name]} not allowed in an audience expression")
