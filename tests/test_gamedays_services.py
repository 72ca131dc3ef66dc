"""Game days for the runbook's service incidents, against the real sandbox: Service Down,
Database Connection Errors (the database stopped; its connections all taken), High
Memory/CPU Usage, API Returns 500 Error (a wrong stored variable; a lost database), Worker
Not Processing Jobs, "Invalid or Expired Token" Errors.

Each runs on the engine under an armed restoration guard, with the end-to-end round trip of
a canary user as the steady state, detected by the scheduled scenario that must trip
(``tests/gamedays.py``), and must come to what ``OUTCOMES`` says: passed where the
runbook's steps restore service, failed with the defect recorded (and the corrected
procedure proven) where they do not. The sandbox is healthy afterwards either way. Run with
``-s`` to see each game day's row of the detection matrix.

Then the misconfiguration faults survive a plain restart, as a real one does, and a drill
interrupted with the fault in leaves the sandbox healthy (SIGINT and SIGTERM restored by
``finally``, SIGKILL by the guard).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbook.actions import journeys
from runbook.actions.users import CanaryUser, canary_user
from runbook.config import Target
from runbook.drills import faults
from runbook.drills.catalog import DRILLS, GAME_DAYS
from runbook.drills.context import context_for
from runbook.drills.faults import DrillContext
from runbook.drills.incidents.database_connection_errors import ConnectionUse
from runbook.drills.service_variables import value_for, without_password
from runbook.errors import ConfigError
from runbook.platforms import platform_for
from runbook.probes import resources
from runbook.results import ProbeResult, Timing, utcnow
from runbook.sandbox.services.api import CHAOS_CPU_HOG, start_cpu_hog
from runbook.sections import next_steps
from runbook.wait import wait_until
from tests import gamedays
from tests.conftest import RunningSandbox

SERVICE_GAMEDAYS = ["service-down", "database-connection-errors", "connection-limit-exhausted",
                    "high-cpu", "api-500-missing-variable", "api-500-lost-database",
                    "worker-not-processing", "invalid-token"]


@pytest.fixture(scope="module")
def canary(sandbox: RunningSandbox) -> Iterator[CanaryUser]:
    """A canary user for the steady-state round trip, removed after the module."""
    context = context_for(gamedays.spec(sandbox))
    with canary_user(context.target, context.timeouts) as user:
        yield user


@pytest.fixture
def context(healthy_sandbox: RunningSandbox) -> DrillContext:
    return context_for(gamedays.spec(healthy_sandbox))


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


def test_without_password_keeps_everything_but_the_password() -> None:
    url = "postgresql://app:s3cr3t-pw@127.0.0.1:5432/legacyvideo?schema=public"
    assert without_password(url) == "postgresql://app@127.0.0.1:5432/legacyvideo?schema=public"
    with pytest.raises(ConfigError):
        without_password("postgresql://app@127.0.0.1:5432/legacyvideo")


def test_a_variable_fault_never_takes_a_secret_from_the_parameters() -> None:
    target = Target.from_variables("t", {"DATABASE_URL": "postgresql://a:pw12345@h:1/d"},
                                   source="test", environment="sandbox", platform="sandbox")
    with pytest.raises(ConfigError, match="is a secret"):
        value_for(target, {"variable": "API_SECRET", "change": "set", "value": "x"})
    first = value_for(target, {"variable": "API_SECRET", "change": "random"})
    assert first != value_for(target, {"variable": "API_SECRET", "change": "random"})
    assert value_for(target, {"variable": "X", "change": "unset"}) is None
    dropped = value_for(target, {"variable": "DATABASE_URL", "change": "drop-password"})
    assert dropped == "postgresql://a@h:1/d"
    with pytest.raises(ConfigError, match="unknown change"):
        value_for(target, {"variable": "X", "change": "flip"})


def test_a_5xx_in_the_round_trip_is_diagnosed_as_api_returns_500() -> None:
    now = utcnow()

    def result(ok: bool, **observed: int) -> ProbeResult:
        return ProbeResult("api", "end to end", "t", Timing(now, now, 0.0),
                           problem="" if ok else "failed", observed=observed, advice="api")

    narrow = journeys.narrow_500
    assert narrow(result(False, health_status=200, login_status=500)).advice == "api-500"
    assert narrow(result(False, health_status=200, login_status=401)).advice == "api"
    assert narrow(result(False, health_status=503)).advice == "api"
    assert narrow(result(True, login_status=200)).advice == "api"


def test_the_cpu_hog_hook_starts_only_when_asked() -> None:
    assert start_cpu_hog({}) is None
    assert start_cpu_hog({CHAOS_CPU_HOG: "0"}) is None
    assert start_cpu_hog({CHAOS_CPU_HOG: "yes"}) is None


def test_connection_use_finds_the_client_holding_the_slots() -> None:
    use = ConnectionUse(100, 3, 97, (("runbook-conn-holder", "app", "idle", 90),
                                     ("legacyvideo-api", "app", "active", 7)))
    assert use.available == 97 and use.exhausted
    assert use.top_idle() == ("runbook-conn-holder", "app", 90)
    assert "LIMIT REACHED" in use.describe()
    calm = ConnectionUse(100, 3, 5, (("legacyvideo-runbook", "app", "idle", 5),))
    assert not calm.exhausted and calm.top_idle() is None


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", SERVICE_GAMEDAYS)
def test_game_day(name: str, healthy_sandbox: RunningSandbox, context: DrillContext,
                  canary: CanaryUser, tmp_path: Path) -> None:
    secrets = gamedays.secret_values(healthy_sandbox)
    assert not [s for s in secrets if s in json.dumps(dict(DRILLS[name].params))]
    started = time.monotonic()
    record = gamedays.run(name, healthy_sandbox, context, canary, tmp_path)
    gamedays.assert_outcome(name, record)
    report = gamedays.explain(record)
    steps = gamedays.activities(record)
    # The calls that really ran, never a CLI that did not: the runbook's own command is
    # shown beside them ("the runbook says").
    assert not [a for a in steps.values() if a["command"][:1] in (["railway"], ["psql"],
                                                                  ["curl"], ["aws"])], report
    assert any(a["runbook_says"] for a in steps.values()), report
    if name == "connection-limit-exhausted":
        limits = next(a for n, a in steps.items() if n.startswith("4. check connection"))
        assert "LIMIT REACHED" in str(limits["output"]), limits
    if name == "invalid-token":
        assert "DIFFERENT" in str(steps["compare API_SECRET again"]["output"]), report
    gamedays.no_secret_in(record, secrets)
    gamedays.assert_healthy(healthy_sandbox, context, canary)
    print("\n" + gamedays.matrix_line(name, record, time.monotonic() - started))


# -- a misconfiguration lives where a real one does ------------------------------------------

#: The misconfiguration faults, and the check that shows each while it is in.
MISCONFIGURATIONS = {
    "high-cpu": lambda c: resources.api_cpu(c.target, c.timeouts, limit_percent=80),
    "api-500-missing-variable": lambda c: journeys.login(c.target, c.timeouts),
    "invalid-token": lambda c: journeys.release(c.target, c.timeouts),
    "upload-failures-wrong-credentials": lambda c: journeys.upload(c.target, c.timeouts),
    "email-not-sending-invalid-key": lambda c: journeys.email(c.target, c.timeouts),
    "email-not-sending-unverified-sender": lambda c: journeys.email(c.target, c.timeouts),
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(MISCONFIGURATIONS))
def test_a_misconfiguration_survives_a_plain_restart(name: str, healthy_sandbox: RunningSandbox,
                                                     context: DrillContext) -> None:
    incident = DRILLS[name]
    service = str(incident.params["service"])
    spec = faults.get(incident.fault, "sandbox")
    platform = platform_for(context.target, allow_changes=True)
    check = MISCONFIGURATIONS[name]
    params = dict(incident.params)
    assert spec.inject(context, params).ok
    try:
        restarted = platform.restart(service)
        assert restarted.ok, restarted.error
        still = spec.present(context, params) if spec.present else None
        assert still, f"{name}: the fault is gone after a plain restart of {service}"
        seen = wait_until(lambda: not check(context).ok, timeout=20, interval=0.5)
        assert seen.ok, f"{name}: the incident's check passes after a plain restart"
    finally:
        reverted = spec.revert(context, params)
    assert reverted.ok, reverted.error
    assert spec.present is not None and spec.present(context, params) is None
    assert check(context).ok
    assert healthy_sandbox.sandbox.stored_variables() == {}


# -- interrupted drills ----------------------------------------------------------------------

DRILL = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from runbook.drills import detection, engine
    from runbook.drills.catalog import DRILLS
    from runbook.drills.context import context_for
    from runbook.drills.guard import Guard
    from runbook.actions import journeys

    home, ledgers, name, out = sys.argv[1:5]
    spec = {"name": "sandbox", "config_file": None, "home": home}
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
    drill = subprocess.Popen([sys.executable, "-c", DRILL, str(healthy_sandbox.home),
                              str(ledgers), name, str(out)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert drill.stdout is not None and drill.stderr is not None
        line = drill.stdout.readline()  # blocks until the fault is in (or the drill ends)
        if not line.startswith("fault in"):
            drill.kill()
            pytest.fail(f"the drill did not get the fault in: {line}{drill.stderr.read()}")
        started = time.monotonic()
        drill.send_signal(signum)
        _, err = drill.communicate(timeout=60)
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


def test_every_advice_a_scheduled_check_gives_names_a_runbook_section() -> None:
    for key in ("api", "api-500", "database", "worker", "api-secret", "metrics",
                "database-slow"):
        assert next_steps(key), key
