"""The render budget (campaigns.sending.renderbudget): every render is bounded by the size of what it
builds and writes (``[templates] max_output_chars``, one million characters by default) and
by the work it does (``[templates] max_operations``), whatever method, filter or operator a
template uses. An expression that would build gigabytes is refused before it allocates
them; the refusal is a RenderError naming the file, the line and the budget."""

from __future__ import annotations

import json
import textwrap
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from typer.testing import CliRunner

from campaigns.errors import ConfigError, RenderError
from campaigns.project.loading import load_config
from campaigns.sending.renderbudget import MAX_OPERATIONS, MAX_OUTPUT_CHARS, MeasuredDict, size_of
from campaigns.sending.rendering import TemplateRenderer, build_context
from workers.cli.main import app

#: Far below what the attacks built before the budget (286 MB to 1.5 GB each).
PEAK_LIMIT_BYTES = 50 * 2**20
OUTPUT = "[templates] max_output_chars"
WORK = "[templates] max_operations"

#: Two lists whose rendering is 100 MB while they hold four small objects.
DAG = ("{% set a = ['x' * 100000] %}{% set b = [a,a,a,a,a,a,a,a,a,a] %}"
       "{% set c = [b,b,b,b,b,b,b,b,b,b] %}{% set d = [c,c,c,c,c,c,c,c,c,c] %}")
MEGA = "{% set s = 'x' * 1000000 %}"

#: Each of these built 100 MB to 1.5 GB in a second or two before the budget.
ALLOCATING = {
    # From the finding.
    "str.rjust": "{{ 'x'.rjust(300000000)|length }}",
    "str.center": "{{ 'x'.center(300000000)|length }}",
    "str.zfill": "{{ '1'.zfill(300000000)|length }}",
    "str.expandtabs": "{{ '\\tx'.expandtabs(300000000)|length }}",
    "% operator": "{{ ('%300000000s' % 'x')|length }}",
    "join of repeated references": MEGA + "{{ ([s] * 300)|join|length }}",
    "str.replace": "{% set s = 'x' * 20000 %}{{ s.replace('x', s)|length }}",
    "namespace doubling with ~": ("{% set ns = namespace(x='x') %}{% for i in range(29) %}"
                                  "{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x|length }}"),
    # A few more.
    "str.ljust": "{{ 'x'.ljust(300000000)|length }}",
    "bytes.rjust": "{{ 'x'.encode().rjust(300000000)|length }}",
    "% operator, left-aligned": "{{ ('%-300000000s' % 'x')|length }}",
    "% operator repeating a mapping key": MEGA + "{{ (('%(a)s' * 300) % {'a': s})|length }}",
    "str.join of repeated references": MEGA + "{{ ''.join([s] * 300)|length }}",
    "replace filter": "{% set s = 'x' * 20000 %}{{ s|replace('x', s)|length }}",
    "str.translate": "{% set s = 'x' * 20000 %}{{ s.translate({120: s})|length }}",
    "str.format repeating a field": MEGA + "{{ ('{0}' * 300).format(s)|length }}",
    "namespace doubling with +": ("{% set ns = namespace(x='x') %}{% for i in range(29) %}"
                                  "{% set ns.x = ns.x + ns.x %}{% endfor %}{{ ns.x|length }}"),
    "list doubling with +": ("{% set ns = namespace(l=[0]) %}{% for i in range(28) %}"
                             "{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}"),
    "~ chain without a loop": ("{% set a = 'x' * 1000000 %}{% set b = a ~ a ~ a ~ a ~ a ~ a ~ a ~ a %}"
                               "{% set c = b ~ b ~ b ~ b ~ b ~ b ~ b ~ b %}{{ c|length }}"),
    "indent by a long string": "{% set s = 'x' * 10000 %}{{ ('a\\n' * 30000)|indent(s, first=true)|length }}",
    "wordwrap with a long wrapstring": "{{ ('x ' * 50000)|wordwrap(1, wrapstring='y' * 10000)|length }}",
    "batch padded to a billion": "{{ [1]|batch(10**9, 'x')|list|length }}",
    "printing nested lists": DAG + "{{ d }}",
    "tojson of nested lists": DAG + "{{ d|tojson|length }}",
    "~ of nested lists": DAG + "{{ ('' ~ d)|length }}",
    "a macro buffering its loop": ("{% macro m() %}{% for i in range(100000) %}" + "x" * 1000
                                   + "{% endfor %}{% endmacro %}{{ m()|length }}"),
    "output written in a loop": "{% set s = 'x' * 1000 %}{% for i in range(100000) %}{{ s }}{% endfor %}",
}

