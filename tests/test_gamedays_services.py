"""Game days for the runbook's service incidents, against the real sandbox.

Each game day is run by the engine (``gameday.run``) under an armed restoration guard, with
the end-to-end round trip of a canary user as the steady state. It must pass: the incident's
check failed and its advice named the runbook subsection, the runbook's steps (corrected
where they are wrong) restored service, time to detect and time to recover were measured,
the fault was reverted and the sandbox is healthy afterwards. Each prints its row of the
fault matrix (run with ``-s`` to see them).

Then the drill is interrupted while the fault is in: SIGINT and SIGTERM (restored in-process
by ``finally``) and SIGKILL (restored by the guard), and the sandbox is healthy afterwards.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runbook.actions.users import CanaryUser, canary_user
from runbook.config import Target
from runbook.drills import gameday
from runbook.drills.catalog import GAMEDAYS as CATALOG
from runbook.drills.context import context_for
from runbook.drills.faults import DrillContext
from runbook.drills.faults_services import backlog_ids, on_queue, override_for, without_password
from runbook.drills.guard import Guard
from runbook.drills.holder import APPLICATION_NAME
from runbook.drills.incidents_services import (
    CONNECTION_LIMIT,
    GAMEDAYS,
    ConnectionUse,
    api_round_trip,
    connection_use,
    database_answers,
    narrow_500,
    worker_backlog,
)
from runbook.drills.record import DrillRecord, render_markdown, write_record
from runbook.errors import ConfigError
from runbook.probes import e2e
from runbook.redact import Redactor
from runbook.results import ProbeResult, Timing, utcnow
from runbook.sandbox.services.api import CHAOS_CPU_HOG, start_cpu_hog
from runbook.sections import next_steps
from runbook.wait import wait_until
from tests.conftest import RunningSandbox

#: The advice key the failing check must carry (``runbook.sections.NEXT_STEPS``).
_ADVICE = {
    "service-down": "api",
    "database-connection-errors": "database",
    "connection-limit-exhausted": "database",
    "high-cpu": "metrics",
    "api-500-missing-variable": "api-500",
    "api-500-lost-database": "api-500",
    "worker-not-processing": "worker",
    "invalid-token": "api-secret",
}
#: Game days whose remedy must show the runbook's steps failing, then the correction.
MEASURED_DEFECTS = {"database-connection-errors", "connection-limit-exhausted", "high-cpu",
                    "api-500-lost-database", "invalid-token"}
#: What the failing check must have said, per game day.
DETECTED = {
    "service-down": r"cannot connect|Connection refused",
    "database-connection-errors": r"Connection refused",
    "connection-limit-exhausted": CONNECTION_LIMIT.pattern,
    "high-cpu": r"CPU over",
    "api-500-missing-variable": r"HTTP 500",
    "api-500-lost-database": r"HTTP 500",
    "worker-not-processing": r"no worker is registered.*job\(s\) waiting",
    "invalid-token": r"Invalid or expired token",
}


def _spec(box: RunningSandbox) -> dict[str, str | None]:
    return {"name": "sandbox", "config_file": None, "home": str(box.home)}


@pytest.fixture(scope="module")
def canary(sandbox: RunningSandbox) -> Iterator[CanaryUser]:
    """A canary user for the steady-state round trip, removed after the module."""
    context = context_for(_spec(sandbox))
    with canary_user(context.target, context.timeouts) as user:
        yield user


@pytest.fixture
def context(healthy_sandbox: RunningSandbox) -> DrillContext:
    return context_for(_spec(healthy_sandbox))


def _steady(user: CanaryUser) -> gameday.Check:
    def check(context: DrillContext) -> ProbeResult:
        return e2e.round_trip(context.target, context.timeouts, user.email, user.password)

    return check


def _secret_values(box: RunningSandbox) -> list[str]:
    return [v for v in box.sandbox.secrets().values() if len(v) >= 8]


def assert_healthy(box: RunningSandbox, context: DrillContext) -> None:
    """Every component running as configured; the API, database and worker answer; no
    holder connections and no backlog jobs left."""
    status = box.sandbox.status()
    assert status.running, {n: c.state for n, c in status.components.items()}
    assert not [n for n, c in status.components.items() if c.env_overrides]
    for check in (api_round_trip, database_answers, worker_backlog):
        result = check(context)
        assert result.ok, result.problem
    holders = [g for g in connection_use(context).groups if g[0] == APPLICATION_NAME]
    assert not holders, holders

    async def leftovers(bull: Any, connection: Any) -> int:
        return sum([await connection.exists(f"bull:email:{i}") for i in backlog_ids("email", 3)])

    assert on_queue(context.target, context.timeouts, "email", leftovers) == 0


def _follow(record: DrillRecord) -> list[dict[str, object]]:
    phase = next(p for p in record.phases if p.name == "follow the runbook")
    return [dict(e) for e in phase.evidence]


def test_every_game_day_is_in_the_catalogue_with_json_params() -> None:
    assert set(GAMEDAYS) == set(DETECTED)
    for name, day in GAMEDAYS.items():
        assert CATALOG[name] is day
        assert day.diagnosis == day.section
        assert next_steps(_ADVICE[name]), f"no advice {_ADVICE[name]!r} for {name}"
        assert json.loads(json.dumps(dict(day.params))) == dict(day.params), name


def test_without_password_keeps_everything_but_the_password() -> None:
    url = "postgresql://app:s3cr3t-pw@127.0.0.1:5432/legacyvideo?schema=public"
    assert without_password(url) == "postgresql://app@127.0.0.1:5432/legacyvideo?schema=public"
    with pytest.raises(ConfigError):
        without_password("postgresql://app@127.0.0.1:5432/legacyvideo")


def test_an_override_never_takes_a_secret_from_the_parameters() -> None:
    target = Target.from_variables("t", {"DATABASE_URL": "postgresql://a:pw12345@h:1/d"},
                                   source="test", environment="sandbox", platform="sandbox")
    with pytest.raises(ConfigError, match="is a secret"):
        override_for(target, {"variable": "API_SECRET", "change": "set", "value": "x"})
    first = override_for(target, {"variable": "API_SECRET", "change": "random"})
    assert first != override_for(target, {"variable": "API_SECRET", "change": "random"})
    assert override_for(target, {"variable": "X", "change": "unset"}) == {"X": None}
    dropped = override_for(target, {"variable": "DATABASE_URL", "change": "drop-password"})
    assert dropped == {"DATABASE_URL": "postgresql://a@h:1/d"}
    with pytest.raises(ConfigError, match="unknown change"):
        override_for(target, {"variable": "X", "change": "flip"})


def test_a_5xx_in_the_round_trip_is_diagnosed_as_api_returns_500() -> None:
    now = utcnow()

    def result(ok: bool, **observed: int) -> ProbeResult:
        return ProbeResult("api", "end to end", "t", ok, Timing(now, now, 0.0),
                           observed=observed, advice="api")

    assert narrow_500(result(False, health_status=200, login_status=500)).advice == "api-500"
    assert narrow_500(result(False, health_status=200, login_status=401)).advice == "api"
    assert narrow_500(result(False, health_status=503)).advice == "api"
    assert narrow_500(result(True, login_status=200)).advice == "api"


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


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(GAMEDAYS))
def test_game_day(name: str, healthy_sandbox: RunningSandbox, context: DrillContext,
                  canary: CanaryUser, tmp_path: Path) -> None:
    day = GAMEDAYS[name]
    secrets = _secret_values(healthy_sandbox)
    assert not [s for s in secrets if s in json.dumps(dict(day.params))]
    records: list[DrillRecord] = []
    failures: list[ProbeResult] = []

    def detect(ctx: DrillContext) -> ProbeResult:
        result = day.detect(ctx)
        if not result.ok:
            failures.append(result)
        return result

    started = time.monotonic()
    with Guard.arm(tmp_path / "guard", _spec(healthy_sandbox)) as guard:
        record = gameday.run(replace(day, detect=detect), context, steady=_steady(canary),
                             guard=guard, on_record=records.append)
    wall = time.monotonic() - started
    assert records == [record]
    report = render_markdown(record)
    assert record.verdict == "pass", report
    assert record.time_to_detect_s is not None and record.rto_s is not None, report
    phases = {p.name: p for p in record.phases}
    assert phases["restore"].ok, report

    failure = phases["detect"].evidence[0]
    assert re.search(DETECTED[name], str(failure["problem"])), failure["problem"]
    assert failures and failures[0].advice == _ADVICE[name], failures[:1]
    assert [line for line in next_steps(failures[0].advice)
            if line.startswith(day.diagnosis)], report

    steps = _follow(record)
    defects = [s for s in steps if str(s["name"]).startswith("runbook defect")]
    corrections = [s for s in steps if str(s["name"]).startswith("correction")]
    if name in MEASURED_DEFECTS:
        assert defects and corrections, report
        assert day.defect and "runbook defect: " + day.defect in str(defects[0]["output"])
    else:
        assert not defects, report
    assert str(steps[-1]["name"]).startswith("verify") and steps[-1]["ok"], report
    if name == "connection-limit-exhausted":
        limits = next(s for s in steps if str(s["name"]).startswith("4. check connection"))
        assert "LIMIT REACHED" in str(limits["output"]), limits
    if name == "worker-not-processing":
        assert failure["observed"]["waiting"] >= 3, failure

    document = json.dumps(record.to_json())
    assert not [s for s in secrets if s in document], "a secret reached the drill record"
    written = write_record(record, tmp_path / "drills", Redactor(secrets))
    assert all(not [s for s in secrets if s in p.read_text()] for p in written)
    assert_healthy(healthy_sandbox, context)

    print(f"\nFAULT MATRIX | {name} | fault {day.fault} {dict(day.params)} | failed check:"
          f" {failure['component']} {failure['check']}: {failure['problem']} | names:"
          f" {day.diagnosis} | time to detect {record.time_to_detect_s:.3f} s (verdict after"
          f" {phases['detect'].elapsed_s:.3f} s) | time to recover {record.rto_s:.3f} s |"
          f" defect: {'measured' if defects else 'none'} | wall {wall:.1f} s")


# -- interrupted drills ----------------------------------------------------------------------

DRILL = textwrap.dedent("""
    import json, sys, time
    from dataclasses import replace
    from pathlib import Path
    from runbook.drills import gameday
    from runbook.drills.catalog import GAMEDAYS
    from runbook.drills.context import context_for
    from runbook.drills.guard import Guard
    from runbook.drills.incidents_services import api_round_trip

    home, ledgers, name, out = sys.argv[1:5]
    spec = {"name": "sandbox", "config_file": None, "home": home}
    context = context_for(spec)
    day = GAMEDAYS[name]

    def stalled(ctx):
        result = day.detect(ctx)
        print("fault in:", result.problem, flush=True)
        time.sleep(60)  # the signal arrives here, with the fault in
        return result

    def keep(record):
        Path(out).write_text(json.dumps(record.to_json()))

    guard = Guard.arm(Path(ledgers), spec)
    try:
        gameday.run(replace(day, detect=stalled), context, steady=api_round_trip,
                    guard=guard, on_record=keep)
    finally:
        guard.disarm()
""")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("name", "signum"), [
    ("connection-limit-exhausted", signal.SIGINT),
    ("worker-not-processing", signal.SIGTERM),
    ("connection-limit-exhausted", signal.SIGKILL),
], ids=["SIGINT", "SIGTERM", "SIGKILL-guard"])
def test_an_interrupted_game_day_leaves_the_sandbox_healthy(
        name: str, signum: signal.Signals, healthy_sandbox: RunningSandbox,
        context: DrillContext, tmp_path: Path) -> None:
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
        if not line.startswith("fault in:"):
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
        assert f"reverted {GAMEDAYS[name].fault}: ok" in log, log
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
    assert_healthy(healthy_sandbox, context)
    print(f"\n{name}: {signal.Signals(signum).name} with the fault in; restored by"
          f" {restored_by}; healthy {time.monotonic() - started:.1f} s after the signal")
