"""The render budget: what one render of a message template may build, write and do,
and the size of what each operation would build, estimated before it runs.

Beyond the sandbox's caps (:mod:`campaigns.sending.sandbox`), every render has a budget
(:class:`RenderBudget`), whatever method, filter or operator a template uses: no value it builds and not all it writes together may exceed
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

import itertools
import re
import string
from collections.abc import ItemsView, KeysView, ValuesView
from contextvars import ContextVar
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.utils import Namespace

#: Widest padding or precision a template may ask of a format (``"{:>N}"``, ``"%Ns"``,
#: ``center(N)``, ``indent(N)``): a width is memory the worker must allocate.
MAX_FORMAT_WIDTH = 10_000
_NUMBERS = re.compile(r"\d+")
_PRINTF_SPEC = re.compile(r"%[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_width(width: Any, what: str) -> None:
    """Refuse a padding or precision ``width`` beyond :data:`MAX_FORMAT_WIDTH`; ``what`` names it."""
    if isinstance(width, int) and width > MAX_FORMAT_WIDTH:
        raise SecurityError(f"{what} of {width}: the sandbox allows at most {MAX_FORMAT_WIDTH}")


def check_format_spec(text: str) -> None:
    """Refuse ``str.format`` fields padded or with precision beyond the cap, and nested
    (computed) widths, which a literal check cannot bound."""
    for _, _, spec, _ in string.Formatter().parse(text):
        if not spec:
            continue
        if "{" in spec:
            raise SecurityError("computed widths in a format field ('{:{}}') are not allowed in templates")
        for number in _NUMBERS.findall(spec):
            check_width(int(number), "a format width")


def check_printf(text: str, args: tuple[Any, ...]) -> None:
    """Refuse ``%``-format widths and precisions (literal or ``*``) beyond the cap."""
    star_args = iter(args)
    for match in _PRINTF_SPEC.finditer(text):
        for group in match.groups():
            if group == "*":
                check_width(next(star_args, 0), "a format width")
            elif group:
                check_width(int(group), "a format width")


#: Default for ``[templates] max_output_chars``: the most characters one render may build
#: in one value (a list counts as its printed form) and write in all.
MAX_OUTPUT_CHARS = 1_000_000
#: Default for ``[templates] max_operations``: the most operations one render may take
#: (loop iterations, attribute look-ups, calls, filters, operators, output writes, and one
#: per 100 characters built).
MAX_OPERATIONS = 100_000
#: Characters built that count as one operation.
CHARS_PER_OPERATION = 100
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
        if size >= CHARS_PER_OPERATION:
            self.spend(size // CHARS_PER_OPERATION)

    def write(self, size: int) -> None:
        """Count ``size`` more characters of output; refuse past the budget."""
        self.written += size
        if self.written > self.max_chars:
            raise SecurityError(f"the rendered output would exceed {self.max_chars:,} characters: a render may "
                                f"write at most {self.max_chars:,} ([templates] max_output_chars)")
        self.spend(1 + size // CHARS_PER_OPERATION)


#: The budget of the render under way in this thread (None outside a render).
CURRENT_BUDGET: ContextVar[RenderBudget | None] = ContextVar("nurture_render_budget", default=None)


_TEXT = (str, bytes, bytearray)
_CONTAINERS = (list, tuple, dict, set, frozenset, Namespace, KeysView, ValuesView, ItemsView)
_SCALARS = frozenset({int, float, bool, type(None)})


def size_of(value: Any, limit: int) -> int:
    """Roughly how many characters ``str(value)`` takes, without building it; counting
    stops soon after ``limit``. A list holding one string a hundred times counts it a
    hundred times: that is what printing or joining it would build."""
    if isinstance(value, _TEXT):
        return len(value)
    if isinstance(value, _CONTAINERS):
        return _container_size(value, limit, {})
    return _SCALAR_SIZE


class MeasuredDict(dict[str, Any]):
    """A dict of plain values, built once and never changed, that carries its size as
    :func:`size_of` counts it: the batch's recommended products, which a template sees
    many times (each call and each filter sizes what it is handed) in each of many
    messages. The sandbox is immutable, so no template can make the size wrong; nothing
    else changes these after building them."""

    __slots__ = ("measured_size",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.measured_size = _container_size(dict(self), _UNBOUNDED, {})


#: A limit no value reaches: a MeasuredDict is counted whole, once.
_UNBOUNDED = 1 << 62


def _container_size(value: Any, limit: int, seen: dict[int, int]) -> int:
    if type(value) is MeasuredDict:
        return value.measured_size
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


def width_of(value: Any) -> int:
    """``value`` as a width argument: the integer, or 0 for anything else."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def str_method_size(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> int:
    """The size a ``str``/``bytes`` method that can grow its text will build, from its
    arguments (-1 for the others, sized after the call)."""
    text = method.__self__
    name = method.__name__
    arguments = list(args)
    if name in ("rjust", "ljust", "center", "zfill"):
        return max(len(text), width_of(arguments[0] if arguments else kwargs.get("width")))
    if name == "expandtabs":
        tabsize = width_of(arguments[0] if arguments else kwargs.get("tabsize", 8))
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
        return sum(size_of(item, limit) for item in items) + len(text) * max(0, len(items) - 1)
    if name == "translate" and arguments and isinstance(arguments[0], dict):
        longest = max((size_of(v, limit) for v in arguments[0].values() if v is not None), default=1)
        return len(text) * max(1, longest)
    return -1