#: Each of these ran for minutes (10 billion iterations) with almost no memory or output.
WORKING = {
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}done",
    "nested loops with a false test": ("{% for i in range(100000) %}{% for j in range(100000) if false %}"
                                       "{% endfor %}{% endfor %}done"),
    "a dict copied and grown in a loop": ("{% set ns = namespace(d={}) %}{% for i in range(100000) %}"
                                          "{% set ns.d = dict(ns.d, **{i|string: i}) %}{% endfor %}"),
    "a recursive loop fanning out": ("{% for x in [1] recursive %}{% if loop.depth < 30 %}"
                                     "{{ loop([1, 1]) }}{% endif %}{% endfor %}"),
    "searching a long string in a loop": ("{% set s = 'x' * 999999 %}{% for i in range(1000) %}"
                                          "{% if s.count('y') %}{% endif %}{% endfor %}"),
    "macro recursion fanning out": ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
                                    "{% endmacro %}{{ f(40) }}"),
}


def context() -> dict[str, Any]:
    return build_context(
        customer={"id": 1, "name": "Li Wei", "email": "li@example.com", "attributes": {"city": "Hangzhou"}},
        stats={"orders_count": 2, "total_spent": 10.0, "last_order_at": None},
        campaign="demo",
        step=0,
        send_key="k" * 64,
        now=datetime(2026, 3, 2, tzinfo=UTC),
    )


def write(root: Path, source: str, name: str = "evil/x.txt.j2") -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")


def refused(root: Path, source: str, **limits: int) -> RenderError:
    write(root, source)
    renderer = TemplateRenderer(directory=root, **limits)
    with pytest.raises(RenderError) as caught:
        renderer.render("evil/x", context())
    error = caught.value
    assert isinstance(error.__cause__, SecurityError), repr(error.__cause__)
    assert error.template == "evil/x.txt.j2"
    assert error.lineno == 1, str(error)
    return error


@pytest.mark.parametrize("source", list(ALLOCATING.values()), ids=list(ALLOCATING))
def test_an_expression_building_hundreds_of_megabytes_is_refused_before_it_allocates_them(
    tmp_path: Path, source: str
) -> None:
    tracemalloc.start()
    try:
        error = refused(tmp_path, source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if "%3" in source or "%-3" in source:  # the older cap on format widths answers first
        assert "a format width of 300000000: the sandbox allows at most 10000" in str(error)
    else:
        assert f"a render may build at most 1,000,000 ({OUTPUT})" in str(error) or (
            f"a render may write at most 1,000,000 ({OUTPUT})" in str(error))
    assert peak < PEAK_LIMIT_BYTES, f"peak {peak / 2**20:.0f} MB"


@pytest.mark.parametrize("source", list(WORKING.values()), ids=list(WORKING))
def test_a_render_that_would_run_for_minutes_is_stopped_by_the_work_budget(tmp_path: Path, source: str) -> None:
    error = refused(tmp_path, source)
    assert WORK in str(error)
    assert "100,000 operations" in str(error)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ lipsum(n=100000) }}", "'lipsum' is undefined"),
        ("{{ range(10**6)|list|length }}", "Range too big"),
        ("{{ 'x' * 10**9 }}", "'*' would build a str of 1000000000 items"),
        ("{{ '{:>300000000}'.format('x') }}", "a format width of 300000000"),
        ("{{ 'x'|center(300000000) }}", "center width of 300000000"),
        ("{{ 'x'|indent(300000000) }}", "indent width of 300000000"),
    ],
)
def test_the_older_narrower_caps_still_answer_first(tmp_path: Path, source: str, message: str) -> None:
    write(tmp_path, source)
    with pytest.raises(RenderError, match="evil/x.txt.j2:1: ") as caught:
        TemplateRenderer(directory=tmp_path).render("evil/x", context())
    assert message in str(caught.value)


