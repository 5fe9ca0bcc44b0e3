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

Templates run in a sandbox (:mod:`campaigns.sending.sandbox`) under a budget per render
(:mod:`campaigns.sending.renderbudget`); every violation is a
:class:`~campaigns.errors.RenderError` naming the file and line.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    meta,
    select_autoescape,
)

from campaigns.errors import RenderError
from campaigns.feedback.surveys import SURVEY_OFF
from campaigns.sending.bodylinks import NO_LINKS, BodyLinks
from campaigns.sending.recommendationcontext import MessageRecommendations
from campaigns.sending.renderbudget import MAX_OPERATIONS, MAX_OUTPUT_CHARS
from campaigns.sending.sandbox import MessageSandbox

if TYPE_CHECKING:
    from campaigns.config.campaigns import TemplatesConfig
    from campaigns.customers.loyalty.coupons import AssignedCoupon
    from campaigns.customers.loyalty.referral_codes import ReferralContext

#: Template parts, in the order they are rendered.
PARTS = ("subject", "txt", "html", "sms", "json")


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


class TemplateRenderer:
    """Renders message templates from one folder; compiled templates are cached per instance.

    Create one per process (the worker runtime does) and reuse it: compiling is ~100x
    slower than rendering.
    """

    def __init__(self, *, directory: Path, max_output_chars: int = MAX_OUTPUT_CHARS,
                 max_operations: int = MAX_OPERATIONS) -> None:
        self.directory = Path(directory)
        self.environment = MessageSandbox(
            max_output_chars=max_output_chars,
            max_operations=max_operations,
            filters={"tojson": _tojson},
            loader=_ConfinedLoader(self.directory),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
            auto_reload=False,
            cache_size=2000,
            keep_trailing_newline=False,
        )
        self._parts: dict[str, list[str]] = {}
        self._references: dict[tuple[str, str], bool] = {}

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

    def references(self, name: str, variable: str) -> bool:
        """Whether a part of template ``name`` may read ``variable`` (cached): it names
        it, or it includes, imports or extends another template (not followed, so assumed
        to). True when a part cannot be read or parsed: its render will say why.

        Lets the worker skip reading what no template of a batch shows (the batch's
        recommended products).
        """
        key = (name, variable)
        if key not in self._references:
            self._references[key] = any(self._part_references(f"{name}.{part}.j2", variable)
                                        for part in self.parts(name))
        return self._references[key]

    def _part_references(self, filename: str, variable: str) -> bool:
        try:
            source = self.environment.loader.get_source(self.environment, filename)[0]  # type: ignore[union-attr]
            tree = self.environment.parse(source)
        except TemplateError:
            return True
        return variable in meta.find_undeclared_variables(tree) or any(True for _ in meta.find_referenced_templates(tree))

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


class _Attributes(dict[str, Any]):
    """Customer attributes; a missing attribute is ``None`` rather than an error, since
    free attributes vary per customer (use ``customer.attributes.city or 'you'``)."""

    def __getattr__(self, key: str) -> Any:
        return self.get(key)


#: ``loyalty`` while the programme is off: undefined, with the reason in the error
#: (``{% if loyalty is defined %}`` still tests for it).
LOYALTY_OFF = StrictUndefined(hint="'loyalty' is undefined: the loyalty programme is off "
                                   "([loyalty] enabled = false in config.toml)", name="loyalty")


def build_context(
    *,
    customer: dict[str, Any],
    stats: dict[str, Any],
    campaign: str,
    step: int,
    send_key: str,
    now: datetime,
    links: BodyLinks | None = None,
    coupon: AssignedCoupon | None = None,
    loyalty: dict[str, Any] | None = None,
    referral: ReferralContext | None = None,
    recommendations: MessageRecommendations | None = None,
    survey: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables a template sees: ``customer``, ``stats``, ``campaign``, ``step``,
    ``send_key``, ``now``, ``unsubscribe_url``, ``preferences_url`` and ``coupon``.

    ``customer.first_name`` is derived from the name. ``links`` are the message's signed
    unsubscribe and preference links (:func:`campaigns.sending.bodylinks.make_body_links`);
    without them both variables are empty strings, as in a message sent without
    ``[api] public_url``. ``coupon`` is the message's coupon (``coupon.code``,
    ``coupon.pool``) for a campaign with a ``coupon``, else None, so a template of a
    campaign without coupons that shows ``coupon.code`` fails ``nurture check``.
    ``loyalty`` is the customer's points and tier
    (:meth:`~campaigns.customers.loyalty.balances.Standing.as_context`), None while the
    loyalty programme is off: then any use of ``loyalty`` fails, saying so.
    ``referral`` is the recipient's referral code (``referral.code``, ``referral.link``
    when ``[loyalty.referrals] link`` is set), None while referrals are off.
    ``recommendations`` is the message's ``recommendations(n=3, category=None)``
    function (:class:`~campaigns.sending.recommendationcontext.MessageRecommendations`,
    which remembers what it showed); None gives one that has no products.
    ``survey`` is the question of a survey step, its score links and reply hint
    (:func:`campaigns.feedback.surveys.step_survey`); None for a step that asks none,
    whose template then fails on ``survey``, saying so.
    """
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
        "unsubscribe_url": (links or NO_LINKS).unsubscribe_url,
        "preferences_url": (links or NO_LINKS).preferences_url,
        "coupon": coupon.as_context() if coupon is not None else None,
        "loyalty": loyalty if loyalty is not None else LOYALTY_OFF,
        "referral": referral.as_context() if referral is not None else None,
        "recommendations": recommendations if recommendations is not None else MessageRecommendations(()),
        "survey": survey if survey is not None else SURVEY_OFF,
    }
