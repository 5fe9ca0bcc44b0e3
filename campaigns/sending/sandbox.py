"""The sandbox message templates run in: Jinja's immutable sandbox, with the render
budget (:mod:`campaigns.sending.renderbudget`) wired into every call, filter, operator,
loop and output.

Templates run in Jinja's immutable sandbox: no attribute starting with ``_`` (so no way to
Python internals), no changing the data a template is given (a template cannot alter
what another part or message sees), no globals but ``range`` (capped), ``dict``,
``cycler``, ``joiner`` and ``namespace`` (so no ``os``, ``open`` or imports, hence no
network), and files only from inside the templates folder (``..``, absolute paths and
symlinks pointing out are refused). ``*`` and ``**`` are capped so that ``'x' * 10**9``
or ``9 ** (9 ** 9)`` fail at once instead of exhausting the worker, and so are format
widths (``"{:>1000000000}"``, ``"%1000000000s"|format``, ``center``, ``indent``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.environment import Template
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from campaigns.sending.renderbudget import (
    CHARS_PER_OPERATION,
    CURRENT_BUDGET,
    RenderBudget,
    bounded_items,
    check_format_spec,
    check_printf,
    check_width,
    filter_size,
    format_size,
    printf_size,
    size_of,
    str_method_size,
)

#: Largest integer, in bits, a template may compute with ``*`` or ``**``.
MAX_INTEGER_BITS = 4096


class _BudgetCodeGenerator(CodeGenerator):
    """Jinja's code generator with the budget wired into the places no sandbox hook
    reaches: loop iterations, ``~`` and literal output."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        """A loop over ``environment.iterate(<iterable>)``, which counts each item (the
        first call of a recursive loop too; its ``loop(children)`` calls go through call)."""
        counted = nodes.EnvironmentAttribute("iterate", lineno=node.iter.lineno)
        if not (isinstance(node.iter, nodes.Call) and node.iter.node == counted):
            node.iter = nodes.Call(counted, [node.iter], [], None, None, lineno=node.iter.lineno)
        super().visit_For(node, frame)

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        """Jinja's ``a ~ b``, with the pieces sized before they are joined."""
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"{func_name}(environment.concat_pieces((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")

    def _output_const_repr(self, group: Iterable[Any]) -> str:
        # Literal text is written without finalize; a loop can write it a million times.
        return f"environment.write_literal({super()._output_const_repr(group)})"


# Jinja's own look-ups, called directly: cheaper than super() on the hottest path.
_SANDBOX_GETATTR = ImmutableSandboxedEnvironment.getattr
_SANDBOX_GETITEM = ImmutableSandboxedEnvironment.getitem