def test_the_output_budget_counts_characters_written_by_the_whole_render(tmp_path: Path) -> None:
    # 10 x 9 characters fit in 90, not in 89; one render is one part, whatever writes it.
    source = "{% for i in range(10) %}{{ 'abcdefgh' }}\n{% endfor %}"
    write(tmp_path, source)
    assert len(TemplateRenderer(directory=tmp_path, max_output_chars=90).render("evil/x", context())["txt"]) == 90
    error = refused(tmp_path, source, max_output_chars=89)
    assert "the rendered output would exceed 89 characters" in str(error)


def test_each_part_has_its_own_budget(tmp_path: Path) -> None:
    write(tmp_path, "{{ 'x' * 60 }}", "demo/p.txt.j2")
    write(tmp_path, "{{ 'y' * 60 }}", "demo/p.html.j2")
    assert TemplateRenderer(directory=tmp_path, max_output_chars=100).render("demo/p", context()) == {
        "txt": "x" * 60, "html": "y" * 60}


def test_the_work_budget_counts_loop_iterations(tmp_path: Path) -> None:
    source = "{% for i in range(50) %}{% endfor %}ok"
    write(tmp_path, source)
    assert TemplateRenderer(directory=tmp_path, max_operations=60).render("evil/x", context())["txt"] == "ok"
    error = refused(tmp_path, source, max_operations=40)
    assert "the render takes over 40 operations" in str(error)


def test_the_budget_does_not_leak_from_one_render_into_the_next(tmp_path: Path) -> None:
    write(tmp_path, "{% for i in range(30) %}{{ i }}{% endfor %}")
    renderer = TemplateRenderer(directory=tmp_path, max_operations=100)
    for _ in range(20):
        renderer.render("evil/x", context())


ORDINARY = textwrap.dedent("""\
    {% import 'shared/macros.txt.j2' as m -%}
    {% macro line(label, value) %}{{ label|title }}: {{ '%-8s'|format(value) }}|{% endmacro -%}
    {% set ns = namespace(total=0, names=[]) -%}
    {% for i in range(1, 6) %}{% set ns.total = ns.total + i %}{% set ns.names = ns.names + [i|string] %}{% endfor -%}
    {{ line('total', ns.total) }} {{ ns.names|join(',') }} {{ ns.names }} {{ m.hello(customer.first_name) }}
    {{ customer.first_name.rjust(6, '.') }} {{ '%5.1f' % stats.total_spent }} {{ '{:>5}'.format(step) }}
    {{ ('ab ' * 30)|wordwrap(20)|replace('ab', 'AB')|center(30)|trim }} {{ [1, 2, 3]|sum }} {{ 2 ** 10 }}
    {% for row in [[1, [2]], [3, 4]] recursive %}{{ loop.index }}/{{ loop.length }}{{ loop.cycle('a', 'b') }}
    {%- if row is iterable %}({{ loop(row) }}){% endif %}{% if not loop.last %},{% endif %}{% endfor %}
    {% for x in [] %}never{% else %}empty{% endfor %} {% for k, v in {'a': 1}|dictsort %}{{ k }}={{ v }}{% endfor %}
    {{ 'x\ty'.expandtabs(4) ~ '.' ~ customer.attributes.city|upper }} {{ customer.attributes.items()|list }}
    {{ customer.name|tojson }} {{ '%s and %s' % ('a', 'b') }} {{ 'a-b'.split('-')|join('+') }} {{ 'x' + 'y' }}
    {% filter upper %}shout {{ customer.name }}{% endfilter %} {% set block %}kept {{ step }}{% endset %}{{ block }}
    {{ '<b>' ~ customer.name|e }} {{ [1, 2, 3]|batch(2)|list }} {{ [1, 2, 3]|slice(2)|list }} {{ 7 % 3 }}""")


def test_ordinary_templates_render_exactly_as_in_jinjas_own_sandbox(tmp_path: Path) -> None:
    write(tmp_path, "{% macro hello(n) %}Hello {{ n }}{% endmacro %}", "shared/macros.txt.j2")
    write(tmp_path, ORDINARY)
    stock = ImmutableSandboxedEnvironment(loader=FileSystemLoader(str(tmp_path)), undefined=StrictUndefined)
    expected = stock.get_template("evil/x.txt.j2").render(context())
    assert "Total: 15" in expected and "SHOUT LI WEI" in expected
    assert TemplateRenderer(directory=tmp_path).render("evil/x", context())["txt"] == expected


CONFIG = """\
[templates]
dir = "templates"
{extra}

[channels.email]
kind = "outbox"
"""


