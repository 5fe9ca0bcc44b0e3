"""The named ``[segments]`` of a project, and the check of every audience expression
its config holds (segments, ``audience.where``, steps' ``when``, ``audience.segment``
and ``trigger.segment_entered``), with the names triggers take from the same vocabulary
(``trigger.tier_entered``, and ``points_expiring``, which needs ``[loyalty]`` on).

Segments may use segments (``segment("lapsed_vips")``); the check refuses cycles and
chains that would grow too large or too deep once inlined, the way
:func:`~campaigns.audience.compiler.compile_expression` inlines them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from typing import Any

from campaigns.audience.language import (
    MAX_DEPTH,
    MAX_EXPANDED_NODES,
    MAX_SEGMENT_NESTING,
    Expression,
    ExpressionError,
    calls_segment,
    expression_tiers,
    known_hint,
    loyalty_off,
    tier_hint,
)
from campaigns.audience.parser import parse_expression, segment_references
from campaigns.config.loyalty import LoyaltyConfig
from campaigns.config.vocabulary import DEFAULT_RFM_RULES


def segment_expressions(config: Any) -> dict[str, Expression]:
    """The parsed ``[segments]`` of an :class:`~campaigns.config.schema.AppConfig`."""
    names = list(config.segments)
    tiers = expression_tiers(config.loyalty)
    return {
        name: parse_expression(text, rfm_names=config.rfm.names, segment_names=names, tiers=tiers)
        for name, text in config.segments.items()
    }


def _raw_rfm_names(raw: Mapping[str, Any]) -> list[str]:
    rfm = raw.get("rfm")
    if isinstance(rfm, Mapping) and isinstance(rfm.get("segments"), list):
        return [rule["name"] for rule in rfm["segments"]
                if isinstance(rule, Mapping) and isinstance(rule.get("name"), str)]
    return [rule.name for rule in DEFAULT_RFM_RULES]


def _raw_tiers(raw: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The tier names of the raw ``[loyalty]`` section, None while it is off. A mistyped
    ``enabled`` counts as on: the schema reports it, and every loyalty name in the file
    would otherwise be reported as well."""
    loyalty = raw.get("loyalty")
    if not isinstance(loyalty, Mapping) or loyalty.get("enabled", False) is False:
        return None
    tiers = loyalty.get("tiers")
    if isinstance(tiers, list):
        return tuple(tier["name"] for tier in tiers if isinstance(tier, Mapping) and isinstance(tier.get("name"), str))
    return tuple(tier.name for tier in LoyaltyConfig().tiers)


def _as_raw(config: Any) -> Mapping[str, Any]:
    if isinstance(config, Mapping):
        return config
    return {
        "rfm": {"segments": [{"name": name} for name in config.rfm.names]},
        "segments": dict(config.segments),
        "loyalty": {"enabled": config.loyalty.enabled, "tiers": [{"name": t.name} for t in config.loyalty.tiers]},
        "campaigns": [
            {
                "audience": {"where": c.audience.where, "segment": c.audience.segment},
                "trigger": {key: getattr(c.trigger, key) for key in ("segment_entered", "tier_entered",
                                                                      "points_expiring")
                            if hasattr(c.trigger, key)},
            }
            for c in config.campaigns
        ],
    }