class _BudgetedTemplate(Template):
    """A template whose :meth:`render` runs under a fresh :class:`RenderBudget`."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        """Render with a budget of its own (includes and imports share it)."""
        environment = self.environment
        assert isinstance(environment, MessageSandbox)
        token = CURRENT_BUDGET.set(environment.new_budget())
        try:
            return super().render(*args, **kwargs)
        finally:
            CURRENT_BUDGET.reset(token)


class MessageSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox (see the module docstring) with every render under a
    :class:`~campaigns.sending.renderbudget.RenderBudget`.

    ``filters`` are added to Jinja's (and budgeted like them).
    """

    code_generator_class = _BudgetCodeGenerator
    template_class = _BudgetedTemplate
    # Intercepting also stops Jinja from folding constants at compile time, which would
    # otherwise compute 9 ** (9 ** 9) inside get_template (and hang `nurture check`).
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, max_output_chars: int, max_operations: int,
                 filters: Mapping[str, Callable[..., Any]] | None = None, **options: Any) -> None:
        super().__init__(finalize=self.write_value, **options)
        self.max_output_chars = max_output_chars
        self.max_operations = max_operations
        self.filters.update(filters or {})
        _bounded_filters(self.filters)
        _budgeted_filters(self)
        # Placeholder text has no place in a message, and lipsum(10**7) is a cheap way to
        # exhaust a worker.
        self.globals.pop("lipsum", None)

    def new_budget(self) -> RenderBudget:
        """A full budget for one render."""
        return RenderBudget(max_chars=self.max_output_chars, max_operations=self.max_operations)

    def budget(self) -> RenderBudget:
        """The budget of the render under way (a throwaway one outside :meth:`Template.render`)."""
        return CURRENT_BUDGET.get() or self.new_budget()

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Any call in a template (method, macro, global, ``loop()``), sized and counted."""
        budget = self.budget()
        budget.spend(1)
        if isinstance(obj, LoopContext) and args:  # a recursive loop's loop(children)
            args = (self.iterate(args[0]), *args[1:])
        elif isinstance(getattr(obj, "__self__", None), str | bytes):
            # A method scans its text (s.count, s.find, s.upper): the work grows with it.
            budget.spend(len(obj.__self__) // CHARS_PER_OPERATION)
            size = str_method_size(obj, args, kwargs, budget.max_chars)
            if size >= 0:
                budget.build(size, f"{type(obj.__self__).__name__}.{obj.__name__}()")
        result = super().call(context, obj, *args, **kwargs)
        size = size_of(result, budget.max_chars)
        if size >= CHARS_PER_OPERATION:
            budget.build(size, f"{_callable_name(obj)}()")
        return result

    # getattr, getitem and the two writes run for nearly every expression: inlined counting.

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``obj.attribute``, counted as one operation."""
        budget = CURRENT_BUDGET.get()
        if budget is not None:
            budget.operations += 1
            if budget.operations > budget.max_operations:
                budget.spend(0)
        return _SANDBOX_GETATTR(self, obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        """``obj[argument]``, counted as one operation."""
        budget = CURRENT_BUDGET.get()
        if budget is not None:
            budget.operations += 1
            if budget.operations > budget.max_operations:
                budget.spend(0)
        return _SANDBOX_GETITEM(self, obj, argument)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """``+ * % **``, refused when the result would be huge, before computing it."""
        budget = self.budget()
        budget.spend(1)
        if operator == "+":
            if isinstance(left, str | bytes | list | tuple):
                budget.build(size_of(left, budget.max_chars) + size_of(right, budget.max_chars), "'+'")
            return left + right
        if operator == "%":
            if isinstance(left, str | bytes):
                check_printf(left if isinstance(left, str) else left.decode("latin-1"),
                              right if isinstance(right, tuple) else (right,))
                budget.build(printf_size(left, right, budget.max_chars), "'%'")
            return left % right
        if operator == "**":
            if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1 and (
                right * math.log2(abs(left)) > MAX_INTEGER_BITS
            ):
                raise SecurityError(f"{left} ** {right} is too large: the sandbox allows integers of "
                                    f"at most {MAX_INTEGER_BITS} bits")
            return left**right
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, str | bytes | list | tuple) and _is_int(count):
                if len(sequence) * count > budget.max_chars:
                    raise SecurityError(f"'*' would build a {type(sequence).__name__} of {len(sequence) * count} "
                                        f"items: the sandbox allows at most {budget.max_chars} "
                                        "([templates] max_output_chars)")
                budget.build(size_of(sequence, budget.max_chars) * max(count, 0), "'*'")
        if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > MAX_INTEGER_BITS:
            raise SecurityError(f"'*' would compute an integer of over {MAX_INTEGER_BITS} bits")
        return left * right

    def iterate(self, iterable: Any) -> Iterator[Any]:
        """``iterable`` with each item counted as one operation (every ``for`` loop)."""
        budget = self.budget()
        for item in iterable:
            budget.operations += 1
            if budget.operations > budget.max_operations:
                budget.spend(0)
            yield item

    def concat_pieces(self, pieces: tuple[Any, ...]) -> tuple[Any, ...]:
        """The pieces of ``a ~ b``, refused when they would join into too long a string."""
        budget = self.budget()
        budget.spend(1)
        budget.build(sum(size_of(piece, budget.max_chars) for piece in pieces), "'~'")
        return pieces

    def write_value(self, value: Any) -> Any:
        """Finalize: count what ``{{ value }}`` writes before it is turned into text."""
        budget = CURRENT_BUDGET.get()
        if budget is not None:  # None: Jinja folding a constant at compile time
            size = len(value) if type(value) is str else size_of(value, budget.max_chars)
            budget.written += size
            budget.operations += 1 + size // CHARS_PER_OPERATION
            if budget.written > budget.max_chars or budget.operations > budget.max_operations:
                budget.write(0)
        return value

    def write_literal(self, text: str) -> str:
        """Count literal template text as it is written."""
        budget = CURRENT_BUDGET.get()
        if budget is not None:
            budget.written += len(text)
            budget.operations += 1 + len(text) // CHARS_PER_OPERATION
            if budget.written > budget.max_chars or budget.operations > budget.max_operations:
                budget.write(0)
        return text

    def wrap_str_format(self, value: Any) -> Any:
        """``str.format``/``format_map`` as the sandbox wraps them, with widths and size bounded."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text, method = value.__self__, value.__name__
        check_format_spec(text)

        @functools.wraps(wrapped)
        def bounded(*args: Any, **kwargs: Any) -> Any:
            budget = self.budget()
            if method == "format_map":
                size = format_size(text, (), args[0] if args else None, budget.max_chars)
            else:
                size = format_size(text, args, kwargs, budget.max_chars)
            budget.build(size, f"str.{method}()")
            return wrapped(*args, **kwargs)

        return bounded


def _callable_name(obj: Any) -> str:
    name = getattr(obj, "__name__", None) or getattr(obj, "name", None)
    return name if isinstance(name, str) else type(obj).__name__


def _budgeted_filters(environment: MessageSandbox) -> None:
    """Size and count every filter: its input (most filters print it), what it will build
    when that follows from its arguments, and what it returned."""
    for name, function in list(environment.filters.items()):
        environment.filters[name] = _budgeted_filter(environment, name, function)


def _budgeted_filter(environment: MessageSandbox, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    offset = 1 if hasattr(function, "jinja_pass_arg") else 0  # context, eval context or environment
    materialize = name in ("join", "sum")
    what = f"the {name} filter"

    @functools.wraps(function)
    def budgeted(*args: Any, **kwargs: Any) -> Any:
        budget = environment.budget()
        budget.spend(1)
        if len(args) > offset:
            value = args[offset]
            if materialize:
                value = bounded_items(value, budget)
                args = (*args[:offset], value, *args[offset + 1:])
            budget.build(size_of(value, budget.max_chars), what)
            size = filter_size(name, budget.max_chars, value, *args[offset + 1:], **kwargs)
            if size >= 0:
                budget.build(size, what)
        result = function(*args, **kwargs)
        size = size_of(result, budget.max_chars)
        if size >= CHARS_PER_OPERATION:
            budget.build(size, what)
        return result

    return budgeted


def _bounded_filters(filters: dict[str, Any]) -> None:
    """Replace the filters whose width argument allocates memory with capped versions."""
    center, indent, printf = filters["center"], filters["indent"], filters["format"]

    def bounded_center(value: Any, width: int = 80) -> str:
        check_width(width, "center width")
        return center(value, width)

    def bounded_indent(value: Any, width: int | str = 4, *args: Any, **kwargs: Any) -> str:
        check_width(width if isinstance(width, int) else len(width), "indent width")
        return indent(value, width, *args, **kwargs)

    def bounded_format(value: str, *args: Any, **kwargs: Any) -> str:
        check_printf(str(value), args)
        return printf(value, *args, **kwargs)

    filters.update(center=bounded_center, indent=bounded_indent, format=bounded_format)


def _is_int(value: Any) -> bool:
    return isinstance(value, int)
