"""The house's layers, read from the code: no import cycle in ``runbook/``, no import from a
higher layer into a lower one, and no function-local import of ``runbook`` without a comment
saying why. Imports under ``if TYPE_CHECKING:`` are annotations only and do not count.

The layers, bottom up (a package may import only from its own layer or below):

* the ground: ``errors``, ``results``, ``redact``, ``timeouts``, ``wait``, ``config``,
  ``clients``, ``pg``, ``figures`` and the other top-level modules not named below;
* ``sandbox``: the embedded LegacyVideo (never the probes, actions, drills, platforms);
* ``platforms``: where services run (never the probes, actions or drills);
* ``probes``: reads (never the actions or drills);
* ``actions``: changes (may use the probes, never the drills);
* ``drills``: game days and DR drills (use both);
* ``runner``, ``watch``, ``cli``: the top; ``reporting`` (summaries, alerts, metrics, the
  living runbook) formats what the others produce and may be read by any but the sandbox.

Beside the library, shipped in the same package, the pytest side: ``harness`` (the plugin)
and ``steps`` (the step definitions, which use the harness). They may import any of the
library; the library never imports them, nor pytest, pytest-bdd or allure.
"""

from __future__ import annotations

import ast
from pathlib import Path

from runbook import shipped
from tests.conftest import LONGEST_FIRST

PACKAGE = shipped.PACKAGE
#: The pytest side of the package: only these import pytest (and the library never them).
PYTEST_SIDE = frozenset({"harness", "steps"})
#: What only the pytest side imports.
PYTEST_MODULES = frozenset({"pytest", "_pytest", "pytest_bdd", "allure", "allure_commons",
                            "allure_pytest_bdd", "pluggy", "xdist"})
#: What each part must never import.
FORBIDDEN: dict[str, frozenset[str]] = {
    "sandbox": frozenset({"platforms", "probes", "actions", "drills", "reporting", "runner",
                          "watch", "cli"}),
    "platforms": frozenset({"probes", "actions", "drills", "runner", "watch", "cli"}),
    "probes": frozenset({"actions", "drills", "runner", "watch", "cli"}),
    "actions": frozenset({"drills", "runner", "watch", "cli"}),
    "drills": frozenset({"reporting", "watch", "cli"}),
    "harness": frozenset({"steps"}),
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(known: dict[str, Path], *, everything: bool = False
            ) -> list[tuple[str, str, int, bool, bool]]:
    """(importer, imported, line, inside a function, commented) for every runbook import;
    with ``everything``, every other import too (the top-level name imported)."""
    found = []
    for module, path in known.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text)
        typing_only: set[int] = set()
        in_function: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                typing_only.update(id(sub) for sub in ast.walk(node))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                in_function.update(id(sub) for sub in ast.walk(node) if sub is not node)
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            here = lines[node.lineno - 1]
            before = lines[node.lineno - 2] if node.lineno > 1 else ""
            commented = "#" in here or before.strip().startswith("#")
            for name in names:
                target = _resolve(name, known) if name.startswith("runbook") else None
                if everything and not name.startswith("runbook"):
                    target = name.partition(".")[0]
                if target and target != module:
                    found.append((module, target, node.lineno, id(node) in in_function,
                                  commented))
    return found


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else module


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
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


def test_runbook_has_no_import_cycle() -> None:
    edges: dict[str, set[str]] = {}
    for importer, imported, _, _, _ in imports(modules()):
        edges.setdefault(importer, set()).add(imported)
    assert cycles(edges) == []


def test_no_layer_imports_from_a_higher_one() -> None:
    upward = [f"{importer}:{line} imports {imported}"
              for importer, imported, line, _, _ in imports(modules())
              if part(imported) in FORBIDDEN.get(part(importer), frozenset())]
    assert upward == []


def test_function_local_imports_of_runbook_say_why() -> None:
    silent = sorted({f"{importer}:{line} imports {imported}"
                     for importer, imported, line, local, commented in imports(modules())
                     if local and not commented})
    assert silent == []


def test_the_library_never_imports_pytest_nor_the_pytest_side() -> None:
    """Only ``runbook.harness`` and ``runbook.steps`` import pytest (or pytest-bdd, allure);
    the rest of the package runs without it, and never reaches into them."""
    found = sorted({f"{importer}:{line} imports {imported}"
                    for importer, imported, line, _, _ in imports(modules(), everything=True)
                    if part(importer) not in PYTEST_SIDE
                    and (imported in PYTEST_MODULES or part(imported) in PYTEST_SIDE)})
    assert found == []


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    """The checks can fail: a planted cycle and a planted upward import are found."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert part("runbook.sandbox.backups") == "sandbox"
    assert "drills" in FORBIDDEN[part("runbook.sandbox.backups")]
    assert part("runbook.steps.drill") in PYTEST_SIDE and part("runbook.cli") not in PYTEST_SIDE


def test_the_check_sees_a_library_module_importing_pytest(tmp_path: Path) -> None:
    planted = tmp_path / "api.py"
    planted.write_text("import time\n\n\ndef f():\n    from _pytest import fixtures\n")
    found = {imported for _, imported, _, _, _ in imports({"runbook.probes.api": planted},
                                                           everything=True)}
    assert {"time", "_pytest"} <= found and "_pytest" in PYTEST_MODULES


def test_the_modules_handed_out_first_exist() -> None:
    """A renamed module would silently lose its place in ``tests/conftest.LONGEST_FIRST``."""
    tests = Path(__file__).parent
    assert [name for name in LONGEST_FIRST if not (tests / name).is_file()] == []
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
