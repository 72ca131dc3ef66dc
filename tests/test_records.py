"""One record type, read from the code: only the bases in ``runbook/results.py`` define a
record's ``ok``, ``elapsed_s`` or ``evidence`` (every other record derives them, computing
its ``problems`` where its verdict is its own), and no step passes a ``lambda`` as
``check=`` (a verdict is a named property of the record)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from datetime import UTC, datetime
from pathlib import Path

import runbook
from runbook.results import Activity, ProbeResult, Record, Timing

#: The repository's root (the source checkout these tests run in).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The derived members only the bases may define.
DERIVED = frozenset({"ok", "elapsed_s", "evidence"})
#: Where the bases live.
BASES = Path("runbook/results.py")
#: Classes that are not probe or action results and keep their own (each docstring says why).
SEPARATE = {
    ("runbook/drills/record.py", "Phase"),  # the signed drill record's own JSON format
}
#: The pytest side of the package: it holds no records (``harness.evidence.Evident`` is the
#: protocol a record meets, not one).
PYTEST_SIDE = ("runbook/harness/", "runbook/steps/")


def _defined(body: list[ast.stmt]) -> set[str]:
    """Names a class body defines as a method or a property."""
    return {node.name for node in body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def definitions(root: Path) -> list[tuple[str, str, str]]:
    """``(file, class, member)`` for every class under ``root`` defining a derived member
    (``file`` relative to ``root``'s parent)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        relative = str(path.relative_to(root.parent))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                found += [(relative, node.name, member)
                          for member in sorted(_defined(node.body) & DERIVED)]
    return found


def check_lambdas(root: Path) -> list[str]:
    """``file:line`` of every call passing a ``lambda`` as ``check=``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [f"{path.relative_to(root.parent)}:{node.lineno}"
                  for node in ast.walk(tree) if isinstance(node, ast.Call)
                  for keyword in node.keywords
                  if keyword.arg == "check" and isinstance(keyword.value, ast.Lambda)]
    return found


def test_only_the_bases_define_ok_elapsed_and_evidence() -> None:
    outside = [f"{file}: {cls}.{member}" for file, cls, member
               in definitions(PROJECT_ROOT / "runbook")
               if Path(file) != BASES and (file, cls) not in SEPARATE
               and not file.startswith(PYTEST_SIDE)]
    assert not outside, (
        "records define ok/elapsed_s/evidence themselves; derive them from"
        f" runbook.results.Record/Result/TimedResult instead: {outside}")
    in_bases = [(cls, member) for file, cls, member in definitions(PROJECT_ROOT / "runbook")
                if Path(file) == BASES]
    members = [member for _, member in in_bases]
    assert sorted(members) == sorted(set(members)), f"defined twice in the bases: {in_bases}"


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def test_no_record_holds_its_own_verdict_timing_or_evidence() -> None:
    """No record derives the members as a field either (an ``ok: bool`` stored beside the
    base's ``ok``): a record's verdict is its ``problems``."""
    for info in pkgutil.walk_packages(runbook.__path__, "runbook."):
        importlib.import_module(info.name)
    records = [c for c in _subclasses(Record) if c.__module__ != "runbook.results"]
    assert len(records) > 30, records
    held = [f"{c.__module__}.{c.__qualname__}.{name}" for c in records for name in DERIVED
            if name in vars(c) or name in getattr(c, "__dataclass_fields__", {})]
    assert not held, held


def test_no_verdict_lambda_in_steps() -> None:
    found = check_lambdas(PROJECT_ROOT / "runbook" / "steps")
    assert not found, f"verdict lambdas in steps (make them properties of the record): {found}"


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The readers above see a hand-written ``ok`` and a ``check=lambda``."""
    (tmp_path / "mine.py").write_text(
        "class Mine:\n    @property\n    def ok(self):\n        return True\n"
        "    def elapsed_s(self):\n        return 0.0\n"
        "def _(record):\n    require_record(record, 'x', 'y', check=lambda r: r.ok)\n",
        encoding="utf-8")
    assert {(c, m) for _, c, m in definitions(tmp_path)} == {("Mine", "ok"),
                                                             ("Mine", "elapsed_s")}
    assert check_lambdas(tmp_path) == [f"{tmp_path.name}/mine.py:8"]


def test_evidence_is_the_fields_serialised() -> None:
    """The base's one ``evidence()``: fields as JSON-ready data, the ``timing`` as its start,
    end and seconds, nested records as their evidence, the verdict and its problems."""
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    activity = Activity("restart api", ("railway", "restart"), Timing(now, now, 1.23456),
                        output="x" * 5000, error="exit 1")
    result = ProbeResult("api", "health", "unit", Timing(now, now, 0.5), problem="down",
                         observed={"status": 503, "seen": ("a", "b")})
    assert not activity.ok and activity.problems == ("exit 1",)
    shown = activity.evidence()
    assert shown["command"] == ["railway", "restart"] and shown["ok"] is False
    assert shown["started_at"] == now.isoformat() and shown["elapsed_s"] == 1.235
    assert len(shown["output"]) == 4000 and shown["error"] == "exit 1"
    evidence = result.evidence()
    assert evidence["ok"] is False and evidence["problem"] == "down"
    assert evidence["observed"] == {"status": 503, "seen": ["a", "b"]}
    assert result.elapsed_s == 0.5
