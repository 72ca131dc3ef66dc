"""One installable package: every third-party import is declared, the wheel holds what the
runbook runs (features, steps, harness, the runbook's text, the scenarios' configuration),
and the ``runbook`` command works from a directory that is not the source tree.

The whole proof in a fresh virtualenv (the wheel installed with and without the
``[sandbox]`` extra and run from an empty directory: the sandbox, a check, a drill) is
``scripts/check-wheel``: from one to over three minutes on two shared cores, too slow and too
variable for this suite.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from runbook import shipped

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = Path(sys.executable).with_name("runbook")
#: Modules of the repository itself, imported by the tests (``tests.conftest``, ``exposition``).
LOCAL = {"runbook", "tests", "conftest", *(path.stem for path in (ROOT / "tests").glob("*.py"))}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, str]:
    """Every distribution pyproject.toml declares (normalized name -> where: the base or the
    extra)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found: dict[str, str] = {}
    groups = {"dependencies": project["dependencies"],
              **{f"[{extra}]": requirements
                 for extra, requirements in project["optional-dependencies"].items()}}
    for where, requirements in groups.items():
        for requirement in requirements:
            name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
            assert name is not None, requirement
            found[_normalized(name.group())] = where
    return found


def third_party_imports(*roots: Path) -> dict[str, list[str]]:
    """Top-level module -> ``file:line`` of each import that is neither the standard
    library's nor the repository's own."""
    found: dict[str, list[str]] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top in sys.stdlib_module_names or top in LOCAL or top == "__future__":
                        continue
                    found.setdefault(top, []).append(
                        f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def undeclared(imports: dict[str, list[str]], declared: dict[str, str]) -> list[str]:
    """One line per imported module no declared distribution provides."""
    providers = packages_distributions()
    problems = []
    for module, where in sorted(imports.items()):
        distributions = {_normalized(d) for d in providers.get(module, [])}
        if not distributions:
            problems.append(f"{module} ({where[0]}): no installed distribution provides it")
        elif not distributions & declared.keys():
            problems.append(f"{module} ({where[0]}): from {', '.join(sorted(distributions))},"
                            " not declared in pyproject.toml")
    return problems


def test_every_third_party_import_is_declared() -> None:
    imports = third_party_imports(ROOT / "runbook", ROOT / "tests")
    assert {"pytest", "httpx", "psycopg", "fastapi", "yaml"} <= imports.keys()
    assert undeclared(imports, declared()) == []


def test_the_check_sees_an_undeclared_import() -> None:
    """It can fail: a module whose distribution is installed but not declared, and one that
    no installed distribution provides."""
    imports = {"pluggy": ["x.py:1"], "no_such_module_anywhere": ["y.py:2"]}
    assert undeclared(imports, declared()) == [
        "no_such_module_anywhere (y.py:2): no installed distribution provides it",
        "pluggy (x.py:1): from pluggy, not declared in pyproject.toml"]


def test_the_sandbox_servers_alone_import_the_sandbox_extra() -> None:
    """What the ``[sandbox]`` extra brings is imported only by the sandbox's stand-in
    servers (their own processes), so an install without it runs everything else."""
    extra = {name for name, where in declared().items() if where == "[sandbox]"}
    providers = packages_distributions()
    by_extra = {module: where for module, where in third_party_imports(ROOT / "runbook").items()
                if {_normalized(d) for d in providers.get(module, [])} & extra}
    outside = [place for places in by_extra.values() for place in places
               if not place.startswith("runbook/sandbox/services/")]
    assert by_extra and outside == []
    assert "pydantic-settings" not in declared()


def test_the_shipped_runbook_is_the_documented_one() -> None:
    """``runbook/RUNBOOK.md`` (what the code reads) is ``docs/RUNBOOK.md``: one text."""
    assert shipped.RUNBOOK.read_bytes() == (ROOT / "docs" / "RUNBOOK.md").read_bytes()
    assert shipped.RUNBOOK.is_symlink(), "a copy would drift: keep the link to docs/RUNBOOK.md"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel, built from a copy of the source (a build writes ``build/`` beside it)."""
    scratch = tmp_path_factory.mktemp("wheel")
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split("\n")
    source = scratch / "source"
    for name in filter(None, tracked):
        path = ROOT / name
        if not path.exists() and not path.is_symlink():
            continue  # deleted, not yet committed
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            target.symlink_to(path.readlink())
        else:
            target.write_bytes(path.read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(scratch / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    [built] = (scratch / "dist").glob("legacyvideo_runbook-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_holds_what_the_runbook_runs(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    features = {f"runbook/features/{p.name}" for p in shipped.FEATURES.glob("*.feature")}
    assert features and features <= names
    assert {"runbook/RUNBOOK.md", "runbook/pytest.ini", "runbook/steps/conftest.py",
            "runbook/steps/test_runbook.py", "runbook/steps/plugin.py",
            "runbook/harness/plugin.py", "runbook/py.typed"} <= names
    assert any(n.startswith("runbook/sandbox/") and n.endswith(".sql") for n in names)
    assert wheel.read("runbook/RUNBOOK.md") == (ROOT / "docs" / "RUNBOOK.md").read_bytes()
    tops = {n.split("/")[0] for n in names if not n.startswith("legacyvideo_runbook-")}
    assert tops == {"runbook"}, f"the wheel installs more than the package: {tops}"
    [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
    text = wheel.read(metadata).decode()
    assert "Provides-Extra: sandbox" in text and "Provides-Extra: dev" in text
    assert "pydantic-settings" not in text
    assert re.search(r"^Requires-Dist: fastapi.*extra == .sandbox.", text, re.MULTILINE)
    assert not re.search(r"^Requires-Dist: fastapi[^;]*$", text, re.MULTILINE)


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        from datetime import UTC, datetime

        body = json.dumps({"status": "ok", "timestamp": datetime.now(UTC).isoformat()})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    """A real HTTP server answering ``/health`` as the API does."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


FEATURE = """Feature: Our own checks

  @synthetic @critical @runbook:quick-health-check
  Scenario: Our API is healthy
    Given the target has the API
    When the on-call engineer checks the API health
    Then the API reports status ok
"""


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    import os

    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("API_", "WEB_", "DATABASE_", "REDIS_", "S3_", "RESEND_",
                                 "ADMIN_", "RUNBOOK_", "PYTEST_"))
            and k not in ("PLATFORM", "PYTHONPATH")}
    return {**keep, "RUNBOOK_HOME": str(tmp_path / "home"), **extra}


