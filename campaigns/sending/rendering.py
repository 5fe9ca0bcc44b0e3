"""Message templates: a sandboxed Jinja environment, compiled once per process.

A message template is a name such as ``win_back/miss_you``; its parts are files beside
each other in the templates folder, one per part a channel may use::

    win_back/miss_you.subject.j2   email subject (one line)
    win_back/miss_you.txt.j2       plain text body (email text part, outbox, SMS fallback)
    win_back/miss_you.html.j2      HTML body (autoescaped)
    win_back/miss_you.sms.j2       short text for SMS
    win_back/miss_you.json.j2      JSON body for the webhook channel

Undefined variables are errors (``StrictUndefined``), found by ``nurture check`` before
the first send.

Templates run in Jinja's immutable sandbox: no attribute starting with ``_`` (so no way to
Python internals), no changing the data a template is given (a template cannot alter
what another part or message sees), no globals but ``range`` (capped), ``dict``,
``cycler``, ``joiner`` and ``namespace`` (so no ``os``, ``open`` or imports, hence no
network), and files only from inside the templates folder (``..``, absolute paths and
symlinks pointing out are refused). ``*`` and ``**`` are capped so that ``'x' * 10**9``
or ``9 ** (9 ** 9)`` fail at once instead of exhausting the worker, and so are format
widths (``"{:>1000000000}"``, ``"%1000000000s"|format``, ``center``, ``indent``).

Beyond those, every render has a budget (:class:`RenderBudget`), whatever method, filter
or operator a template uses: no value it builds and not all it writes together may exceed
``max_output_chars`` characters (a list counts as its printed form), and it may take at
most ``max_operations`` operations (loop iterations, attribute look-ups, calls, filters,
operators, output writes, and one per hundred characters built, or scanned by a string
method or filter). Each call, filter, ``+ * % **``, ``~`` and
output is sized before the worker allocates the result where the size follows from the
arguments (``'x'.rjust(N)``, ``s.replace(a, b)``, ``'%Ns' % x``, ``[s] * n|join``, ``a ~ b``),
and after it otherwise. Every violation is a :class:`~campaigns.errors.RenderError` naming
the file and line.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import string
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, ValuesView
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    nodes,
    select_autoescape,
)
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.environment import Template
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from campaigns.errors import RenderError

if TYPE_CHECKING:
    from campaigns.config.campaigns import TemplatesConfig

#: Template parts, in the order they are rendered.
PARTS = ("subject", "txt", "html", "sms", "json")
#: Largest integer, in bits, a template may compute with ``*`` or ``**``.
MAX_INTEGER_BITS = 4096
#: Widest padding or precision a template may ask of a format (``"{:>N}"``, ``"%Ns"``,
#: ``center(N)``, ``indent(N)``): a width is memory the worker must allocate.
MAX_FORMAT_WIDTH = 10_000
_NUMBERS = re.compile(r"\d+")
_PRINTF_SPEC = re.compile(r"%[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_width(width: Any, what: str) -> None:
    if isinstance(width, int) and width > MAX_FORMAT_WIDTH:
        raise SecurityError(f"{what} of {width}: the sandbox allows at most {MAX_FORMAT_WIDTH}")


def _check_format_spec(text: str) -> None:
    """Refuse ``str.format`` fields padded or with precision beyond the cap, and nested
    (computed) widths, which a literal check cannot bound."""
    for _, _, spec, _ in string.Formatter().parse(text):
        if not spec:
            continue
        if "{" in spec:
            raise SecurityError("computed widths in a format field ('{:{}}') are not allowed in templates")
        for number in _NUMBERS.findall(spec):
            _check_width(int(number), "a format width")


def _check_printf(text: str, args: tuple[Any, ...]) -> None:
    """Refuse ``%``-format widths and precisions (literal or ``*``) beyond the cap."""
    star_args = iter(args)
    for match in _PRINTF_SPEC.finditer(text):
        for group in match.groups():
            if group == "*":
                _check_width(next(star_args, 0), "a format width")
            elif group:
                _check_width(int(group), "a format width")


#: Default for ``[templates] max_output_chars``: the most characters one render may build
#: in one value (a list counts as its printed form) and write in all.
MAX_OUTPUT_CHARS = 1_000_000
#: Default for ``[templates] max_operations``: the most operations one render may take
#: (loop iterations, attribute look-ups, calls, filters, operators, output writes, and one
#: per 100 characters built).
MAX_OPERATIONS = 100_000
#: Characters built that count as one operation.
_CHARS_PER_OPERATION = 100
#: What a value other than a string or a container prints as, roughly (``12.5``, a date).
_SCALAR_SIZE = 8
_PRINTF_FIELD = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[-+ #0]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?[hlL]?(?P<conversion>.?)"
)


class RenderBudget:
    """What one render may still build, write and do; see the module docstring.

    One is active per render (a context variable, so per thread), shared by the includes,
    imports and macros of that render.
    """

    __slots__ = ("max_chars", "max_operations", "operations", "written")

    def __init__(self, *, max_chars: int, max_operations: int) -> None:
        self.max_chars = max_chars
        self.max_operations = max_operations
        self.operations = 0
        self.written = 0

    def spend(self, operations: int) -> None:
        """Count ``operations`` more; refuse once the render has taken too many."""
        self.operations += operations
        if self.operations > self.max_operations:
            raise SecurityError(
                f"the render takes over {self.max_operations:,} operations (loop iterations, look-ups, calls, "
                f"filters, operators): a render may take at most {self.max_operations:,} ([templates] max_operations)"
            )

    def build(self, size: int, what: str) -> None:
        """Refuse a value of ``size`` characters over the budget; count the work of building it."""
        if size > self.max_chars:
            raise SecurityError(f"{what} would build {size:,} characters: a render may build at most "
                                f"{self.max_chars:,} ([templates] max_output_chars)")
        if size >= _CHARS_PER_OPERATION:
            self.spend(size // _CHARS_PER_OPERATION)

    def write(self, size: int) -> None:
        """Count ``size`` more characters of output; refuse past the budget."""
        self.written += size
        if self.written > self.max_chars:
            raise SecurityError(f"the rendered output would exceed {self.max_chars:,} characters: a render may "
                                f"write at most {self.max_chars:,} ([templates] max_output_chars)")
        self.spend(1 + size // _CHARS_PER_OPERATION)


_BUDGET: ContextVar[RenderBudget | None] = ContextVar("nurture_render_budget", default=None)


_TEXT = (str, bytes, bytearray)
_CONTAINERS = (list, tuple, dict, set, frozenset, Namespace, KeysView, ValuesView, ItemsView)
_SCALARS = frozenset({int, float, bool, type(None)})


def _size(value: Any, limit: int) -> int:
    """Roughly how many characters ``str(value)`` takes, without building it; counting
    stops soon after ``limit``. A list holding one string a hundred times counts it a
    hundred times: that is what printing or joining it would build."""
    if isinstance(value, _TEXT):
        return len(value)
    if isinstance(value, _CONTAINERS):
        return _container_size(value, limit, {})
    return _SCALAR_SIZE


def _container_size(value: Any, limit: int, seen: dict[int, int]) -> int:
    key = id(value)
    if key in seen:
        return seen[key]
    seen[key] = 0  # a namespace holding itself prints as {...}
    if isinstance(value, Namespace):
        value = object.__getattribute__(value, "_Namespace__attrs")
    # Each item and its separator (", " or ": "); a dict's keys and values alike.
    groups = (value.keys(), value.values()) if isinstance(value, dict) else (value,)
    total = 2
    slow = []
    for group in groups:
        # Strings or scalars only (the usual case): count at C speed.
        kinds = set(map(type, group))
        if kinds == {str}:
            total += sum(map(len, group)) + 2 * len(group)
        elif kinds <= _SCALARS:
            total += _SCALAR_SIZE * len(group)
        else:
            slow.append(group)
    for part in itertools.chain.from_iterable(slow):
        kind = type(part)
        if kind is str:
            total += len(part) + 2
        elif kind in _SCALARS:
            total += _SCALAR_SIZE
        elif isinstance(part, _TEXT):
            total += len(part) + 2
        elif isinstance(part, _CONTAINERS):
            total += _container_size(part, limit, seen) + 2
            if total > limit:
                break
        else:
            total += _SCALAR_SIZE
        if total > limit:
            break
    seen[key] = total
    return total


def _width(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str_method_size(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> int:
    """The size a ``str``/``bytes`` method that can grow its text will build, from its
    arguments (-1 for the others, sized after the call)."""
    text = method.__self__
    name = method.__name__
    arguments = list(args)
    if name in ("rjust", "ljust", "center", "zfill"):
        return max(len(text), _width(arguments[0] if arguments else kwargs.get("width")))
    if name == "expandtabs":
        tabsize = _width(arguments[0] if arguments else kwargs.get("tabsize", 8))
        return len(text) + int(text.count("\t" if isinstance(text, str) else b"\t")) * tabsize
    if name == "replace" and len(arguments) >= 2:
        old, new = arguments[0], arguments[1]
        if not isinstance(old, type(text)) or not isinstance(new, type(text)):
            return -1
        count = text.count(old) if old else len(text) + 1
        limit_count = arguments[2] if len(arguments) > 2 else kwargs.get("count", -1)
        if isinstance(limit_count, int) and limit_count >= 0:
            count = min(count, limit_count)
        return len(text) + count * max(0, len(new) - len(old))
    if name == "join" and arguments and isinstance(arguments[0], list | tuple):
        items = arguments[0]
        return sum(_size(item, limit) for item in items) + len(text) * max(0, len(items) - 1)
    if name == "translate" and arguments and isinstance(arguments[0], dict):
        longest = max((_size(v, limit) for v in arguments[0].values() if v is not None), default=1)
        return len(text) * max(1, longest)
    return -1


def _format_size(text: str, args: tuple[Any, ...], kwargs: Any, limit: int) -> int:
    """Roughly the size ``text.format(*args, **kwargs)`` builds: each field's value (or its
    width), so ``('{0}' * 300).format(s)`` counts ``s`` 300 times."""
    total = 0
    automatic = 0
    for literal, field, spec, _ in string.Formatter().parse(text):
        total += len(literal)
        if field is None:
            continue
        first = re.split(r"[.\[]", field, maxsplit=1)[0]
        value: Any = None
        if first == "":
            value = args[automatic] if automatic < len(args) else None
            automatic += 1
        elif first.isdigit():
            value = args[int(first)] if int(first) < len(args) else None
        elif isinstance(kwargs, dict):
            value = kwargs.get(first)
        widths = [int(number) for number in _NUMBERS.findall(spec or "")]
        total += max([_size(value, limit), *widths])
        if total > limit:
            break
    return total


def _printf_size(text: str | bytes, values: Any, limit: int) -> int:
    """Roughly the size ``text % values`` builds: each field's value, width and precision,
    so ``'%300000000s' % x`` and ``('%(a)s' * 300) % {'a': s}`` are sized before they run."""
    source = text if isinstance(text, str) else text.decode("latin-1")
    positional = iter(values if isinstance(values, tuple) else (values,))
    total = len(source)
    for match in _PRINTF_FIELD.finditer(source):
        if match["conversion"] == "%":
            continue
        sizes = []
        for group in ("width", "precision"):
            if match[group] == "*":
                sizes.append(_width(next(positional, 0)))
            elif match[group]:
                sizes.append(int(match[group]))
        if match["key"] is not None:
            value = values.get(match["key"]) if isinstance(values, dict) else None
        else:
            value = next(positional, None)
        total += sum(sizes) + _size(value, limit)
        if total > limit:
            break
    return total


def _bounded_items(iterable: Any, budget: RenderBudget) -> list[Any]:
    """``list(iterable)`` for a filter that would build one anyway, each item counted as work."""
    if isinstance(iterable, list | tuple):
        return list(iterable)
    items = []
    for item in iterable:
        budget.spend(1)
        items.append(item)
    return items


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


def template_parts(directory: Path, name: str) -> list[str]:
    """The parts that exist on disk for template ``name`` under ``directory``."""
    return [part for part in PARTS if (directory / f"{name}.{part}.j2").is_file()]


def _tojson(value: Any) -> str:
    # Non-ASCII stays readable (names in Chinese); html-unsafe characters are not an issue
    # in a JSON body, which is never embedded in HTML.
    return json.dumps(value, ensure_ascii=False, default=str)


class _OutsideFolder(TemplateNotFound):
    """A template file that resolves outside the templates folder (through a symlink)."""


class _ConfinedLoader(FileSystemLoader):
    """A :class:`FileSystemLoader` that refuses files resolving outside its folder.

    Jinja already refuses ``..`` and absolute names; a symlink inside the folder (which
    git happily stores) could still point at ``/proc/self/environ`` and mail the
    worker's secrets to whoever receives the message.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__(str(directory))
        self.root = Path(directory).resolve()

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Any]:
        """The template's source, unless its file resolves outside the folder."""
        source, filename, uptodate = super().get_source(environment, template)
        if not Path(filename).resolve().is_relative_to(self.root):
            raise _OutsideFolder(template, f"{template!r} resolves outside the templates folder {self.root}")
        return source, filename, uptodate


