"""The template sandbox (campaigns.sending.sandbox): a message template cannot reach Python
internals, read files outside the templates folder, reach the OS or the network, change
the data it is given, or exhaust the worker with one expression. Every attempt is a
RenderError naming the file and line, and `nurture check` reports it like any other
template error."""

from __future__ import annotations

import json
import os
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError, TemplateNotFound, UndefinedError
from typer.testing import CliRunner

from campaigns.errors import RenderError
from campaigns.sending.rendering import TemplateRenderer, build_context
from workers.cli.main import app


def context() -> dict[str, Any]:
    return build_context(
        customer={"id": 1, "external_id": "C-1", "name": "Li Wei", "email": "li@example.com",
                  "attributes": {"city": "Hangzhou"}},
        stats={"orders_count": 2, "total_spent": 10.0, "last_order_at": None},
        campaign="demo",
        step=0,
        send_key="k" * 64,
        now=datetime(2026, 3, 2, tzinfo=UTC),
    )


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A templates folder beside a file that must stay unreadable."""
    root = tmp_path / "templates"
    (root / "evil").mkdir(parents=True)
    (root / "shared").mkdir()
    (root / "shared" / "macros.txt.j2").write_text("{% macro hello(n) %}Hello {{ n }}{% endmacro %}")
    (tmp_path / "outside.txt.j2").write_text("TOP-SECRET-FILE-CONTENT")
    return root


def render(templates: Path, source: str) -> dict[str, str]:
    (templates / "evil" / "x.txt.j2").write_text(source, encoding="utf-8")
    return TemplateRenderer(directory=templates).render("evil/x", context())


def refused(templates: Path, source: str) -> RenderError:
    with pytest.raises(RenderError) as caught:
        render(templates, source)
    error = caught.value
    assert error.template == "evil/x.txt.j2"
    assert error.lineno == 1, str(error)
    assert str(error).startswith("evil/x.txt.j2:1: ")
    return error


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ customer.__class__ }}",
        "{{ customer.attributes.__class__ }}",
        "{{ customer['__class__'] }}",
        "{{ customer.attributes.__dict__ }}",
        "{{ ''|attr('__cla' ~ 'ss__') }}",
        "{{ '{0.__class__}'.format(customer) }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ namespace(a=1).__class__ }}",
        "{{ self.__init__ }}",
        "{{ self.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ now.__class__.__init__.__globals__ }}",
        "{{ now.replace.__self__ }}",
        "{{ range.__globals__ }}",
        "{{ dict.__subclasses__() }}",
    ],
)
def test_python_internals_are_out_of_reach(templates: Path, source: str) -> None:
    error = refused(templates, source)
    assert isinstance(error.__cause__, SecurityError)
    assert "is unsafe" in str(error)


@pytest.mark.parametrize(
    "source",
    [
        "{{ customer.update({'email': 'attacker@example.com'}) }}",
        "{{ stats.clear() }}",
        "{{ customer.attributes.pop('city') }}",
        "{% set items = [1] %}{{ items.append(2) }}",
    ],
)
def test_a_template_cannot_change_the_data_it_is_given(templates: Path, source: str) -> None:
    # Parts of a message share one context (and a batch shares a customer's stats): a
    # subject template must not be able to change what the body, or another message, sees.
    error = refused(templates, source)
    assert isinstance(error.__cause__, SecurityError)


@pytest.mark.parametrize("name", ["lipsum", "os", "open", "__import__", "__builtins__", "eval", "exec",
                                  "getattr", "import", "config", "request", "environ", "self.environment"])
def test_no_global_gives_access_to_the_os_files_or_network(templates: Path, name: str) -> None:
    error = refused(templates, "{{ " + name + " }}")
    assert isinstance(error.__cause__, UndefinedError | SecurityError)


def test_the_only_globals_are_harmless_helpers(templates: Path) -> None:
    environment = TemplateRenderer(directory=templates).environment
    assert set(environment.globals) == {"range", "dict", "cycler", "joiner", "namespace"}
    assert set(environment.filters) >= {"tojson", "e", "join"}


@pytest.mark.parametrize(
    "source",
    [
        "{% include '../outside.txt.j2' %}",
        "{% include '../../outside.txt.j2' %}",
        "{% include 'evil/../../outside.txt.j2' %}",
        "{% include '/etc/passwd' %}",
        "{% import '../outside.txt.j2' as m %}",
        "{% from '../outside.txt.j2' import m %}",
        "{% extends '../outside.txt.j2' %}",
    ],
)
def test_files_outside_the_templates_folder_cannot_be_read(templates: Path, source: str) -> None:
    error = refused(templates, source)
    assert isinstance(error.__cause__, TemplateNotFound)
    assert "not found: a template can only include, import or extend files inside the templates folder" in str(error)
    assert "TOP-SECRET" not in str(error)


def test_an_absolute_path_to_a_file_is_refused_even_when_it_exists(templates: Path) -> None:
    outside = templates.parent / "outside.txt.j2"
    error = refused(templates, "{% include '" + str(outside) + "' %}")
    assert isinstance(error.__cause__, TemplateNotFound)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_a_symlink_pointing_out_of_the_folder_is_refused(templates: Path) -> None:
    # git stores symlinks: a template repository could smuggle in one to /proc/self/environ.
    (templates / "shared" / "leak.txt.j2").symlink_to(templates.parent / "outside.txt.j2")
    error = refused(templates, "{% include 'shared/leak.txt.j2' %}")
    assert "'shared/leak.txt.j2' resolves outside the templates folder" in str(error)
    assert "TOP-SECRET" not in str(error)

    # A message part that is itself such a symlink is refused as well.
    (templates / "evil" / "y.txt.j2").symlink_to(templates.parent / "outside.txt.j2")
    with pytest.raises(RenderError, match="resolves outside the templates folder"):
        TemplateRenderer(directory=templates).render("evil/y", context())


def test_includes_and_imports_inside_the_folder_still_work(templates: Path) -> None:
    source = "{% import 'shared/macros.txt.j2' as m %}{{ m.hello(customer.first_name) }} from {{ customer.attributes.city }}"
    assert render(templates, source)["txt"] == "Hello Li from Hangzhou"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ range(10**9)|list|length }}", "Range too big"),
        ("{% for i in range(10**6) %}{% endfor %}", "Range too big"),
        ("{{ 'x' * 10**9 }}", "'*' would build a str of 1000000000 items"),
        ("{{ [0] * 10**8 }}", "'*' would build a list of 100000000 items"),
        ("{{ 9 ** (9 ** 9) }}", "9 ** 387420489 is too large"),
        ("{{ (10 ** 900) * (10 ** 900) }}", "'*' would compute an integer of over 4096 bits"),
    ],
)
def test_expressions_that_would_exhaust_the_worker_fail_at_once(templates: Path, source: str, message: str) -> None:
    assert message in str(refused(templates, source))


def test_ordinary_arithmetic_and_loops_are_unaffected(templates: Path) -> None:
    source = ("{{ 3 * 4 }} {{ 'ab' * 3 }} {{ 2 ** 10 }} {{ 1.5 * 2 }} "
              "{% set ns = namespace(total=0) %}{% for i in range(1, 5) %}{% set ns.total = ns.total + i %}{% endfor %}"
              "{{ ns.total }} {{ customer.attributes.items()|list|length }}")
    assert render(templates, source)["txt"] == "12 ababab 1024 3.0 10 1"


BROKEN_CONFIG = """\
[channels.email]
kind = "outbox"