def test_the_budget_is_configurable_and_validated(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "config.toml").write_text(CONFIG.format(extra="max_output_chars = 5000\nmax_operations = 20000"))
    config = load_config(tmp_path / "config.toml")
    assert (config.templates.max_output_chars, config.templates.max_operations) == (5000, 20000)

    (tmp_path / "config.toml").write_text(CONFIG.format(extra=""))
    config = load_config(tmp_path / "config.toml")
    assert (config.templates.max_output_chars, config.templates.max_operations) == (1_000_000, 100_000)

    (tmp_path / "config.toml").write_text(CONFIG.format(extra="max_output_chars = 0"))
    with pytest.raises(ConfigError, match="max_output_chars"):
        load_config(tmp_path / "config.toml")
    assert (MAX_OUTPUT_CHARS, MAX_OPERATIONS) == (1_000_000, 100_000)


CHECKED = """\
[templates]
max_output_chars = 50

[channels.email]
kind = "outbox"

[[campaigns]]
name = "long"
purpose = "transactional"
trigger = { cron = "0 10 * * *" }
channels = ["email"]

  [[campaigns.steps]]
  template = "evil/x"
"""


def test_nurture_check_renders_under_the_configured_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("NURTURE_CONFIG", "NURTURE_DATABASE_URL", "NURTURE_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    write(tmp_path / "templates", "Hello\n{% for i in range(30) %}{{ customer.first_name }}{% endfor %}")
    (tmp_path / "config.toml").write_text(CHECKED)

    result = CliRunner().invoke(app, ["check", "-c", "config.toml", "--json"])
    assert result.exit_code == 1, result.output
    [error] = json.loads(result.stdout)["errors"]
    assert error["key"] == "campaigns[0].steps[0].template"
    assert "evil/x.txt.j2:2: the rendered output would exceed 50 characters" in error["message"]
    assert OUTPUT in error["message"]


def test_a_worker_fails_a_message_over_the_budget_permanently_and_keeps_its_other_sends(
    tmp_path: Path, sqlite_url: str
) -> None:
    import sqlalchemy as sa

    from campaigns.store.models import Delivery
    from tests.conftest import TICK_NOW
    from tests.workers.jobs.test_delivery import outbox_runtime
    from workers.jobs.delivery import deliver_batch
    from workers.jobs.runtime import Runtime

    # Long names break the budget, short ones do not: one batch, both outcomes.
    runtime, ids = outbox_runtime(tmp_path, sqlite_url, template=(
        "Hi {% for i in range(10) %}{{ customer.name }}{% endfor %}"))
    with runtime.engine.begin() as conn:
        names = list(conn.execute(sa.text("SELECT id FROM customer ORDER BY id")).scalars())
        conn.execute(sa.text("UPDATE customer SET name = :name WHERE id = :id"),
                     [{"name": "x" * 200 if index % 2 else "Li", "id": id_} for index, id_ in enumerate(names)])
    runtime.close()
    config_file = tmp_path / "config.toml"
    config_file.write_text("[templates]\nmax_output_chars = 1000\n" + config_file.read_text())
    worker = Runtime.from_config(load_config(config_file), clock=lambda: TICK_NOW)

    assert deliver_batch(worker, ids).counts == {"ok": 3, "permanent": 2}
    with worker.engine.connect() as conn:
        errors = {e for e in conn.execute(sa.select(Delivery.last_error)).scalars() if e}
    assert len(errors) == 1
    error = errors.pop()
    assert "c/m.txt.j2:1: the rendered output would exceed 1,000 characters" in error and OUTPUT in error
    worker.close()


def test_a_measured_dict_counts_as_the_same_dict_would_inside_any_container() -> None:
    product = {"sku": "A-1", "name": "Linen shirt 亚麻衬衫", "category": None, "price": 39.0,
               "url": "https://shop.example/A-1", "image_url": None, "reason": "co_purchase", "because_sku": "B"}
    measured = MeasuredDict(product)
    assert measured == product and json.dumps(measured) == json.dumps(product)
    assert size_of(measured, MAX_OUTPUT_CHARS) == size_of(product, MAX_OUTPUT_CHARS)
    assert size_of([measured] * 3, MAX_OUTPUT_CHARS) == size_of([product] * 3, MAX_OUTPUT_CHARS)
    assert size_of({"p": [measured]}, MAX_OUTPUT_CHARS) == size_of({"p": [product]}, MAX_OUTPUT_CHARS)
