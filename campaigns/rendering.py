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
widths (``"{:>1000000000}"``, ``"%1000000000s"|format``, ``center``, ``indent``). Loops
are not bounded: ``range`` is, but nested loops can still take long; templates are
written by the team, not by customers. Every violation is a
:class:`~campaigns.errors.RenderError` naming the file and line.
"""

from __future__ import annotations

import json
import math
import re
import string
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    select_autoescape,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from campaigns.errors import RenderError

#: Template parts, in the order they are rendered.
PARTS = ("subject", "txt", "html", "sms", "json")
#: Longest string or list a template may build with ``*``.
MAX_REPEAT_LENGTH = 1_000_000
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


class _MessageSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with ``*`` and ``**`` bounded (see the module docstring)."""

    # Intercepting also stops Jinja from folding constants at compile time, which would
    # otherwise compute 9 ** (9 ** 9) inside get_template (and hang `nurture check`).
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """``left * right`` or ``left ** right``, refused when the result would be huge."""
        if operator == "**":
            if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1 and (
                right * math.log2(abs(left)) > MAX_INTEGER_BITS
            ):
                raise SecurityError(f"{left} ** {right} is too large: the sandbox allows integers of "
                                    f"at most {MAX_INTEGER_BITS} bits")
            return left**right
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, str | list | tuple) and _is_int(count) and len(sequence) * count > MAX_REPEAT_LENGTH:
                raise SecurityError(f"'*' would build a {type(sequence).__name__} of {len(sequence) * count} "
                                    f"items: the sandbox allows at most {MAX_REPEAT_LENGTH}")
        if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > MAX_INTEGER_BITS:
            raise SecurityError(f"'*' would compute an integer of over {MAX_INTEGER_BITS} bits")
        return left * right


    def wrap_str_format(self, value: Any) -> Any:
        """``str.format``/``format_map`` as the sandbox wraps them, with widths bounded."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        _check_format_spec(value.__self__)
        return wrapped


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

    def __init__(self, *, directory: Path) -> None:
        self.directory = Path(directory)
        self.environment = _MessageSandbox(
            loader=_ConfinedLoader(self.directory),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
            auto_reload=False,
            cache_size=2000,
            keep_trailing_newline=False,
        )
        self.environment.filters["tojson"] = _tojson
        _bounded_filters(self.environment.filters)
        # Placeholder text has no place in a message, and lipsum(10**7) is a cheap way to
        # exhaust a worker.
        self.environment.globals.pop("lipsum", None)
        self._parts: dict[str, list[str]] = {}

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