[[campaigns]]
name = "evil"
purpose = "transactional"
trigger = { cron = "0 10 * * *" }
channels = ["email"]

  [[campaigns.steps]]
  template = "evil/x"
"""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Hi {{ ''.__class__.__mro__ }}", "access to attribute '__class__' of 'str' object is unsafe"),
        ("Hi {% include '../outside.txt.j2' %}", "'../outside.txt.j2' not found: a template can only include"),
        ("Hi {{ 9 ** (9 ** 9) }}", "9 ** 387420489 is too large"),
    ],
)
def test_nurture_check_reports_a_sandbox_violation_with_file_and_line(
    tmp_path: Path, templates: Path, monkeypatch: pytest.MonkeyPatch, source: str, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("NURTURE_CONFIG", "NURTURE_DATABASE_URL", "NURTURE_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    (templates / "evil" / "x.txt.j2").write_text(source)
    (tmp_path / "config.toml").write_text(textwrap.dedent(BROKEN_CONFIG))

    result = CliRunner().invoke(app, ["check", "-c", "config.toml", "--json"])
    assert result.exit_code == 1, result.output
    [error] = json.loads(result.stdout)["errors"]
    assert error["key"] == "campaigns[0].steps[0].template"
    assert "template does not render for a typical customer: evil/x.txt.j2:1:" in error["message"]
    assert expected in error["message"]

    result = CliRunner().invoke(app, ["check", "-c", "config.toml"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert expected in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ '{:>1000000000}'.format(1) }}", "a format width of 1000000000"),
        ("{{ '{:.999999999f}'.format(1.5) }}", "a format width of 999999999"),
        ("{{ '{x:>99999999}'.format_map({'x': 1}) }}", "a format width of 99999999"),
        ("{{ '{:{}}'.format(1, 5) }}", "computed widths"),
        ("{{ '%1000000000s'|format(1) }}", "a format width of 1000000000"),
        ("{{ '%*s'|format(1000000000, 'x') }}", "a format width of 1000000000"),
        ("{{ 'x'|center(1000000000) }}", "center width of 1000000000"),
        ("{{ 'a b'|indent(1000000000) }}", "indent width of 1000000000"),
    ],
)
def test_format_widths_that_would_allocate_gigabytes_are_refused(templates: Path, source: str, message: str) -> None:
    assert message in str(refused(templates, source))


def test_ordinary_formatting_still_works(templates: Path) -> None:
    text = render(templates, "{{ '{:>6}'.format(42) }}|{{ '%05.1f'|format(3.14159) }}|{{ 'x'|center(5) }}|"
                             "{{ 'a\nb'|indent(2) }}|{{ '{n}'.format_map({'n': 7}) }}")["txt"]
    assert text == "    42|003.1|  x  |a\n  b|7"
