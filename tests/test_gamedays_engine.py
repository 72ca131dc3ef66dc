"""What holds for every game day, against the real sandbox: each is in the catalogue with
a known section; detection is by the scheduled suite (a signal taken away from the features
leaves its game day undetected); greens with the fault still in place are no recovery; the
faults revert twice and leave the target as it was; a drill interrupted with the fault in
leaves the sandbox healthy (SIGINT and SIGTERM restored by ``finally``, SIGKILL by the
guard, which reverts from another process); every advice names a runbook section.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from runbook.actions import journeys
from runbook.actions.users import CanaryUser
from runbook.drills import detection, engine, faults
from runbook.drills.catalog import DRILLS, GAME_DAYS
from runbook.drills.faults import DrillContext
from runbook.drills.incidents import data_breach, slow_query, upload_failures
from runbook.probes import postgres
from runbook.sandbox.layout import COMPONENTS
from runbook.sandbox.procs import is_alive
from runbook.sections import next_steps
from runbook.wait import wait_until
from tests import gamedays
from tests.conftest import RunningSandbox

#: The repository's root (the source checkout these tests run in).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def test_every_drill_is_in_the_catalogue_with_json_params_and_a_known_section() -> None:
    assert set(gamedays.OUTCOMES) == {d.name for d in GAME_DAYS}
    assert set(gamedays.DETECTED_BY) == set(gamedays.OUTCOMES)
    for incident in DRILLS.values():
        assert json.loads(json.dumps(dict(incident.params))) == dict(incident.params)
        assert faults.REGISTRY[incident.fault].name == incident.fault
    for incident in GAME_DAYS:
        assert incident.signal, incident.name
        if gamedays.OUTCOMES[incident.name] == "defect":
            assert incident.defect, incident.name


# -- detection and recovery ------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_a_scheduled_check_taken_away_leaves_its_game_day_undetected(
        healthy_sandbox: RunningSandbox, context: DrillContext, canary: CanaryUser,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        cpu_hog_turn: Callable[[], AbstractContextManager[None]]) -> None:
    """Without the scheduled scenario that watches the API's CPU, the CPU game day fails as
    not detected by the scheduled checks, naming the missing signal. The detection runs the
    scheduled selection narrowed to that scenario and the login journey (a run of the whole
    suite costs a minute here; tests/test_drill_verdicts.py runs it whole): with the feature
    file edited, only the login journey is left, and it does not name the incident."""
    features = tmp_path / "features"
    shutil.copytree(PROJECT_ROOT / "runbook" / "features", features)
    incident = features / "incident_response.feature"
    text = incident.read_text()
    start = text.index("  @synthetic @warning @runbook:high-memory-cpu-usage")
    end = text.index("  @synthetic", start + 10)
    incident.write_text(text[:start] + text[end:])
    monkeypatch.setenv("RUNBOOK_FEATURES", str(features))
    with cpu_hog_turn():
        record = gamedays.run("high-cpu", healthy_sandbox, context, canary, tmp_path,
                              detector=detection.scheduled_suite(
                                  tmp_path / "detection",
                                  extra=("-k", "the_api_processs_cpu or a_user_can_log_in")),
                              limits=engine.Limits(detect_within_s=5, rto_s=300))
    detect = gamedays.phases(record)["detect"]
    assert not detect.ok and record.verdict == "fail", gamedays.explain(record)
    assert "not detected by the scheduled checks" in detect.detail
    assert DRILLS["high-cpu"].signal in detect.detail
    rounds = record.evidence["detection"]["rounds"]
    assert rounds and all(r["scenarios_checked"] == 1 for r in rounds), rounds
    gamedays.assert_healthy(healthy_sandbox, context, canary)


def test_greens_with_the_fault_still_in_place_are_no_recovery(
        healthy_sandbox: RunningSandbox, context: DrillContext, canary: CanaryUser) -> None:
    """A fault the end-to-end check cannot see (the web's stored variable set to a value
    nothing reads) leaves the checks green: while it is in place the wait for recovery fails
    at once saying so, never a recovery; once reverted, the same greens are one."""
    spec = faults.get("service-variable", "sandbox")
    params = {"service": "web", "variable": "RUNBOOK_DRILL_NOTE", "change": "set",
              "value": "left by a drill"}
    check = gamedays.steady(canary)
    assert spec.inject(context, params).ok
    try:
        assert spec.present is not None and spec.present(context, params)
        outcome = engine.wait_for_recovery(
            lambda: check(context), consecutive=3, until=time.monotonic() + 60,
            interval=0.05, still_faulted=lambda: spec.present(context, params))
        assert not outcome.ok and outcome.at is None, outcome
        assert "not a recovery with the fault in place" in outcome.stalled, outcome
        assert "web's stored RUNBOOK_DRILL_NOTE" in outcome.stalled, outcome
        assert len(outcome.timeline.checks) == 3 and not outcome.observations, outcome
    finally:
        assert spec.revert(context, params).ok
    assert spec.present(context, params) is None
    outcome = engine.wait_for_recovery(
        lambda: check(context), consecutive=3, until=time.monotonic() + 60, interval=0.05,
        still_faulted=lambda: spec.present(context, params))
    assert outcome.ok and outcome.at is not None, outcome


# -- restoration ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "params"), [
    ("s3-bucket-policy-deny", {}),
    ("s3-cors-missing", {}),
    ("slow-query", {"hold_s": 0.2, "max_s": 30}),
])
def test_a_fault_reverts_twice_and_leaves_the_target_as_it_was(
        context: DrillContext, name: str, params: dict[str, object]) -> None:
    spec = faults.get(name, "sandbox")
    s3 = None
    before: dict[str, Any] = {}
    if name.startswith("s3"):
        bucket = context.target.require("S3_BUCKET")
        from runbook.probes import storage

        s3 = storage.client(context.target, context.timeouts)
        before = {"cors": upload_failures.cors_rules(s3, bucket),
                  "policy": upload_failures.bucket_policy(s3, bucket)}
    assert spec.inject(context, params).ok
    assert spec.present is not None and spec.present(context, params)
    first, second = spec.revert(context, params), spec.revert(context, params)
    assert first.ok and second.ok, (first.error, second.error)
    assert spec.present(context, params) is None
    if s3 is not None:
        bucket = context.target.require("S3_BUCKET")
        assert upload_failures.cors_rules(s3, bucket) == before["cors"]
        assert upload_failures.bucket_policy(s3, bucket) == before["policy"]
        assert upload_failures.uploads_work(context.target, context.timeouts).ok
    else:
        assert postgres.slow_queries(context.target, context.timeouts, threshold_ms=500).ok


DIES_WITH_FAULTS_IN = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from runbook.drills import catalog
    from runbook.drills.context import context_for
    from runbook.drills.faults import get
    from runbook.drills.guard import Guard
    from runbook.targets import RunSpec

    home, ledgers = sys.argv[1], Path(sys.argv[2])
    spec = RunSpec.sandbox(Path(home))
    guard = Guard.arm(ledgers, spec)
    context = context_for(spec)
    for name, params in (("security-breach", {"accounts": 1, "failures_per_account": 1}),
                         ("slow-query", {"hold_s": 0.5, "max_s": 60})):
        guard.record(name, params)
        assert get(name, context.platform.name).inject(context, params).ok, name
    print("injected", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_the_guard_reverts_these_faults_from_another_process(
        context: DrillContext, healthy_sandbox: RunningSandbox, tmp_path: Path) -> None:
    """The state files let the guard, which never saw the faults being made, find the
    holder process and the breach's accounts after the drill was killed."""
    env = {k: v for k, v in os.environ.items() if k != "API_URL"}
    ledgers = tmp_path / "ledgers"
    died = subprocess.run([sys.executable, "-c", DIES_WITH_FAULTS_IN,
                           str(healthy_sandbox.home), str(ledgers)], env=env,
                          capture_output=True, text=True, timeout=90, check=False)
    assert died.returncode == -signal.SIGKILL, died.stderr
    holder = json.loads(slow_query.holder_files(context)[0].read_text())
    assert data_breach.breach_canaries(context)
    assert wait_until(lambda: not list(ledgers.glob("*.json")), timeout=60, interval=0.2).ok
    log = next(ledgers.glob("*.log")).read_text()
    assert "reverted slow-query: ok" in log and "reverted security-breach: ok" in log, log
    assert not slow_query.holder_files(context)[0].exists()
    assert not is_alive(int(holder["pid"]))
    assert data_breach.breach_canaries(context) == []
    assert postgres.slow_queries(context.target, context.timeouts, threshold_ms=500).ok


