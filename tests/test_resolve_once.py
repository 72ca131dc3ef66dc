"""The target is resolved once: the ``runbook`` command chooses it (``RunSpec.choose``) and
hands the run a typed description in its environment; the harness, the restoration guard
and a drill's detection rounds read that back and never choose again. The root
``conftest.py`` is wiring only."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from runbook import runner
from runbook.checks import require_record
from runbook.config import Environment
from runbook.drills.context import context_for
from runbook.errors import CheckFailed, ConfigError, SafetyGateError
from runbook.targets import RUN_VARIABLE, RunSpec

#: The repository's root (the source checkout these tests run in).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SOURCES = [*sorted((PROJECT_ROOT / "runbook").rglob("*.py")), PROJECT_ROOT / "conftest.py"]
STAGING = {"API_URL": "http://127.0.0.1:9", "DATABASE_URL":
           "postgresql://app:s3cret-pass@127.0.0.1:9/app", "RUNBOOK_ENVIRONMENT": "staging"}


def _calls(name: str) -> list[str]:
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called == name:
                    found.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    return found


def test_the_target_is_chosen_in_one_place() -> None:
    assert _calls("choose_target") == [
        f"runbook/targets.py:{_line('runbook/targets.py', 'choose_target(name')}"]
    chosen = _calls("choose")
    assert all(where.startswith(("runbook/cli.py", "runbook/harness/gates.py"))
               for where in chosen), (
        f"RunSpec.choose outside the command and a bare pytest run: {chosen}")


def _line(relative: str, text: str) -> int:
    lines = (PROJECT_ROOT / relative).read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


def test_the_root_conftest_is_wiring_only() -> None:
    tree = ast.parse((PROJECT_ROOT / "conftest.py").read_text(encoding="utf-8"))
    kinds = {type(node).__name__ for node in tree.body}
    assert kinds <= {"Expr", "Assign"}, f"conftest.py holds more than wiring: {kinds}"
    assigned = [t.id for node in tree.body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)]
    assert assigned == ["pytest_plugins"]


def test_the_description_round_trips_through_the_environment(tmp_path: Path) -> None:
    run = RunSpec.choose("env", home=tmp_path, environ=STAGING, allow_drills="staging")
    assert run.environment is Environment.STAGING
    environ = run.to_environ()
    assert list(environ) == [RUN_VARIABLE]
    again = RunSpec.from_environ(environ)
    assert again == run
    assert again is not None and again.target().describe() == run.target().describe()


def test_the_pytest_command_line_carries_no_target_and_no_secret(tmp_path: Path) -> None:
    run = RunSpec.choose("env", home=tmp_path, environ=STAGING)
    command = runner.Selection(marks="synthetic", reports=tmp_path).command()
    assert "--target" not in command and "--allow-drills" not in command
    assert not any("s3cret-pass" in part for part in command)
    assert "s3cret-pass" in run.to_environ()[RUN_VARIABLE]  # environment only


def test_a_malformed_description_is_one_line_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as raised:
        RunSpec.from_environ({RUN_VARIABLE: json.dumps({"kind": "moon"})})
    message = str(raised.value)
    assert RUN_VARIABLE in message and "\n" not in message


def test_a_drill_context_refuses_production_from_the_description(tmp_path: Path) -> None:
    production = RunSpec.choose("env", home=tmp_path,
                                environ={**STAGING, "RUNBOOK_ENVIRONMENT": "production"})
    with pytest.raises(SafetyGateError):
        context_for(production)


def test_a_run_handed_its_target_refuses_target_options_too(tmp_path: Path) -> None:
    """A bare ``--target`` beside a resolved run would make two answers: one line, exit 2."""
    run = RunSpec.choose("env", home=tmp_path, environ=STAGING)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(runner.SCENARIOS), "-p", "no:randomly", "-q",
         "-m", "synthetic", "--target", "sandbox", "--runbook-reports", str(tmp_path / "r"),
         "-p", "no:cacheprovider", "--collect-only"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
        env={**runner.environment("x", tmp_path), **run.to_environ()})
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"--target given to a run whose target is resolved already ({RUN_VARIABLE})" in (
        done.stdout + done.stderr)
    assert "s3cret-pass" not in done.stdout + done.stderr


def test_a_failing_step_names_its_target_itself(tmp_path: Path) -> None:
    """No failure is raised without a target for the harness to patch in afterwards."""
    with pytest.raises(ValueError, match="names no target"):
        CheckFailed("database", "", "seen", "expected")
    target = RunSpec.choose("env", home=tmp_path, environ=STAGING).target()

    @dataclass(frozen=True)
    class Failed:
        ok: bool = False
        problems: tuple[str, ...] = ("the scratch database was not dropped",)

    with pytest.raises(CheckFailed) as raised:
        require_record(target, Failed(), "database", "the scratch database dropped")
    assert raised.value.target == target.describe()
    assert "s3cret-pass" not in raised.value.render()
