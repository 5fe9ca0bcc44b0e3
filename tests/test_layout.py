"""The layout of docs/architecture.md, beyond what import-linter's contracts check
(``[tool.importlinter]`` in pyproject.toml, run by ``make test``): no import circle between
modules of the product, and no private name used across modules.

Imports inside functions count: a circle held together by a deferred import is still a
circle (two were, before issue #13)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("campaigns", "workers")


def product_files() -> list[Path]:
    """Every Python file of the product (not the migrations' version scripts, which
    Alembic loads by path and which import nothing of ours)."""
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
                  if "versions" not in path.parts)


def module_name(path: Path) -> str:
    """``campaigns/sending/ledger.py`` -> ``campaigns.sending.ledger`` (a package is its ``__init__``)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_of_the_product_is_in_an_import_circle():
    graph = grimp.build_graph(*PACKAGES)
    edges = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    sorter = graphlib.TopologicalSorter(edges)
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        cycle = error.args[1]
        pytest.fail("import circle: " + " -> ".join(cycle))


def private_uses(source: str, *, module: str, where: str) -> list[str]:
    """Each private name of another module that ``source`` (the text of ``module``) uses:
    ``from m import _x``, or ``m._x`` where ``m`` is a module of the product imported there."""
    tree = ast.parse(source, filename=where)
    bound: dict[str, str] = {}  # local name -> what of the product it is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for alias in node.names:
                if alias.name.startswith("_") and node.module != module:
                    found.append(f"{where}:{node.lineno} imports {node.module}.{alias.name}")
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    bound[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{where}:{node.lineno} uses {bound[node.value.id]}.{node.attr}")
    return found


def test_no_private_name_is_used_across_modules():
    found = [use for path in product_files()
             for use in private_uses(path.read_text(), module=module_name(path), where=str(path.relative_to(ROOT)))]
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_the_private_name_check_sees_both_spellings():
    source = "from campaigns.store import models\nfrom campaigns.store.db import _engine\nmodels._private\n"
    found = private_uses(source, module="campaigns.probe", where="probe.py")
    assert found == ["probe.py:2 imports campaigns.store.db._engine", "probe.py:3 uses campaigns.store.models._private"]
    # A module's own private names, and dunders, are its business.
    assert private_uses("from campaigns.probe import _x\nimport campaigns\ncampaigns.__name__\n",
                        module="campaigns.probe", where="probe.py") == []
