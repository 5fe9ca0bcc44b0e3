"""Tests for campaigns.sending.rendering: strict, sandboxed, cached message templates."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from campaigns.errors import RenderError
from campaigns.sending.rendering import (
    TemplateRenderer,
    build_context,
    template_parts,
)


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def context(name: str = "Li Wei", **customer: Any) -> dict[str, Any]:
    return build_context(
        customer={"id": 1, "external_id": "C-1", "name": name, "email": "li@example.com", **customer},
        stats={"orders_count": 2, "total_spent": 10.0, "last_order_at": None},
        campaign="demo",
        step=0,
        send_key="k" * 64,
        now=datetime(2026, 3, 2, tzinfo=UTC),
    )


@pytest.fixture
def renderer(tmp_path: Path) -> TemplateRenderer:
    return TemplateRenderer(directory=tmp_path)


def test_renders_every_part_that_exists(tmp_path: Path, renderer: TemplateRenderer) -> None:
    write(tmp_path, "demo/hi.subject.j2", "  Hello {{ customer.first_name }}  \n")
    write(tmp_path, "demo/hi.txt.j2", "Dear {{ customer.name }}, {{ stats.orders_count }} orders")
    assert template_parts(tmp_path, "demo/hi") == ["subject", "txt"]
    assert renderer.render("demo/hi", context()) == {"subject": "Hello Li", "txt": "Dear Li Wei, 2 orders"}


def test_missing_template_is_a_render_error(renderer: TemplateRenderer) -> None:
    with pytest.raises(RenderError, match="template not found"):
        renderer.render("nope/none", context())


def test_undefined_variable_names_file_and_line(tmp_path: Path, renderer: TemplateRenderer) -> None:
    write(tmp_path, "demo/undef.txt.j2", "line one\nline two\nhello {{ customer.nickname }}\n")
    with pytest.raises(RenderError) as caught:
        renderer.render("demo/undef", context())
    error = caught.value
    assert error.template == "demo/undef.txt.j2"
    assert error.lineno == 3
    assert str(error).startswith("demo/undef.txt.j2:3:")
    assert "nickname" in str(error)
    assert isinstance(error.__cause__, UndefinedError)


def test_undefined_top_level_variable_is_an_error(tmp_path: Path, renderer: TemplateRenderer) -> None:
    write(tmp_path, "demo/top.txt.j2", "{{ coupon_code }}")
    with pytest.raises(RenderError, match="coupon_code"):
        renderer.render("demo/top", context())


def test_syntax_error_names_file_and_line(tmp_path: Path, renderer: TemplateRenderer) -> None:
    write(tmp_path, "demo/syntax.txt.j2", "ok\n{% if %}\n")
    with pytest.raises(RenderError) as caught:
        renderer.render("demo/syntax", context())
    assert caught.value.template == "demo/syntax.txt.j2"
    assert caught.value.lineno == 2


def test_html_part_is_autoescaped_and_txt_is_not(tmp_path: Path, renderer: TemplateRenderer) -> None:
    write(tmp_path, "demo/esc.txt.j2", "{{ customer.name }}")
    write(tmp_path, "demo/esc.html.j2", "<p>{{ customer.name }}</p>")
    write(tmp_path, "demo/esc.subject.j2", "{{ customer.name }}")
    rendered = renderer.render("demo/esc", context(name="<b>Tom & Jerry</b>"))
    assert rendered["html"] == "<p>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>"
    assert rendered["txt"] == "<b>Tom & Jerry</b>"
    assert rendered["subject"] == "<b>Tom & Jerry</b>"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ customer.attributes.__class__ }}",
        "{{ now.__class__.__init__.__globals__ }}",
    ],
)
def test_sandbox_blocks_python_internals(tmp_path: Path, renderer: TemplateRenderer, source: str) -> None:
    write(tmp_path, "evil/x.txt.j2", source)
    with pytest.raises(RenderError) as caught:
        renderer.render("evil/x", context())
    assert isinstance(caught.value.__cause__, SecurityError)
    assert "unsafe" in str(caught.value)
    assert caught.value.template == "evil/x.txt.j2"


def test_json_part_renders_valid_json(tmp_path: Path, renderer: TemplateRenderer) -> None:
    write(
        tmp_path,
        "hook/ok.json.j2",
        '{"to": {{ customer.external_id|tojson }}, "name": {{ customer.name|tojson }}, '
        '"orders": {{ stats.orders_count }}}',
    )
    rendered = renderer.render("hook/ok", context(name='Li "Wei" 李'))
    assert json.loads(rendered["json"]) == {"to": "C-1", "name": 'Li "Wei" 李', "orders": 2}
    assert "李" in rendered["json"]  # non-ASCII stays readable


def test_json_part_that_is_not_json_is_a_render_error(tmp_path: Path, renderer: TemplateRenderer) -> None:
    write(tmp_path, "hook/bad.json.j2", '{"name": "{{ customer.name }}"}')
    assert json.loads(renderer.render("hook/bad", context(name="Li"))["json"]) == {"name": "Li"}
    with pytest.raises(RenderError) as caught:
        renderer.render("hook/bad", context(name='Li "Wei"'))
    assert caught.value.template == "hook/bad.json.j2"
    assert "valid JSON" in str(caught.value)


def test_compiled_templates_are_cached(
    tmp_path: Path, renderer: TemplateRenderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "demo/c.txt.j2", "Hi {{ customer.first_name }}")
    compiled: list[str | None] = []
    original = renderer.environment.compile

    def counting_compile(source: Any, name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        compiled.append(name)
        return original(source, name, *args, **kwargs)

    monkeypatch.setattr(renderer.environment, "compile", counting_compile)

    first = renderer.environment.get_template("demo/c.txt.j2")
    assert renderer.render("demo/c", context()) == {"txt": "Hi Li"}
    assert renderer.render("demo/c", context(name="Ann Lee")) == {"txt": "Hi Ann"}
    second = renderer.environment.get_template("demo/c.txt.j2")
    assert second is first
    assert compiled == ["demo/c.txt.j2"]

    # Not re-read either: a changed file is ignored by this (long-lived) renderer.
    write(tmp_path, "demo/c.txt.j2", "CHANGED")
    assert renderer.render("demo/c", context()) == {"txt": "Hi Li"}
    assert compiled == ["demo/c.txt.j2"]
    # ...while a fresh renderer sees the new file.
    assert TemplateRenderer(directory=tmp_path).render("demo/c", context()) == {"txt": "CHANGED"}


def test_missing_attribute_is_none(tmp_path: Path, renderer: TemplateRenderer) -> None:
    write(
        tmp_path,
        "demo/attr.txt.j2",
        "{{ customer.attributes.missing is none }}|{{ customer.attributes.city or 'you' }}|"
        "{{ customer.attributes.vip }}",
    )
    rendered = renderer.render("demo/attr", context(attributes={"vip": True}))
    assert rendered["txt"] == "True|you|True"
    rendered = renderer.render("demo/attr", context(attributes={"city": "Hangzhou"}))
    assert rendered["txt"] == "True|Hangzhou|None"


def test_build_context_attributes_missing_is_none() -> None:
    ctx = context(attributes={"city": "Shanghai"})
    assert ctx["customer"]["attributes"].missing is None
    assert ctx["customer"]["attributes"].city == "Shanghai"
    assert context()["customer"]["attributes"] == {}


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("Li Wei", "Li"),
        ("Madonna", "Madonna"),
        ("李伟", "李伟"),
        ("  Anna   Karenina ", "Anna"),
        ("Jean\tValjean", "Jean"),
        ("", ""),
        ("   ", ""),
        (None, ""),
    ],
)
def test_build_context_first_name(name: str | None, first: str) -> None:
    ctx = build_context(
        customer={"name": name}, stats={}, campaign="c", step=2, send_key="s", now=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert ctx["customer"]["first_name"] == first
    assert ctx["campaign"] == {"name": "c"}
    assert ctx["step"] == 2
    assert ctx["send_key"] == "s"


def test_build_context_does_not_mutate_the_customer() -> None:
    customer = {"name": "Li Wei", "attributes": {"a": 1}}
    build_context(customer=customer, stats={}, campaign="c", step=0, send_key="s", now=datetime.now(UTC))
    assert customer == {"name": "Li Wei", "attributes": {"a": 1}}


def test_repo_templates_render_for_the_typical_customer() -> None:
    from campaigns.project.archetypes import TYPICAL_CUSTOMER, TYPICAL_STATS

    root = Path(__file__).resolve().parents[3] / "templates"
    renderer = TemplateRenderer(directory=root)
    context = build_context(customer=TYPICAL_CUSTOMER, stats=TYPICAL_STATS, campaign="win_back", step=0,
                            send_key="0" * 64, now=datetime(2026, 3, 2, 2, 0, tzinfo=UTC))
    rendered = renderer.render("win_back/miss_you", context)
    assert {"subject", "txt"} <= set(rendered)
    assert all(isinstance(text, str) and text for text in rendered.values())


# -- unsubscribe_url and preferences_url (campaigns.sending.bodylinks) ------------------------


def test_templates_get_signed_per_recipient_preference_links(tmp_path: Path, renderer: TemplateRenderer) -> None:
    from campaigns.sending.bodylinks import make_body_links
    from campaigns.sending.tokens import verify_unsubscribe_token

    write(tmp_path, "footer.txt.j2", "Unsubscribe: {{ unsubscribe_url }}\nPreferences: {{ preferences_url }}")
    secret = "link-secret-for-tests"

    def links_of(send_key: str) -> list[str]:
        links = make_body_links(send_key, public_url="https://t.shop.example/", secret=secret)
        ctx = build_context(customer={"id": 1, "external_id": "C-1", "name": "Li"}, stats={}, campaign="demo",
                            step=0, send_key=send_key, now=datetime(2026, 3, 2, tzinfo=UTC), links=links)
        text = renderer.render("footer", ctx)["txt"]
        return [line.split(": ", 1)[1] for line in text.splitlines()]

    bob, carol = links_of("win_back:0:1:once"), links_of("win_back:0:2:once")
    for (unsubscribe, preferences), send_key in ((bob, "win_back:0:1:once"), (carol, "win_back:0:2:once")):
        assert unsubscribe.startswith("https://t.shop.example/u/") and "//u" not in unsubscribe
        token = unsubscribe.rsplit("/", 1)[1]
        # Signed: the preference page's verification gives this message's send key back,
        # and the token shows nothing of it.
        assert verify_unsubscribe_token(token, secret) == send_key
        assert verify_unsubscribe_token(token, "another-secret") is None
        assert "win_back" not in token
        assert preferences == unsubscribe
    assert bob != carol  # per recipient


def test_links_are_empty_without_public_url_or_secret(tmp_path: Path, renderer: TemplateRenderer) -> None:
    from campaigns.sending.bodylinks import make_body_links

    write(tmp_path, "footer.txt.j2", "[{{ unsubscribe_url }}|{{ preferences_url }}]")
    assert renderer.render("footer", context())["txt"] == "[|]"
    for public_url, secret in ((None, "s"), ("https://t.example", None)):
        links = make_body_links("k" * 64, public_url=public_url, secret=secret)
        ctx = build_context(customer={"name": "Li"}, stats={}, campaign="demo", step=0, send_key="k" * 64,
                            now=datetime(2026, 3, 2, tzinfo=UTC), links=links)
        assert renderer.render("footer", ctx)["txt"] == "[|]"
