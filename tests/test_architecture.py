"""The package layout is a one-way flow: the CLI on top, then builders / training / evaluation,
then kg / retrieval / generators, then core. Every import is checked, including those inside
functions, because a lazy import that runs upward is still a dependency that runs upward."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import hybridft

ROOT = Path(hybridft.__file__).parent

# The layers from the top; each package's __init__ docstring says, after "May import:", which
# packages below it it uses (the CLI: "every package").
LAYERS = [{"cli"}, {"builders", "training", "evaluation"}, {"kg", "retrieval", "generators"}, {"core"}]


def declared_imports(package: str) -> set[str]:
    """The packages that ``hybridft/<package>/__init__.py`` says it may import."""
    docstring = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text(encoding="utf-8"))) or ""
    assert "May import:" in docstring, f"hybridft/{package}/__init__.py: say what the package may import"
    declaration = docstring.split("May import:", 1)[1].split("\n\n", 1)[0]
    if "every package" in declaration:
        return {p for layer in LAYERS for p in layer} - {package}
    return set(re.findall(r"hybridft\.(\w+)", declaration))


TOP_LEVEL = {"__init__", "__main__", "data_recipes"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py")) if "data_recipes" not in p.parts}


def imports_of(path: Path, known: set[str], module: str | None = None) -> set[str]:
    """The hybridft modules ``path`` imports anywhere in its body. ``from P import name`` counts
    as an import of P.name when that is a module, else of P; a relative import (``from ..training
    import run``) counts as the module it names (ruff's TID252 refuses them anyway)."""
    found: set[str] = set()
    package = (module or module_name(path)).split(".")
    if path.name != "__init__.py":
        package.pop()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("hybridft"))
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if not module.startswith("hybridft"):
                continue
            for alias in node.names:
                child = f"{module}.{alias.name}"
                found.add(child if child in known else module)
    return found


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    probe = ROOT / "kg" / "graph.py"
    source = "def f():\n    from ..training import run\n    from . import batch\n    from .rows import x\n"
    fake = tmp_path / "graph.py"
    fake.write_text(source)
    known = set(modules())
    assert module_name(probe) == "hybridft.kg.graph"
    found = imports_of(fake, known, module="hybridft.kg.graph")
    assert found == {"hybridft.training.run", "hybridft.kg.batch", "hybridft.kg.rows"}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, known) - {name} for name, path in mods.items()}


def test_packages_declare_imports_only_from_layers_below():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name != "data_recipes"}
    assert packages == {p for layer in LAYERS for p in layer}
    for depth, layer in enumerate(LAYERS):
        below = {p for lower in LAYERS[depth + 1 :] for p in lower}
        for package in layer:
            assert declared_imports(package) <= below, f"{package} declares an import that is not below it"


def test_no_module_sits_at_the_top_beside_the_packages():
    loose = {p.stem for p in ROOT.glob("*.py")} - TOP_LEVEL
    assert not loose, f"modules outside a package: {sorted(loose)}"


def test_imports_only_run_down_the_layers():
    wrong = []
    for module, targets in graph().items():
        source = package_of(module)
        if source in TOP_LEVEL:
            continue
        for target in targets:
            destination = package_of(target)
            allowed = declared_imports(source)
            if destination not in (source, "__init__") and destination not in allowed:
                wrong.append(f"{module} imports {target} ({source} may import {sorted(allowed) or 'nothing'})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    edges = graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("limit", [500])
def test_modules_stay_small_or_say_why(limit):
    long = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > limit and "Why this module is long:" not in text[:3000]:
            long.append(f"{name}: {lines} lines")
    assert not long, "split these modules or say at their top why not:\n" + "\n".join(long)
