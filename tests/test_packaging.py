"""One installable package: the ``runbook`` command works from a directory that is not the
source tree, on the shipped features or a team's own (``--features``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = Path(sys.executable).with_name("runbook")


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
