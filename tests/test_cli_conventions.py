"""The command line's conventions: ``--version``, ``--json`` (JSON Lines on stdout, redacted,
an error object when a run gives no result), colour only on a terminal and never with
``NO_COLOR`` or ``--no-color``, a drill's phases live on a terminal and quiet elsewhere."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from runbook.cli import Reply
from runbook.redact import Redactor
from runbook.reporting.summary import CADENCES
from tests.conftest import RunningSandbox
from tests.test_cli import CLEAN, FAKEBIN, runbook

#: The repository's root (the source checkout these tests run in).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
API = "The API reports status ok with a current timestamp"


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line parsed as JSON: a line that is not fails the test."""
    lines = stdout.splitlines()
    assert lines, "nothing on stdout"
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(p, dict) and "type" in p for p in parsed), stdout
    return parsed


def on_a_terminal(*args: str, cwd: Path, env: Mapping[str, str], timeout: float = 240
                  ) -> tuple[int, list[tuple[float, str]]]:
    """Run ``runbook ARGS`` with a pseudo-terminal as its stdin, stdout and stderr; its exit
    code and every output line with the seconds after the start when it arrived."""
    primary, secondary = pty.openpty()
    environ = {k: v for k, v in CLEAN.items() if k != "NO_COLOR"}  # only the test's own
    process = subprocess.Popen([sys.executable, "-m", "runbook.cli", *args], cwd=cwd,
                               env={**environ, **env}, stdin=secondary, stdout=secondary,
                               stderr=secondary, close_fds=True)
    os.close(secondary)
    started = time.monotonic()
    lines: list[tuple[float, str]] = []
    pending = b""
    try:
        # not a poll: reading the terminal until the command closes it
        while time.monotonic() - started < timeout:
            ready, _, _ = select.select([primary], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            at = time.monotonic() - started
            lines += [(at, line.decode(errors="replace").rstrip("\r")) for line in complete]
        else:
            process.kill()
            pytest.fail(f"runbook {' '.join(args)} still running after {timeout} s: {lines}")
    finally:
        os.close(primary)
    if pending:
        lines.append((time.monotonic() - started, pending.decode(errors="replace")))
    return process.wait(timeout=30), lines


def test_version_is_one_line_with_the_package_version_and_the_commit(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = runbook("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, check=True).stdout.strip()
    assert result.stdout == f"runbook {version('legacyvideo-runbook')} (commit {commit})\n"


def test_check_json_gives_one_object_per_scenario_then_the_summary(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    result = runbook("check", "--json", "--target", "sandbox", "-k",
                     "api_reports or database_answers", cwd=tmp_path,
                     env={"RUNBOOK_HOME": str(sandbox.home)})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = json_lines(result.stdout)
    *scenarios, summary = lines
    written = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert [s["type"] for s in scenarios] == ["scenario"] * len(written["scenarios"])
    assert [s["name"] for s in scenarios] == [s["name"] for s in written["scenarios"]]
    assert sorted(s["name"] for s in scenarios) == [API, "The database answers"]
    assert all(s["outcome"] == "passed" and "api health ms" in s["figures"]
               for s in scenarios if s["name"] == API)
    assert summary["type"] == "summary"
    assert summary["run_id"] == written["run_id"] and summary["exit_code"] == 0
    assert summary["scenarios"] == 2 and summary["counts"] == {"passed": 2}
    assert "runbook summary" in result.stderr, "the human output goes to stderr"
    for secret in sandbox.sandbox.secrets().values():
        if len(secret) >= 8:
            assert secret not in result.stdout


def test_check_json_on_a_failing_target_is_valid_json_and_redacted(tmp_path: Path) -> None:
    """An API that refuses connections, its URL carrying a password the failure message
    would show: exit 1, every line JSON, the scenario failed, the password masked."""
    password = "planted-Json-pw-4711"
    env = {"API_URL": f"http://ops:{password}@127.0.0.1:9", "RUNBOOK_ENVIRONMENT": "staging"}
    human = runbook("check", "--target", "env", "-k", "api_reports", cwd=tmp_path, env=env)
    result = runbook("check", "--target", "env", "-k", "api_reports", "--json", cwd=tmp_path,
                     env=env)
    assert human.returncode == result.returncode == 1, result.stdout + result.stderr
    *scenarios, summary = json_lines(result.stdout)
    assert [(s["name"], s["outcome"]) for s in scenarios] == [(API, "failed")]
    assert "127.0.0.1:9" in scenarios[0]["message"], scenarios[0]["message"]
    assert summary["exit_code"] == 1 and summary["counts"] == {"failed": 1}
    assert password not in result.stdout + result.stderr + human.stdout + human.stderr


def test_a_json_line_is_redacted_value_by_value(capsys: pytest.CaptureFixture[str]) -> None:
    secret = 'pass"word\\with-quotes'
    Reply(as_json=True, redact=Redactor([secret])).json(
        {"type": "scenario", "message": f"connect to db with {secret} failed"})
    line = capsys.readouterr().out
    assert secret not in json.loads(line)["message"] and json.loads(line)["message"] == \
        "connect to db with *** failed"


def test_a_refused_drill_with_json_gives_an_error_object_and_exit_3(tmp_path: Path) -> None:
    env = {
        "API_URL": "https://api.legacyvideo.invalid", "DATABASE_URL":
        "postgresql://lv:drill-pw-secret@db.legacyvideo.invalid/lv", "PLATFORM": "railway",
        "RUNBOOK_ENVIRONMENT": "production", "FAKEBIN_RECORD": str(tmp_path / "calls.jsonl"),
        "PATH": f"{FAKEBIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    human = runbook("drill", cwd=tmp_path, env=env)
    result = runbook("drill", "--json", cwd=tmp_path, env=env)
    assert human.returncode == result.returncode == 3, result.stdout + result.stderr
    assert json_lines(result.stdout) == [{
        "type": "error", "exit_code": 3, "message": json_lines(result.stdout)[0]["message"]}]
    message = json_lines(result.stdout)[0]["message"]
    assert message.startswith("refused: drills never run against production"), message
    assert f"runbook: {message}" in human.stderr.splitlines()
    assert "drill-pw-secret" not in result.stdout


def test_a_usage_error_with_json_is_an_error_object_with_exit_2(tmp_path: Path) -> None:
    result = runbook("drill", "hi-cpu", "--json", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = json_lines(result.stdout)
    assert line["type"] == "error" and line["exit_code"] == 2
    assert line["message"].startswith("no drill or drilled runbook section named 'hi-cpu'")


def test_manual_list_json_gives_each_manual_item_and_its_record(tmp_path: Path) -> None:
    env = {"RUNBOOK_RECORDS": str(tmp_path / "records")}
    before = runbook("manual", "list", "--json", cwd=tmp_path, env=env)
    assert before.returncode == 0, before.stderr
    items = json_lines(before.stdout)
    assert len(items) == len(runbook("manual", "list", cwd=tmp_path, env=env
                                     ).stdout.splitlines()) > 1
    assert {i["type"] for i in items} == {"manual"}
    assert all(i["state"] == "expired" and i["record"] is None for i in items)
    name = items[0]["name"]
    recorded = runbook("manual", "record", name, "--by", "alice", "--evidence",
                       "https://tickets.example/42", cwd=tmp_path, env=env)
    assert recorded.returncode == 0, recorded.stderr
    after = {i["name"]: i for i in json_lines(
        runbook("manual", "list", "--json", cwd=tmp_path, env=env).stdout)}
    assert after[name]["state"] == "ok", after[name]
    assert after[name]["record"]["by"] == "alice"
    assert after[name]["valid_days"] == CADENCES[after[name]["cadence"]].days


@pytest.mark.parametrize(("args", "env", "coloured"), [
    ((), {}, True),  # the control: a terminal gets colour, so the test can see it
    ((), {"NO_COLOR": "1"}, False),
    (("--no-color",), {}, False),
], ids=["terminal", "NO_COLOR", "--no-color"])
def test_no_color_means_no_escape_even_on_a_terminal(
    sandbox: RunningSandbox, tmp_path: Path, args: tuple[str, ...], env: dict[str, str],
    coloured: bool
) -> None:
    code, lines = on_a_terminal(*args, "check", "--target", "sandbox", "-k", "api_reports",
                                cwd=tmp_path, env={"RUNBOOK_HOME": str(sandbox.home), **env})
    text = "\n".join(line for _, line in lines)
    assert code == 0, text
    assert "runbook summary" in text
    assert bool(ANSI.search(text)) is coloured, text


def test_a_drills_phases_show_live_on_a_terminal(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Each phase as it starts, before the scenario's own result line (pytest prints that
    when the scenario ends), in the order of the progress file the drill kept."""
    code, lines = on_a_terminal("drill", "api-crash", cwd=tmp_path,
                                env={"RUNBOOK_HOME": str(healthy_sandbox.home)})
    text = "\n".join(line for _, line in lines)
    assert code == 0, text
    phases = [line.split(": ", 2)[2].rsplit(" (", 1)[0] for _, line in lines
              if line.startswith("runbook: drill api-crash: ")]
    kept = next((tmp_path / "reports" / "drills").glob("*-api-crash.progress"))
    assert phases == [line.split(" ", 1)[1] for line in kept.read_text().splitlines()]
    assert {"inject", "recover", "restore"} <= set(phases), phases
    first_phase = next(at for at, line in lines if "runbook: drill api-crash: " in line)
    result_line = next(at for at, line in lines if "PASSED" in line)
    assert first_phase < result_line - 2, "the phases came only at the end"


@pytest.mark.timeout(420)
def test_a_drill_is_quiet_off_a_terminal_and_its_json_is_its_result(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    result = runbook("drill", "api-crash", "--json", cwd=tmp_path,
                     env={"RUNBOOK_HOME": str(healthy_sandbox.home)}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    *scenarios, summary = json_lines(result.stdout)
    assert [s["outcome"] for s in scenarios] == ["passed"]
    assert scenarios[0]["figures"]["rto_s"] <= scenarios[0]["figures"]["rto_objective_s"]
    assert summary["type"] == "summary" and summary["exit_code"] == 0
    assert "runbook: drill api-crash:" not in result.stdout + result.stderr
    assert list((tmp_path / "reports" / "drills").glob("*-api-crash.progress"))


def test_watch_json_gives_one_line_per_round(sandbox: RunningSandbox, tmp_path: Path) -> None:
    result = runbook("watch", "--json", "--rounds", "2", "--interval", "0", "-k",
                     "api_reports", cwd=tmp_path, env={"RUNBOOK_HOME": str(sandbox.home)})
    assert result.returncode == 0, result.stdout + result.stderr
    rounds = json_lines(result.stdout)
    assert [r["type"] for r in rounds] == ["round", "round"]
    assert [r["round"] - rounds[0]["round"] for r in rounds] == [0, 1]
    assert all(r["result"] and r["counts"] == {"passed": 1} and r["exit_code"] == 0
               and r["firing"] == [] for r in rounds), rounds
    assert "watching sandbox" in result.stderr


def test_help_shows_examples(tmp_path: Path) -> None:
    for command in (("--help",), ("check", "--help"), ("drill", "run", "--help"),
                    ("watch", "--help"), ("manual", "list", "--help")):
        shown = runbook(*command, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert "Examples: runbook" in shown.stdout, command


def test_the_json_schema_is_documented() -> None:
    text = (PROJECT_ROOT / "docs" / "json-output.md").read_text()
    for kind in ("scenario", "summary", "error", "round", "manual"):
        assert f'"type": "{kind}"' in text or f"`{kind}`" in text, kind
    assert "docs/json-output.md" in (PROJECT_ROOT / "README.md").read_text()


@pytest.mark.parametrize("args", [("check", "--json", "--bogus"),
                                  ("drill", "--json", "--workers", "many"),
                                  ("manual", "list", "--json", "--cadence")])
def test_a_usage_error_with_json_gives_one_error_object_and_exit_2(
        tmp_path: Path, args: tuple[str, ...]) -> None:
    """A scheduler parsing stdout gets the error object, a person the usual lines on
    stderr, whatever the usage error."""
    result = runbook(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = json_lines(result.stdout)
    assert line["type"] == "error" and line["exit_code"] == 2, line
    assert line["message"] and "\n" not in line["message"]
    assert "Usage: runbook" in result.stderr and line["message"] in result.stderr
