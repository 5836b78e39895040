"""The code's shape (issue 26): no import cycle between the product's modules, and no
module past the size a reader can hold."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "scalingstudy": ROOT / "operator",
    "scalingstudy_trainer": ROOT / "trainer",
    "scalingstudy_sdk": ROOT / "sdk",
}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for package, parent in PACKAGES.items():
        for path in (parent / package).rglob("*.py"):
            name = ".".join(path.relative_to(parent).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every product module ``path`` imports, at any depth of the file (a function-level
    import is a dependency too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in modules}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_itself_through_others() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert _cycles(graph) == []
    # The check finds a cycle where there is one.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_is_longer_than_a_reader_can_hold() -> None:
    lengths = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {n: k for n, k in lengths.items() if k > MAX_LINES} == {}


def test_the_wire_contract_a_trainer_needs_stands_alone() -> None:
    """A trainer imports the contract for the names, exit codes and its result; that must
    not drag in the study's plan or spec (the executor's half is `trial_env`), and the SDK
    that holds the names needs nothing beyond the standard library."""
    modules = _modules()
    assert _imports(modules["scalingstudy.contract"], modules) == {"scalingstudy_sdk.contract"}
    assert "scalingstudy.spec" in _imports(modules["scalingstudy.trial_env"], modules)
    for name, path in modules.items():
        if not name.startswith("scalingstudy_sdk") or ".integrations." in name:
            continue  # the callbacks import their (optional) training library
        tree = ast.parse(path.read_text())
        roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                 for a in n.names}  # fmt: skip
        roots |= {n.module.split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}  # fmt: skip
        outside = roots - set(sys.stdlib_module_names) - {"scalingstudy_sdk", "__future__"}
        assert outside == set(), (name, outside)