def test_a_team_runs_its_own_features_from_an_empty_directory(tmp_path: Path, api: str
                                                               ) -> None:
    """``runbook check --features DIR`` in a directory with nothing of the project: the
    shipped steps run the team's scenario; reports land under the current directory."""
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "health.feature").write_text(FEATURE)
    here = tmp_path / "empty"
    here.mkdir()
    done = subprocess.run(
        [str(RUNBOOK), "check", "--target", "env", "--features", str(ours), "--json"],
        cwd=here, env=_clean_env(tmp_path, API_URL=api, RUNBOOK_ENVIRONMENT="staging"),
        capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["type"] for line in lines] == ["scenario", "summary"], lines
    assert lines[0]["name"] == "Our API is healthy" and lines[0]["outcome"] == "passed"
    assert (here / "reports" / "summary.json").is_file()
    assert sorted(p.name for p in here.iterdir()) == ["reports"]


@pytest.mark.parametrize("command", [["check"], ["drill"], ["manual", "list"], ["watch"]])
def test_a_bad_features_directory_is_one_line_and_exit_2(tmp_path: Path,
                                                         command: list[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for directory, says in ((tmp_path / "missing", "no such directory"),
                            (empty, "no .feature file in it")):
        done = subprocess.run([str(RUNBOOK), *command, "--features", str(directory)],
                              cwd=tmp_path, env=_clean_env(tmp_path), capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.strip().splitlines() == [
            f"runbook: --features {directory}: {says}"], done.stderr
        assert not (tmp_path / "reports").exists()


def test_the_version_from_outside_the_checkout(tmp_path: Path) -> None:
    done = subprocess.run([str(RUNBOOK), "--version"], cwd=tmp_path, env=_clean_env(tmp_path),
                          capture_output=True, text=True, timeout=60, check=True)
    assert re.fullmatch(r"runbook \d+\.\d+\.\d+( \(commit [0-9a-f]{12}\))?\n", done.stdout)