# Jinja's own look-ups, called directly: cheaper than super() on the hottest path.
_SANDBOX_GETATTR = ImmutableSandboxedEnvironment.getattr
_SANDBOX_GETITEM = ImmutableSandboxedEnvironment.getitem


class _BudgetedTemplate(Template):
    """A template whose :meth:`render` runs under a fresh :class:`RenderBudget`."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        """Render with a budget of its own (includes and imports share it)."""
        environment = self.environment
        assert isinstance(environment, _MessageSandbox)
        token = _BUDGET.set(environment.new_budget())
        try:
            return super().render(*args, **kwargs)
        finally:
            _BUDGET.reset(token)


class _MessageSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with every render under a budget (see the module docstring)."""

    code_generator_class = _BudgetCodeGenerator
    template_class = _BudgetedTemplate
    # Intercepting also stops Jinja from folding constants at compile time, which would
    # otherwise compute 9 ** (9 ** 9) inside get_template (and hang `nurture check`).
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, max_output_chars: int, max_operations: int, **options: Any) -> None:
        super().__init__(finalize=self.write_value, **options)
        self.max_output_chars = max_output_chars
        self.max_operations = max_operations

    def new_budget(self) -> RenderBudget:
        """A full budget for one render."""
        return RenderBudget(max_chars=self.max_output_chars, max_operations=self.max_operations)

    def budget(self) -> RenderBudget:
        """The budget of the render under way (a throwaway one outside :meth:`Template.render`)."""
        return _BUDGET.get() or self.new_budget()

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Any call in a template (method, macro, global, ``loop()``), sized and counted."""
        budget = self.budget()
        budget.spend(1)
        if isinstance(obj, LoopContext) and args:  # a recursive loop's loop(children)
            args = (self.iterate(args[0]), *args[1:])
        elif isinstance(getattr(obj, "__self__", None), str | bytes):
            # A method scans its text (s.count, s.find, s.upper): the work grows with it.
            budget.spend(len(obj.__self__) // _CHARS_PER_OPERATION)
            size = _str_method_size(obj, args, kwargs, budget.max_chars)
            if size >= 0:
                budget.build(size, f"{type(obj.__self__).__name__}.{obj.__name__}()")
        result = super().call(context, obj, *args, **kwargs)
        size = _size(result, budget.max_chars)
        if size >= _CHARS_PER_OPERATION:
            budget.build(size, f"{_callable_name(obj)}()")
        return result

    # getattr, getitem and the two writes run for nearly every expression: inlined counting.

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``obj.attribute``, counted as one operation."""
        budget = _BUDGET.get()
        if budget is not None:
            budget.operations += 1
            if budget.operations > budget.max_operations:
                budget.spend(0)
        return _SANDBOX_GETATTR(self, obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        """``obj[argument]``, counted as one operation."""
        budget = _BUDGET.get()
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
                budget.build(_size(left, budget.max_chars) + _size(right, budget.max_chars), "'+'")
            return left + right
        if operator == "%":
            if isinstance(left, str | bytes):
                _check_printf(left if isinstance(left, str) else left.decode("latin-1"),
                              right if isinstance(right, tuple) else (right,))
                budget.build(_printf_size(left, right, budget.max_chars), "'%'")
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
                budget.build(_size(sequence, budget.max_chars) * max(count, 0), "'*'")
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
        budget.build(sum(_size(piece, budget.max_chars) for piece in pieces), "'~'")
        return pieces

    def write_value(self, value: Any) -> Any:
        """Finalize: count what ``{{ value }}`` writes before it is turned into text."""
        budget = _BUDGET.get()
        if budget is not None:  # None: Jinja folding a constant at compile time
            size = len(value) if type(value) is str else _size(value, budget.max_chars)
            budget.written += size
            budget.operations += 1 + size // _CHARS_PER_OPERATION
            if budget.written > budget.max_chars or budget.operations > budget.max_operations:
                budget.write(0)
        return value

    def write_literal(self, text: str) -> str:
        """Count literal template text as it is written."""
        budget = _BUDGET.get()
        if budget is not None:
            budget.written += len(text)
            budget.operations += 1 + len(text) // _CHARS_PER_OPERATION
            if budget.written > budget.max_chars or budget.operations > budget.max_operations:
                budget.write(0)
        return text

    def wrap_str_format(self, value: Any) -> Any:
        """``str.format``/``format_map`` as the sandbox wraps them, with widths and size bounded."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text, method = value.__self__, value.__name__
        _check_format_spec(text)

        @functools.wraps(wrapped)
        def bounded(*args: Any, **kwargs: Any) -> Any:
            budget = self.budget()
            if method == "format_map":
                size = _format_size(text, (), args[0] if args else None, budget.max_chars)
            else:
                size = _format_size(text, args, kwargs, budget.max_chars)
            budget.build(size, f"str.{method}()")
            return wrapped(*args, **kwargs)

        return bounded


def _callable_name(obj: Any) -> str:
    name = getattr(obj, "__name__", None) or getattr(obj, "name", None)
    return name if isinstance(name, str) else type(obj).__name__


def _filter_size(name: str, limit: int, value: Any, *args: Any, **kwargs: Any) -> int:
    """What filter ``name`` will build from ``value`` and its arguments when that can be
    far more than its input (-1 otherwise: sized after the call)."""
    if name == "join":
        separator = args[0] if args else kwargs.get("d", "")
        return sum(_size(item, limit) for item in value) + _size(separator, limit) * max(0, len(value) - 1)
    # center and an int indent width are capped at MAX_FORMAT_WIDTH by _bounded_filters.
    if name in ("replace", "indent", "wordwrap", "format", "batch", "slice", "urlize"):
        text = value if isinstance(value, str) else str(value)
        if name == "replace" and len(args) >= 2:
            return _str_method_size(text.replace, args, kwargs, limit)
        if name == "indent":
            width = args[0] if args else kwargs.get("width", 4)
            _check_width(width, "indent width")
            width = len(width) if isinstance(width, str) else _width(width)
            return len(text) + (text.count("\n") + 1) * width
        if name == "wordwrap":
            width = max(1, _width(args[0] if args else kwargs.get("width", 79)))
            wrapstring = args[2] if len(args) > 2 else kwargs.get("wrapstring")
            # Greedy wrapping: two consecutive lines of a paragraph hold over `width` characters.
            lines = min(len(text) + 1, 2 * len(text) // width + text.count("\n") + 1)
            return len(text) + lines * max(1, _size(wrapstring, limit) if wrapstring is not None else 1)
        if name == "format":
            _check_printf(text, args)
            return _printf_size(text, args if args else kwargs, limit)
        if name in ("batch", "slice"):
            count = _width(args[0] if args else kwargs.get("linecount" if name == "batch" else "slices"))
            fill = args[1] if len(args) > 1 else kwargs.get("fill_with")
            return count * (4 + (_size(fill, limit) if fill is not None else 0))
        if name == "urlize":
            extras = sum(_size(kwargs.get(key) or "", limit) for key in ("target", "rel"))
            return 2 * len(text) + (text.count(" ") + text.count("\n") + 1) * (extras + 40)
    if name == "sum":
        start = args[1] if len(args) > 1 else kwargs.get("start", 0)
        if not isinstance(start, int | float):
            return _size(start, limit) + sum(_size(item, limit) for item in value)
    return -1


def _budgeted_filters(environment: _MessageSandbox) -> None:
    """Size and count every filter: its input (most filters print it), what it will build
    when that follows from its arguments, and what it returned."""
    for name, function in list(environment.filters.items()):
        environment.filters[name] = _budgeted_filter(environment, name, function)


def _budgeted_filter(environment: _MessageSandbox, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
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
                value = _bounded_items(value, budget)
                args = (*args[:offset], value, *args[offset + 1:])
            budget.build(_size(value, budget.max_chars), what)
            size = _filter_size(name, budget.max_chars, value, *args[offset + 1:], **kwargs)
            if size >= 0:
                budget.build(size, what)
        result = function(*args, **kwargs)
        size = _size(result, budget.max_chars)
        if size >= _CHARS_PER_OPERATION:
            budget.build(size, what)
        return result

    return budgeted


def _bounded_filters(filters: dict[str, Any]) -> None:
    """Replace the filters whose width argument allocates memory with capped versions."""
    center, indent, printf = filters["center"], filters["indent"], filters["format"]

    def bounded_center(value: Any, width: int = 80) -> str:
        _check_width(width, "center width")
        return center(value, width)

    def bounded_indent(value: Any, width: int | str = 4, *args: Any, **kwargs: Any) -> str:
        _check_width(width if isinstance(width, int) else len(width), "indent width")
        return indent(value, width, *args, **kwargs)

    def bounded_format(value: str, *args: Any, **kwargs: Any) -> str:
        _check_printf(str(value), args)
        return printf(value, *args, **kwargs)

    filters.update(center=bounded_center, indent=bounded_indent, format=bounded_format)


def _is_int(value: Any) -> bool:
    return isinstance(value, int)


class TemplateRenderer:
    """Renders message templates from one folder; compiled templates are cached per instance.

    Create one per process (the worker runtime does) and reuse it: compiling is ~100x
    slower than rendering.
    """

    def __init__(self, *, directory: Path, max_output_chars: int = MAX_OUTPUT_CHARS,
                 max_operations: int = MAX_OPERATIONS) -> None:
        self.directory = Path(directory)
        self.environment = _MessageSandbox(
            max_output_chars=max_output_chars,
            max_operations=max_operations,
            loader=_ConfinedLoader(self.directory),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
            auto_reload=False,
            cache_size=2000,
            keep_trailing_newline=False,
        )
        self.environment.filters["tojson"] = _tojson
        _bounded_filters(self.environment.filters)
        _budgeted_filters(self.environment)
        # Placeholder text has no place in a message, and lipsum(10**7) is a cheap way to
        # exhaust a worker.
        self.environment.globals.pop("lipsum", None)
        self._parts: dict[str, list[str]] = {}

    @classmethod
    def from_config(cls, templates: TemplatesConfig) -> TemplateRenderer:
        """A renderer for the ``[templates]`` section: its folder and render budget."""
        return cls(directory=templates.dir, max_output_chars=templates.max_output_chars,
                   max_operations=templates.max_operations)

    def parts(self, name: str) -> list[str]:
        """Which parts template ``name`` has (cached)."""
        if name not in self._parts:
            self._parts[name] = template_parts(self.directory, name)
        return self._parts[name]

    def render(self, name: str, context: dict[str, Any]) -> dict[str, str]:
        """Render every part of template ``name``.

        Raises:
            RenderError: the template is missing, does not compile, or uses an undefined
                variable; the error names the file and line.
        """
        parts = self.parts(name)
        if not parts:
            raise RenderError(name, "template not found")
        rendered: dict[str, str] = {}
        for part in parts:
            filename = f"{name}.{part}.j2"
            try:
                template = self.environment.get_template(filename)
                text = template.render(context)
            except TemplateSyntaxError as exc:
                raise RenderError(filename, exc.message or str(exc), lineno=exc.lineno) from exc
            except TemplateNotFound as exc:
                # An include, import or extends: say where templates may come from.
                reason = str(exc) if isinstance(exc, _OutsideFolder) else f"{exc.name!r} not found"
                raise RenderError(
                    filename,
                    f"{reason}: a template can only include, import or extend files inside the "
                    f"templates folder {self.directory}",
                    lineno=_template_lineno(exc),
                ) from exc
            except TemplateError as exc:
                raise RenderError(filename, str(exc), lineno=_template_lineno(exc)) from exc
            except Exception as exc:  # a filter or attribute raising inside the sandbox
                raise RenderError(filename, f"{type(exc).__name__}: {exc}", lineno=_template_lineno(exc)) from exc
            rendered[part] = text.strip() if part == "subject" else text
        if "json" in rendered:
            try:
                json.loads(rendered["json"])
            except ValueError as exc:
                raise RenderError(f"{name}.json.j2", f"does not render to valid JSON: {exc}") from exc
        return rendered


def _template_lineno(exc: BaseException) -> int | None:
    # Jinja rewrites tracebacks so template frames carry the template's file and line.
    tb = exc.__traceback__
    lineno = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(".j2"):
            lineno = tb.tb_lineno
        tb = tb.tb_next
    return lineno


def sample_context() -> dict[str, Any]:
    """A plausible customer context, used by ``nurture check`` to render every template."""
    return build_context(
        customer={
            "id": 0,
            "external_id": "C-SAMPLE",
            "name": "Li Wei",
            "email": "li.wei@example.com",
            "phone": "+8613800000000",
            "wechat_openid": "o-sample",
            "timezone": "Asia/Shanghai",
            "locale": "zh-CN",
            "acquisition_channel": "ecommerce",
            "created_at": datetime(2024, 3, 1, tzinfo=UTC),
            "attributes": {},
        },
        stats={"orders_count": 3, "total_spent": 456.0, "last_order_at": datetime(2025, 6, 1, tzinfo=UTC)},
        campaign="sample",
        step=0,
        send_key="0" * 64,
        now=datetime.now(UTC),
    )


class _Attributes(dict[str, Any]):
    """Customer attributes; a missing attribute is ``None`` rather than an error, since
    free attributes vary per customer (use ``customer.attributes.city or 'you'``)."""

    def __getattr__(self, key: str) -> Any:
        return self.get(key)


def build_context(
    *,
    customer: dict[str, Any],
    stats: dict[str, Any],
    campaign: str,
    step: int,
    send_key: str,
    now: datetime,
) -> dict[str, Any]:
    """The variables a template sees: ``customer``, ``stats``, ``campaign``, ``step``,
    ``send_key`` and ``now``. ``customer.first_name`` is derived from the name."""
    name = customer.get("name") or ""
    data = dict(customer)
    words = name.split()
    data["first_name"] = words[0] if words else ""
    data["attributes"] = _Attributes(customer.get("attributes") or {})
    return {
        "customer": data,
        "stats": stats,
        "campaign": {"name": campaign},
        "step": step,
        "send_key": send_key,
        "now": now,
    }