def format_size(text: str, args: tuple[Any, ...], kwargs: Any, limit: int) -> int:
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
        total += max([size_of(value, limit), *widths])
        if total > limit:
            break
    return total


def printf_size(text: str | bytes, values: Any, limit: int) -> int:
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
                sizes.append(width_of(next(positional, 0)))
            elif match[group]:
                sizes.append(int(match[group]))
        if match["key"] is not None:
            value = values.get(match["key"]) if isinstance(values, dict) else None
        else:
            value = next(positional, None)
        total += sum(sizes) + size_of(value, limit)
        if total > limit:
            break
    return total


def bounded_items(iterable: Any, budget: RenderBudget) -> list[Any]:
    """``list(iterable)`` for a filter that would build one anyway, each item counted as work."""
    if isinstance(iterable, list | tuple):
        return list(iterable)
    items = []
    for item in iterable:
        budget.spend(1)
        items.append(item)
    return items


def filter_size(name: str, limit: int, value: Any, *args: Any, **kwargs: Any) -> int:
    """What filter ``name`` will build from ``value`` and its arguments when that can be
    far more than its input (-1 otherwise: sized after the call)."""
    if name == "join":
        separator = args[0] if args else kwargs.get("d", "")
        return sum(size_of(item, limit) for item in value) + size_of(separator, limit) * max(0, len(value) - 1)
    # center and an int indent width are capped at MAX_FORMAT_WIDTH by _bounded_filters.
    if name in ("replace", "indent", "wordwrap", "format", "batch", "slice", "urlize"):
        text = value if isinstance(value, str) else str(value)
        if name == "replace" and len(args) >= 2:
            return str_method_size(text.replace, args, kwargs, limit)
        if name == "indent":
            width = args[0] if args else kwargs.get("width", 4)
            check_width(width, "indent width")
            width = len(width) if isinstance(width, str) else width_of(width)
            return len(text) + (text.count("\n") + 1) * width
        if name == "wordwrap":
            width = max(1, width_of(args[0] if args else kwargs.get("width", 79)))
            wrapstring = args[2] if len(args) > 2 else kwargs.get("wrapstring")
            # Greedy wrapping: two consecutive lines of a paragraph hold over `width` characters.
            lines = min(len(text) + 1, 2 * len(text) // width + text.count("\n") + 1)
            return len(text) + lines * max(1, size_of(wrapstring, limit) if wrapstring is not None else 1)
        if name == "format":
            check_printf(text, args)
            return printf_size(text, args if args else kwargs, limit)
        if name in ("batch", "slice"):
            count = width_of(args[0] if args else kwargs.get("linecount" if name == "batch" else "slices"))
            fill = args[1] if len(args) > 1 else kwargs.get("fill_with")
            return count * (4 + (size_of(fill, limit) if fill is not None else 0))
        if name == "urlize":
            extras = sum(size_of(kwargs.get(key) or "", limit) for key in ("target", "rel"))
            return 2 * len(text) + (text.count(" ") + text.count("\n") + 1) * (extras + 40)
    if name == "sum":
        start = args[1] if len(args) > 1 else kwargs.get("start", 0)
        if not isinstance(start, int | float):
            return size_of(start, limit) + sum(size_of(item, limit) for item in value)
    return -1
