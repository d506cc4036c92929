"""The package's import structure: one-way, by stage (docs/architecture.md draws it).

Each top-level part of ``regiondial_bench`` sits on a floor; a module may import modules of its own
part or of a lower floor, never of its own floor's other parts or of a higher one, and no set of
modules imports itself in a circle. A new top-level module must be given a floor here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import regiondial_bench

PACKAGE = Path(regiondial_bench.__file__).parent
FLOORS = {
    # ground floor: typed artefacts, the user cache, prompt texts, answer grammars
    "schema": 0, "cache": 0, "prompts": 0, "grammar": 0,
    "geometry": 1,
    "protocol": 2, "metrics": 2, "frames": 2,
    "bench": 3, "adapters": 3,       # where benches come from; how models are asked
    "run": 4, "training": 4,        # running a bench; training on one
    "api": 5,                        # the public verbs
    "results": 6,                    # reading run folders: report, plots, compare, view
    "publish": 7,                    # submissions and the leaderboard
    "cli": 8,
    "testing": 9, "_moved": 9, "__init__": 10,
}


def _imports() -> list[tuple[str, str, int]]:
    """``(importer, imported, line)`` for every import of a package module by a package module,
    lazy imports inside functions included."""
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                # "from . import builtin" imports the submodule, not the package itself
                targets = [f"{module}.{alias.name}" if (PACKAGE.parent / f"{module}.{alias.name}".replace(".", "/")
                                                         ).with_suffix(".py").is_file() else module
                           for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            edges += [(name, t, node.lineno) for t in set(targets) if t.startswith("regiondial_bench.") and t != name]
    return edges


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_part_has_a_floor():
    parts = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert parts - {"__init__"} <= set(FLOORS), f"give these a floor in FLOORS: {sorted(parts - set(FLOORS))}"


def test_no_import_runs_up_or_sideways():
    wrong = [f"{a} imports {b} (line {line})" for a, b, line in _imports()
             if _part(a) != _part(b) and FLOORS[_part(a)] <= FLOORS[_part(b)]]
    assert not wrong, "imports against the flow:\n" + "\n".join(wrong)


def test_no_import_circle():
    graph: dict[str, set[str]] = {}
    for a, b, _ in _imports():
        graph.setdefault(a, set()).add(b)
    # iterative depth-first search for a back edge
    state: dict[str, int] = {}
    for start in graph:
        if state.get(start):
            continue
        stack = [(start, iter(graph.get(start, ())))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                circle = path[path.index(child):] + [child]
                raise AssertionError("import circle: " + " -> ".join(circle))
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(graph.get(child, ()))))
                path.append(child)


def test_the_checks_see_lazy_imports():
    # a check that missed imports inside functions would pass vacuously: the API's lazy imports are seen
    lazy = [(a, b) for a, b, _ in _imports() if a == "regiondial_bench.api" and b == "regiondial_bench.run.shards"]
    assert lazy


def test_old_module_paths_still_import_for_one_release():
    import importlib
    import subprocess
    import sys

    # in a fresh interpreter, so that the old name is really looked up (not found in sys.modules)
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import regiondial_bench.runner as old\n"
        "    from regiondial_bench.hub import fetch_released\n"
        "    from regiondial_bench.sources.refer import read_refer\n"
        "import regiondial_bench.run.runner as new\n"
        "assert old is new, (old, new)\n"
        "assert fetch_released.__module__ == 'regiondial_bench.bench.hub'\n"
        "assert any('moved to regiondial_bench.run.runner' in str(w.message) for w in caught), caught\n"
        "assert all(issubclass(w.category, DeprecationWarning) for w in caught)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # names that never existed are still errors
    try:
        importlib.import_module("regiondial_bench.no_such_module")
    except ModuleNotFoundError:
        pass
    else:
        raise AssertionError("an unknown module imported")