DRILL = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from runbook.drills import detection, engine
    from runbook.drills.catalog import DRILLS
    from runbook.drills.context import context_for
    from runbook.drills.guard import Guard
    from runbook.targets import RunSpec
    from runbook.actions import journeys

    home, ledgers, name, out = sys.argv[1:5]
    # Every thread's stack every 10 s on stderr: shown only when the drill overruns.
    import faulthandler
    faulthandler.dump_traceback_later(10, repeat=True)
    spec = RunSpec.sandbox(Path(home))
    context = context_for(spec)

    def stalled(context, section, fault_at, within_s):
        print("fault in", flush=True)
        time.sleep(60)  # the signal arrives here, with the fault in
        raise AssertionError("no signal came")

    def keep(record):
        Path(out).write_text(json.dumps(record.to_json()))

    def steady(context):
        return journeys.login(context.target, context.timeouts)

    guard = Guard.arm(Path(ledgers), spec)
    try:
        engine.run(DRILLS[name], context, limits=engine.Limits(60, 300), guard=guard,
                   steady=steady, on_record=keep, evidence_dir=Path(ledgers) / "detection",
                   detector=stalled)
    finally:
        guard.disarm()
""")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("name", "signum"), [
    ("connection-limit-exhausted", signal.SIGINT),
    ("worker-not-processing", signal.SIGTERM),
    ("connection-limit-exhausted", signal.SIGKILL),
    ("invalid-token", signal.SIGKILL),
], ids=["SIGINT", "SIGTERM", "SIGKILL-guard", "SIGKILL-guard-variable"])
def test_an_interrupted_game_day_leaves_the_sandbox_healthy(
        name: str, signum: signal.Signals, healthy_sandbox: RunningSandbox,
        context: DrillContext, canary: CanaryUser, tmp_path: Path) -> None:
    out = tmp_path / "record.json"
    ledgers = tmp_path / "guard"
    env = {**os.environ, "RUNBOOK_HOME": str(healthy_sandbox.home)}
    env.pop("API_URL", None)
    drill = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", DRILL,
                              str(healthy_sandbox.home), str(ledgers), name, str(out)],
                             env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert drill.stdout is not None and drill.stderr is not None
        line = drill.stdout.readline()  # blocks until the fault is in (or the drill ends)
        if not line.startswith("fault in"):
            drill.kill()
            pytest.fail(f"the drill did not get the fault in: {line}{drill.stderr.read()}")
        started = time.monotonic()
        drill.send_signal(signum)
        try:
            _, err = drill.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # Where it was every 10 s, and where it is now: faulthandler (-X faulthandler)
            # prints every thread's stack; the logs' ends (secrets masked) say what the sandbox did.
            drill.send_signal(signal.SIGABRT)
            _, err = drill.communicate(timeout=10)
            box = healthy_sandbox.sandbox
            ends = "".join(f"\n{name}.log:\n{box.logs(name, 10)}"
                           for name in (*COMPONENTS, "supervisor"))
            pytest.fail(f"the drill did not end within 60 s of {signum.name}:\n{err[-20000:]}"
                        f"\nthe sandbox's logs, their last lines:{ends}")
    finally:
        if drill.poll() is None:
            drill.kill()
            drill.wait(10)
    assert drill.returncode != 0
    if signum == signal.SIGKILL:
        assert not out.exists()
        back = wait_until(lambda: not list(ledgers.glob("*.json")), timeout=45, interval=0.2)
        assert back.ok, back.summary()
        log = next(ledgers.glob("*.log")).read_text()
        assert f"reverted {DRILLS[name].fault}: ok" in log, log
        restored_by = "the guard"
    else:
        record = json.loads(out.read_text())
        assert record["verdict"] == "aborted", record
        restore = next(p for p in record["phases"] if p["name"] == "restore")
        assert restore["ok"], restore
        ended = {signal.SIGINT: "KeyboardInterrupt", signal.SIGTERM: "DrillInterrupted"}
        assert any(ended[signum] in note for note in record["notes"]), record["notes"]
        assert ended[signum] in err
        restored_by = "finally"
    gamedays.assert_healthy(healthy_sandbox, context, canary)
    print(f"\n{name}: {signal.Signals(signum).name} with the fault in; restored by"
          f" {restored_by}; healthy {time.monotonic() - started:.1f} s after the signal")


# -- advice ---------------------------------------------------------------------------------


def test_failures_are_advised_with_the_runbook_subsection() -> None:
    cases = {
        journeys.upload_advice("SignatureDoesNotMatch"): "Upload Failures",
        journeys.upload_advice("AccessDenied"): "Upload Failures",
        journeys.email_advice("Resend rejected the email: API key is invalid (HTTP 401)"):
            "Email Not Sending",
        journeys.email_advice("The x.test domain is not verified (HTTP 403)"):
            "Email Not Sending",
        "security-incident": "Data Breach / Security Incident",
        "database-slow": "Slow Query Performance",
    }
    for advice, section in cases.items():
        lines = next_steps(advice)
        assert lines and all(section in line for line in lines), (advice, lines)
    assert next_steps("s3-upload-denied")[0].startswith(
        "Incident Response > Upload Failures: 2. check the S3 bucket permissions")


def test_every_advice_a_scheduled_check_gives_names_a_runbook_section() -> None:
    for key in ("api", "api-500", "database", "worker", "api-secret", "metrics",
                "database-slow"):
        assert next_steps(key), key


def test_the_game_day_tests_run_every_game_day_once() -> None:
    """The game-day runs are grouped by subject, one file per family; together they run
    every game day of the catalogue, each once."""
    from tests.test_gamedays_app_services import SERVICE_GAMEDAYS
    from tests.test_gamedays_database import DATABASE_GAMEDAYS
    from tests.test_gamedays_providers import PROVIDER_GAMEDAYS
    from tests.test_gamedays_security import SECURITY_GAMEDAYS

    run = [*DATABASE_GAMEDAYS, *SERVICE_GAMEDAYS, *PROVIDER_GAMEDAYS, *SECURITY_GAMEDAYS]
    assert sorted(run) == sorted(gamedays.OUTCOMES)
