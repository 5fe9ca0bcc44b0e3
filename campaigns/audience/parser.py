"""Reading an audience expression: from text to a validated :class:`Expression`.

The text is parsed by :mod:`ast`, its brackets and depth checked here, and its names,
types and values checked by compiling it once (:func:`campaigns.audience.compiler.check_expression`),
so an expression that parses is one that compiles.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Collection, Sequence

from campaigns.audience.compiler import check_expression
from campaigns.audience.language import (
    MAX_DEPTH,
    MAX_LENGTH,
    Expression,
    ExpressionError,
    calls_segment,
    char_column,
    line_texts,
)


def parse_expression(
    text: str, *, rfm_names: Sequence[str], segment_names: Collection[str] = (),
    tiers: Sequence[str] | None = None,
) -> Expression:
    """Parse and validate ``text``; :class:`ExpressionError` says what and where if invalid.

    ``rfm_names`` are the configured RFM segment names (values ``rfm_segment`` may take),
    ``segment_names`` the named segments ``segment("...")`` may refer to, ``tiers`` the
    ``[[loyalty.tiers]]`` names (values ``tier`` may take), None while ``[loyalty]`` is
    off: then the loyalty fields and functions are errors
    (:func:`~campaigns.audience.language.expression_tiers` gives them from a config).
    """
    if not isinstance(text, str):
        raise ExpressionError(f"an audience expression must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ExpressionError("empty audience expression", hint='write a condition such as stage == "active"')
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"audience expression is longer than {MAX_LENGTH} characters")
    lines = line_texts(text)
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
    check_expression(expression, rfm_names=rfm_names, segment_names=segment_names, tiers=tiers)
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
                                  char_column(lines, line, getattr(node, "col_offset", 0)), line=line)
        pending.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def segment_references(expr: Expression) -> set[str]:
    """Names of the segments ``expr`` calls with ``segment("...")`` directly."""
    return {node.args[0].value for node in ast.walk(expr.tree) if calls_segment(node)}  # type: ignore[attr-defined]