def validate_segments(config: Any) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Problems with audience expressions as ``(key_path, message)``, like the config cross-checks.

    ``config`` is the raw TOML dict (garbage types are skipped: the schema reports them)
    or an ``AppConfig``. Checks every ``[segments]`` entry (and cycles among them), each
    campaign's ``audience.where`` and ``audience.segment``, ``trigger.segment_entered``
    and ``trigger.tier_entered``, and that loyalty names and triggers have ``[loyalty]`` on.
    """
    raw = _as_raw(config)
    rfm_names = _raw_rfm_names(raw)
    tiers = _raw_tiers(raw)
    segments = raw.get("segments") if isinstance(raw.get("segments"), Mapping) else {}
    names = [name for name in segments if isinstance(name, str)]
    parsed: dict[str, Expression] = {}
    for name in names:
        text = segments[name]
        if not isinstance(text, str):
            continue
        try:
            parsed[name] = parse_expression(text, rfm_names=rfm_names, segment_names=names, tiers=tiers)
        except ExpressionError as exc:
            yield ("segments", name), str(exc)
    yield from _cycle_issues(parsed)
    memo: dict[str, tuple[int, int, int]] = {}
    for name, expr in parsed.items():
        problem = _expansion_problem(expr, parsed, memo)
        if problem:
            yield ("segments", name), problem

    campaigns = raw.get("campaigns") if isinstance(raw.get("campaigns"), list) else []
    for index, campaign in enumerate(campaigns):
        if not isinstance(campaign, Mapping):
            continue
        audience = campaign.get("audience")
        if isinstance(audience, Mapping):
            where = audience.get("where")
            if isinstance(where, str):
                try:
                    expr = parse_expression(where, rfm_names=rfm_names, segment_names=names, tiers=tiers)
                except ExpressionError as exc:
                    yield ("campaigns", index, "audience", "where"), str(exc)
                else:
                    problem = _expansion_problem(expr, parsed, memo)
                    if problem:
                        yield ("campaigns", index, "audience", "where"), problem
            segment = audience.get("segment")
            if isinstance(segment, str) and segment not in names:
                yield (("campaigns", index, "audience", "segment"),
                       f"unknown segment {segment!r} ({known_hint(segment, names, 'defined in [segments]')})")
        steps = campaign.get("steps") if isinstance(campaign.get("steps"), list) else []
        for step_index, step in enumerate(steps):
            when = step.get("when") if isinstance(step, Mapping) else None
            if isinstance(when, str):
                try:
                    expr = parse_expression(when, rfm_names=rfm_names, segment_names=names, tiers=tiers)
                except ExpressionError as exc:
                    yield ("campaigns", index, "steps", step_index, "when"), str(exc)
                else:
                    problem = _expansion_problem(expr, parsed, memo)
                    if problem:
                        yield ("campaigns", index, "steps", step_index, "when"), problem
        trigger = campaign.get("trigger")
        if isinstance(trigger, Mapping):
            entered = trigger.get("segment_entered")
            if isinstance(entered, str) and entered not in rfm_names:
                yield (("campaigns", index, "trigger", "segment_entered"),
                       f"unknown RFM segment {entered!r} ({known_hint(entered, rfm_names)})")
            yield from _loyalty_trigger_issues(trigger, index, tiers)


def _loyalty_trigger_issues(trigger: Mapping[str, Any], index: int,
                            tiers: tuple[str, ...] | None) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """``tier_entered`` names a tier of ``[[loyalty.tiers]]``; both loyalty triggers need
    the programme on."""
    for key in ("tier_entered", "points_expiring"):
        if key in trigger and trigger[key] is not None and tiers is None:
            message, hint = loyalty_off(key)
            yield ("campaigns", index, "trigger", key), f"{message} ({hint})"
    entered = trigger.get("tier_entered")
    if isinstance(entered, str) and tiers is not None and entered not in tiers:
        yield ("campaigns", index, "trigger", "tier_entered"), f"unknown tier {entered!r} ({tier_hint(entered, tiers)})"


def _expansion_problem(expr: Expression, parsed: Mapping[str, Expression],
                       memo: dict[str, tuple[int, int, int]]) -> str | None:
    """Why ``expr`` is too big or too deep once its ``segment("...")`` calls are inlined
    as :func:`compile_expression` inlines them (None if it is not)."""
    size, depth, nesting = _expansion(expr, parsed, memo, set())
    if nesting > MAX_SEGMENT_NESTING:
        return (f"segments use segments more than {MAX_SEGMENT_NESTING} levels deep here "
                "(segment(\"a\") using segment(\"b\") using ...)")
    if size > MAX_EXPANDED_NODES:
        return (f"expression is too large once the segments it uses are inlined ({size} syntax nodes, "
                f"more than {MAX_EXPANDED_NODES}): segments that use other segments several times "
                "grow exponentially; write the condition once")
    if depth > MAX_DEPTH:
        return (f"expression is nested {depth} levels deep once the segments it uses are inlined "
                f"(more than {MAX_DEPTH})")
    return None


def _expansion(expr: Expression, parsed: Mapping[str, Expression], memo: dict[str, tuple[int, int, int]],
               visiting: set[str]) -> tuple[int, int, int]:
    """(syntax nodes, depth, segment nesting) of ``expr`` with every segment it calls
    inlined; memoised per segment, so the work is linear even when the inlined size is
    exponential. Calls that close a cycle count as themselves (cycles are reported
    separately); the search stops below MAX_SEGMENT_NESTING."""
    size = depth = nesting = 0
    pending: list[tuple[ast.AST, int]] = [(expr.tree.body, 1)]
    while pending:
        node, level = pending.pop()
        size += 1
        depth = max(depth, level)
        if calls_segment(node) and node.args[0].value in parsed and node.args[0].value not in visiting:  # type: ignore[attr-defined]
            name = node.args[0].value
            if name not in memo:
                if len(visiting) > MAX_SEGMENT_NESTING:
                    return size, depth, len(visiting) + 1  # too deep already: no need to look further
                visiting.add(name)
                memo[name] = _expansion(parsed[name], parsed, memo, visiting)
                visiting.discard(name)
            inner_size, inner_depth, inner_nesting = memo[name]
            size += inner_size
            depth = max(depth, level + inner_depth - 1)
            nesting = max(nesting, inner_nesting + 1)
            continue
        pending.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return size, depth, nesting


def _cycle_issues(parsed: Mapping[str, Expression]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    graph = {name: sorted(segment_references(expr) & set(parsed)) for name, expr in parsed.items()}
    reported: set[str] = set()
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(name: str, path: list[str]) -> Iterator[tuple[tuple[str | int, ...], str]]:
        state[name] = 1
        for child in graph[name]:
            if state.get(child) == 1:
                cycle = path[path.index(child):] + [child]
                if child not in reported:
                    reported.add(child)
                    yield ("segments", child), f"segment {child!r} refers to itself ({' -> '.join(cycle)})"
            elif child not in state:
                yield from visit(child, [*path, child])
        state[name] = 2

    for name in graph:
        if name not in state:
            yield from visit(name, [name])
