"""The platform layer's shared parts: log classification, fingerprints, the Runner,
``platform_for`` and its safety gate, the recording wrapper. No sandbox needed."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runbook.config import Target
from runbook.errors import ConfigError, RunbookError, SafetyGateError
from runbook.platforms import (
    RecordingPlatform,
    RecordingRunner,
    Runner,
    platform_for,
)
from runbook.platforms.base import (
    LogLines,
    PlatformTimeouts,
    error_lines,
    fingerprint,
    is_error_line,
    lines_since,
    parse_since,
    request_status,
)
from runbook.platforms.kubernetes import KubernetesNames, KubernetesPlatform, kubectl_since
from runbook.platforms.railway import RailwayPlatform, parse_variables
from runbook.platforms.sandbox import SandboxPlatform
from runbook.probes.logs import summarize
from runbook.results import Activity, Timing


def _target(platform: str | None, **extra: str) -> Target:
    variables = {"API_URL": "https://api.example.com", "WEB_URL": "https://example.com",
                 "API_SECRET": "unit-test-api-secret", "RUNBOOK_ENVIRONMENT": "staging",
                 **extra}
    if platform:
        variables["PLATFORM"] = platform
    return Target.from_variables("unit", variables, source="test")


# -- classification --------------------------------------------------------------------


@pytest.mark.parametrize("line", [
    "2024-01-17T10:00:00.789Z ERROR api: unhandled error on POST /api/auth/login: boom",
    "2024-01-17T10:00:00.790Z INFO api: request method=POST path=/x status=500 duration_ms=2",
    "ts=2024 level=error msg=\"redis connection lost\"",
    '{"level":"error","msg":"redis connection lost"}',
    "Traceback (most recent call last):",
    '127.0.0.1 - - [17/Jan/2024] "GET /health HTTP/1.1" 503 12',
    "2024-01-17 10:00:00 UTC FATAL:  password authentication failed for user \"app\"",
])
def test_lines_a_person_calls_errors_are_errors(line: str) -> None:
    assert is_error_line(line)


@pytest.mark.parametrize("line", [
    "2024-01-17T10:00:00.123Z INFO api: request method=GET path=/health status=200",
    "2024-01-17T10:00:01.100Z INFO api: request method=GET path=/api/auth/me status=401",
    "2024-01-17T10:00:00.456Z WARN api: query took 734ms: SELECT ...",
    "2024-01-17T10:00:01.000Z INFO worker: job completed, no error, errors=0",
    '  File "app.py", line 1, in <module>',
])
def test_other_lines_are_not(line: str) -> None:
    assert not is_error_line(line)


def test_request_status_reads_the_three_request_line_shapes() -> None:
    assert request_status("request method=GET path=/ status=404 duration_ms=1") == 404
    assert request_status('{"responseStatusCode": 502, "path": "/"}') == 502
    assert request_status('"POST /api/x HTTP/2" 201 99') == 201
    assert request_status("worker: job completed queue=email") is None


def test_the_plain_text_looked_for_first_never_turns_away_a_line_the_expressions_take(
        ) -> None:
    """A log line is searched by the classifying expressions only when it holds the text
    each needs; on random lines built from the parts of every shape above, in any case,
    with letters a case-insensitive match takes for ASCII ones (dotless i, the Kelvin
    sign), the verdicts are those of the expressions asked of every line."""
    import random

    from runbook.platforms import base

    def by_expressions(line: str) -> tuple[bool, int | None]:
        status = next((int(m.group(1)) for p in base._REQUEST_STATUS
                       if (m := p.search(line))), None)
        error = bool(base._ERROR_WORD.search(line) or base._LEVEL_ERROR.search(line)
                     or base._TRACEBACK.search(line)) or (status is not None and status >= 500)
        return error, status

    pieces = ["ERROR", "FATAL", "CRITICAL", "PANIC", "error", " ", "=", ":", '"', "level",
              "severity", "@level:error", "Traceback (most recent call last):", "status",
              "Status", "statusCode", "responseStatusCode", "status_code", "HTTP/1.1",
              '"GET /x HTTP/1.1" ', "500", "200", "503", "x", "\n", "le\u212avel",
              "\u0131", "\u212a", "sever\u0131ty", "level=error", "LEVEL = Fatal",
              '"severity":"error"', '"level": "panic"', '"sever\u0131ty":"error"',
              "le\u212avel=error", "status=503", "Status=500", "statusCode: 502",
              '"responseStatusCode": 502', '"status_code":"504"', '"POST /a HTTP/2" 500']
    chosen = random.Random(23)
    errors = 0
    for _ in range(20_000):
        line = "".join(chosen.choice(pieces) for _ in range(chosen.randint(0, 6)))
        line = "".join(c.upper() if chosen.random() < 0.2 else c for c in line)
        expected = by_expressions(line)
        errors += expected[0]
        assert (is_error_line(line), request_status(line)) == expected, line
    assert errors > 2_000  # the lines were errors often enough to tell


def test_summary_counts_errors_and_the_5xx_rate_over_request_lines() -> None:
    lines = (
        "t INFO api: request method=GET path=/a status=200",
        "t INFO api: request method=GET path=/b status=200",
        "t ERROR api: unhandled error on GET /c: DataError",
        "t INFO api: request method=GET path=/c status=500",
    )
    now = datetime.now(UTC)
    activity = Activity("logs api", ("x",), Timing(now, now, 0.0))
    summary = summarize(LogLines("api", activity, lines, error_lines(lines)))
    assert (summary.lines, summary.error_lines) == (4, 2)
    assert (summary.request_lines, summary.server_errors) == (3, 1)
    assert summary.error_rate == pytest.approx(1 / 3)
    assert summary.error_percent == 33.33
    no_requests = summarize(LogLines("worker", activity, ("t INFO worker: up",), ()))
    assert no_requests.error_rate is None


def test_since_windows() -> None:
    assert parse_since("1h") == timedelta(hours=1)
    assert parse_since("30m") == timedelta(minutes=30)
    assert parse_since("2d") == timedelta(days=2)
    with pytest.raises(ConfigError, match="not a duration"):
        parse_since("an hour")
    assert kubectl_since("1h") == "1h"
    assert kubectl_since("2d") == "48h"
    now = datetime(2024, 1, 17, 12, 0, tzinfo=UTC)
    lines = [
        "2024-01-17T10:00:00.000Z ERROR api: old",
        "Traceback (most recent call last):",
        "2024-01-17T11:30:00.000Z ERROR api: recent",
        "Traceback (most recent call last):",
        '  File "x.py", line 1',
    ]
    assert lines_since(lines, timedelta(hours=1), now) == lines[2:]


# -- fingerprints and parsing ----------------------------------------------------------


def test_fingerprint_is_the_first_12_hex_of_sha256() -> None:
    assert fingerprint("s3cret") == hashlib.sha256(b"s3cret").hexdigest()[:12]
    assert fingerprint("a") != fingerprint("b")


def test_railway_variables_table_kv_and_json_are_parsed() -> None:
    table = "\n".join([
        "\x1b[36m╔══════════ Variables for api ══════════╗\x1b[0m",
        "║ API_SECRET   │ abc                    ║",
        "║──────────────────────────────────────║",
        "║ DATABASE_URL │ postgresql://u:p@h:5432/ ║",
        "║              │ legacyvideo              ║",
        "╚══════════════════════════════════════╝",
    ])
    assert parse_variables(table) == {"API_SECRET": "abc",
                                      "DATABASE_URL": "postgresql://u:p@h:5432/legacyvideo"}
    assert parse_variables("A=1\nB=x=y\nnot a line\n") == {"A": "1", "B": "x=y"}
    assert parse_variables('{"A": "1", "B": null}') == {"A": "1", "B": ""}


def test_kubernetes_names_come_from_the_environment_and_are_validated() -> None:
    names = KubernetesNames.from_env({"RUNBOOK_K8S_NAMESPACE": "legacyvideo",
                                      "RUNBOOK_K8S_DEPLOYMENT_WORKER": "lv-worker"})
    assert names.namespace == "legacyvideo"
    assert dict(names.deployments) == {"api": "legacyvideo-api", "worker": "lv-worker",
                                       "web": "legacyvideo-web"}
    assert KubernetesNames.from_env({}).namespace == "default"
    with pytest.raises(ConfigError, match="RUNBOOK_K8S_DEPLOYMENT_API"):
        KubernetesNames.from_env({"RUNBOOK_K8S_DEPLOYMENT_API": "--all"})


def test_platform_timeouts_from_env() -> None:
    assert PlatformTimeouts.from_env({}) == PlatformTimeouts()
    assert PlatformTimeouts.from_env({"RUNBOOK_RESTART_TIMEOUT": "90"}).restart_s == 90.0
    with pytest.raises(ConfigError, match="RUNBOOK_PLATFORM_TIMEOUT"):
        PlatformTimeouts.from_env({"RUNBOOK_PLATFORM_TIMEOUT": "-1"})


# -- the Runner ------------------------------------------------------------------------


def test_a_missing_executable_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(RunbookError) as caught:
        Runner().run(["railway", "status"], timeout=5, env={"PATH": str(tmp_path)})
    assert str(caught.value) == "railway CLI not found on PATH; install it or set PLATFORM"


def test_the_runner_passes_env_and_reports_the_exit(tmp_path: Path) -> None:
    done = Runner().run(
        [sys.executable, "-c", "import os,sys; print(os.environ['RB_X']);"
                               " sys.stderr.write('bad thing\\n'); sys.exit(3)"],
        timeout=10, env={"RB_X": "hello"}, cwd=tmp_path,
    )
    assert done.returncode == 3 and done.stdout.strip() == "hello" and not done.ok
    assert done.problem().endswith("exited with code 3: bad thing")


def test_a_timeout_stops_the_whole_process_group_in_time(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(3600)\n"
    )
    started = time.monotonic()
    done = Runner(kill_grace_s=1.0).run([sys.executable, "-c", script], timeout=1.0)
    took = time.monotonic() - started
    assert done.timed_out and not done.ok
    assert took < 1.0 + 1.0 + 2.0, f"the Runner took {took:.1f} s to stop a 1 s command"
    assert "started" in done.stdout  # what came out before the timeout is kept
    assert "did not finish within 1 s" in done.problem()
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and _alive(grandchild):
        time.sleep(0.05)
    assert not _alive(grandchild), "the timed-out command's child was left running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in {"Z", "X"}
    except OSError:
        return False


# -- platform_for and the safety gate --------------------------------------------------


def test_platform_for_picks_the_adapter_the_target_names(tmp_path: Path) -> None:
    assert isinstance(platform_for(_target("railway"), allow_changes=False), RailwayPlatform)
    assert isinstance(platform_for(_target("kubernetes"), allow_changes=False),
                      KubernetesPlatform)
    sandbox = platform_for(_target("sandbox", RUNBOOK_HOME=str(tmp_path)), allow_changes=False)
    assert isinstance(sandbox, SandboxPlatform) and sandbox.sandbox.home == tmp_path
    with pytest.raises(ConfigError, match="declares no PLATFORM"):
        platform_for(_target(None), allow_changes=True)


@pytest.mark.parametrize("platform", ["railway", "kubernetes"])
@pytest.mark.parametrize("service", ["api", "worker", "web"])
def test_restart_without_allow_changes_is_refused_before_anything_runs(
    platform: str, service: str,
) -> None:
    runner = RecordingRunner(reply=lambda argv: (0, "", ""))
    adapter = platform_for(_target(platform), allow_changes=False, runner=runner)
    with pytest.raises(SafetyGateError, match=f"refused: restarting {service}"):
        adapter.restart(service)
    assert runner.calls == ()


def test_unknown_services_are_a_config_error() -> None:
    adapter = platform_for(_target("railway"), allow_changes=True,
                           runner=RecordingRunner(reply=lambda argv: (0, "", "")))
    with pytest.raises(ConfigError, match="unknown service 'db'"):
        adapter.restart("db")


def test_the_recording_platform_records_every_call_with_its_kind() -> None:
    runner = RecordingRunner(reply=lambda argv: (0, "ok\n", ""))
    recording = RecordingPlatform(platform_for(_target("kubernetes"), allow_changes=False,
                                               runner=runner))
    recording.status()
    recording.logs("api")
    with pytest.raises(SafetyGateError):
        recording.restart("worker")
    kinds = [(c.method, c.service, c.kind, c.outcome) for c in recording.calls]
    assert kinds == [
        ("status", None, "read", "ok"),
        ("logs", "api", "read", "ok"),
        ("restart", "worker", "destructive", "SafetyGateError"),
    ]
    assert [c.method for c in recording.destructive_calls] == ["restart"]
    assert [c.argv[:2] for c in runner.calls] == [("kubectl", "get"), ("kubectl", "logs")]
