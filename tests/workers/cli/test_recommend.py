"""``nurture recommend refresh`` and ``nurture recommend evaluate`` through the Typer app,
on a throwaway SQLite project holding issue 17's planted pattern (times pinned): the
summaries in text and JSON, and mistakes ending in a message, not a traceback."""

from __future__ import annotations

import json

from tests.campaigns.recommendations.shop import Shop, planted
from tests.workers.cli.win_back import Project, assert_no_crash, flat, invoke


def recommending(project: Project) -> Project:
    with project.config.open("a", encoding="utf-8") as config:
        config.write("\n[recommendations]\nmin_support = 3\ntop_n = 5\n")
    return project


def test_refresh_summarises_what_it_wrote(project, engine):
    recommending(project)
    shop = Shop(engine)
    planted(shop)
    result = invoke("recommend", "refresh", "-c", project.config, "--now", "2026-03-11T10:00:00+00:00", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["associations"], data["customers"], data["buyers"]) == (1, 29, 29)
    assert data["by_reason"] == {"co_purchase": 3, "category": 18, "popular": 40}
    assert set(data["seconds"]) == {"purchases", "associations", "affinity", "candidates", "ranking", "replace"}
    assert shop.recommended("x1")[0] == ("B", "co_purchase", "A")

    text = flat(invoke("recommend", "refresh", "-c", project.config, "--now", "2026-03-11T10:00:00").output)
    assert "associations 1 (support >= 3, lift > 1.5)" in text and "customers with recommendations 29" in text
    assert "co_purchase 3" in text and "popular 40" in text


def test_evaluate_prints_the_model_beside_the_baseline(project, engine):
    recommending(project)
    shop = Shop(engine)
    planted(shop)
    shop.order("x1", 12, "B")
    shop.order("s1", 12, "A")
    as_of = ("--as-of", "2026-03-12")
    data = json.loads(invoke("recommend", "evaluate", "-c", project.config, *as_of, "--k", "1", "--json").output)
    assert (data["customers"], data["test_items"], data["catalogue"]) == (2, 2, 6)
    # x1's first is B (a hit), s1's is A, the best seller of their channel they lack (a hit).
    assert data["model"]["1"]["hit_rate"] == 1.0
    # The baseline gives x1 the overall best seller it lacks first: S2, a miss.
    assert data["baseline"]["1"]["hit_rate"] == 0.5

    text = flat(invoke("recommend", "evaluate", "-c", project.config, *as_of, "--horizon", "30d").output)
    assert "tested on 2 customers who bought in the next 30d" in text
    assert "3 recommendations" in text and "10 popularity baseline" in text


def test_mistakes_end_in_a_message(project):
    recommending(project)
    for args, message in (
        (("--as-of", "yesterday"), "is not an ISO 8601 time"),
        (("--as-of", "2026-03-12", "--k", "0,3"), "each k between 1 and 100"),
        (("--as-of", "2026-03-12", "--horizon", "soon"), "invalid duration"),
        (("--as-of", "2026-03-12", "--horizon", "0d"), "longer than 0"),
    ):
        result = invoke("recommend", "evaluate", "-c", project.config, *args)
        assert_no_crash(result)
        assert result.exit_code == 2 and message in flat(result.output), result.output
    with project.config.open("a", encoding="utf-8") as config:
        config.write('exclude_bought = "repurchase"\n')
    result = invoke("recommend", "refresh", "-c", project.config)
    assert_no_crash(result)
    assert result.exit_code == 1 and "recommendations" in result.output and "needs repurchase_after" in result.output
