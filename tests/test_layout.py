"""The package's import graph, read from the source (nothing is imported): three floors, imports
only go down or sideways, and no module reaches itself through imports.

Floors: 1 the library (src/gtpo/*.py: algorithm, config, rules, trainer, checkpoints, reward
checks, jsonl), 2 the tasks (src/gtpo/tasks/), 3 the application (src/gtpo/app/). Every import
counts, also one inside a function or under TYPE_CHECKING. `gtpo/__init__.py` (the library's face:
GTPOConfig, GTPOTrainer) is on floor 1; `python -m gtpo` (gtpo/__main__.py) starts the
application, on floor 3.
"""

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SOURCE / "gtpo"
FLOOR_NAMES = {1: "library", 2: "tasks", 3: "application"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def floor(module: str) -> int:
    if module.startswith(("gtpo.app", "gtpo.__main__")):
        return 3
    if module.startswith("gtpo.tasks"):
        return 2
    return 1


def _resolve(name: str) -> str | None:
    """The package module an imported name lives in (gtpo.app.cli.main -> gtpo.app.cli)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> set[str]:
    """Modules of the package that `module` imports, anywhere in its source."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        found |= {target for name in names if (target := _resolve(name)) and target != module}
    # `from gtpo.app import cli` also names the package gtpo.app; keep the deepest module only
    return {t for t in found if not any(other.startswith(t + ".") for other in found)}


GRAPH = {module: imports(module) for module in MODULES}


def test_the_three_floors_exist():
    assert {floor(m) for m in MODULES} == {1, 2, 3}
    assert {"gtpo.trainer", "gtpo.algorithm", "gtpo.tasks.rewards", "gtpo.app.cli"} <= set(MODULES)


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    """Each import from a floor to a higher one, as "a (floor) -> b (floor)"."""
    return [
        f"{module} ({FLOOR_NAMES[floor(module)]}) -> {target} ({FLOOR_NAMES[floor(target)]})"
        for module in sorted(graph)
        for target in sorted(graph[module])
        if floor(target) > floor(module)
    ]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A chain of imports that comes back to its start (a -> b -> a), or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for target in sorted(graph.get(module, ())):
            cycle = visit(target, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    return next((cycle for module in sorted(graph) if (cycle := visit(module, []))), None)


def test_no_import_runs_up_a_floor():
    assert upward_edges(GRAPH) == [], "imports that run up a floor"


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_checks_name_the_edges_they_find():
    """The two checks on the graph main had before the layout (report <-> pipeline, reward_checks ->
    rewards)."""
    old = {
        "gtpo.app.pipeline": {"gtpo.app.report", "gtpo.app.recipe"},
        "gtpo.app.report": {"gtpo.app.pipeline"},
        "gtpo.reward_checks": {"gtpo.tasks.rewards"},
    }
    assert find_cycle(old) == ["gtpo.app.pipeline", "gtpo.app.report", "gtpo.app.pipeline"]
    assert upward_edges(old) == ["gtpo.reward_checks (library) -> gtpo.tasks.rewards (tasks)"]


def test_the_graph_reader_sees_lazy_imports():
    """The walk itself: an import inside a function is an edge."""
    assert "gtpo.trainer" in GRAPH["gtpo"]  # imported inside __getattr__
    assert "gtpo.app.report" in GRAPH["gtpo.app.cli"]  # imported inside main()
    assert GRAPH["gtpo.algorithm"] == set()  # pure PyTorch


def _defined(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
    return names


def test_no_module_stands_in_for_another():
    """No aliases: no module puts itself (or another) in sys.modules, and each module's __all__
    lists names it defines, not names it imports (the package's face, gtpo/__init__.py, aside)."""
    for module, path in MODULES.items():
        source = path.read_text()
        assert "sys.modules[" not in source, module
        tree = ast.parse(source)
        exported = next(
            (node.value for node in tree.body if isinstance(node, ast.Assign)
             and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)),
            None,
        )  # fmt: skip
        if exported is not None and module != "gtpo":
            names = {element.value for element in exported.elts}
            assert names <= _defined(tree), f"{module}.__all__ re-exports {sorted(names - _defined(tree))}"
