"""Game days of LegacyVideo's own services (the API, the worker), against the real sandbox:
Service Down, High Memory/CPU Usage, API Returns 500 Error (a wrong stored variable), Worker
Not Processing Jobs, "Invalid or Expired Token" Errors.

Each runs on the engine under an armed restoration guard, with the end-to-end round trip of
a canary user as the steady state, detected by the scheduled scenario that must trip, and
must come to what ``OUTCOMES`` says (``tests/gamedays.py``): passed where the runbook's
steps restore service, failed with the defect recorded (and the corrected procedure proven)
where they do not. The sandbox is healthy afterwards either way. Run with ``-s`` to see
each game day's row of the detection matrix.

Then the services' variables as faults: a misconfiguration survives a plain restart, as a
real one does, and never takes a secret from its parameters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest

from runbook.actions import journeys
from runbook.actions.users import CanaryUser
from runbook.config import Target
from runbook.drills import engine, faults
from runbook.drills.catalog import DRILLS
from runbook.drills.faults import DrillContext
from runbook.drills.service_variables import value_for, without_password
from runbook.errors import ConfigError
from runbook.platforms import platform_for
from runbook.probes import resources
from runbook.results import ProbeResult, Timing, utcnow
from runbook.sandbox.procs import RUNAWAY_AUTOGROUP_NICE, SERVICE_AUTOGROUP_NICE
from runbook.sandbox.services.api import CHAOS_CPU_HOG, start_cpu_hog
from runbook.wait import wait_until
from tests import gamedays
from tests.conftest import RunningSandbox

SERVICE_GAMEDAYS = ["service-down", "high-cpu", "api-500-missing-variable",
                    "worker-not-processing", "invalid-token"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", SERVICE_GAMEDAYS)
def test_game_day(name: str, healthy_sandbox: RunningSandbox, context: DrillContext,
                  canary: CanaryUser, tmp_path: Path,
                  cpu_hog_turn: Callable[[], AbstractContextManager[None]]) -> None:
    secrets = gamedays.secret_values(healthy_sandbox)
    assert not [s for s in secrets if s in json.dumps(dict(DRILLS[name].params))]
    started = time.monotonic()
    # The API's CPU over the alert threshold needs the hog on a core of its own: under the
    # suite's four workers on two cores the first round can read it under 80% and the second
    # names it, past the Gherkin's 60 s. Detection by the scheduled suite is what this test
    # holds; the Gherkin's limit is the quick start's (scripts/quickstart, a quiet machine).
    limits = (engine.Limits(detect_within_s=150, rto_s=gamedays.LIMITS.rto_s)
              if name == "high-cpu" else gamedays.LIMITS)
    with cpu_hog_turn() if name == "high-cpu" else nullcontext():
        record = gamedays.run(name, healthy_sandbox, context, canary, tmp_path, limits=limits)
    gamedays.assert_outcome(name, record)
    report = gamedays.explain(record)
    steps = gamedays.activities(record)
    # The calls that really ran, never a CLI that did not: the runbook's own command is
    # shown beside them ("the runbook says").
    assert not [a for a in steps.values() if a["command"][:1] in (["railway"], ["psql"],
                                                                  ["curl"], ["aws"])], report
    assert any(a["runbook_says"] for a in steps.values()), report
    if name == "invalid-token":
        assert "DIFFERENT" in str(steps["compare API_SECRET again"]["output"]), report
    gamedays.no_secret_in(record, secrets)
    gamedays.assert_healthy(healthy_sandbox, context, canary)
    print("\n" + gamedays.matrix_line(name, record, time.monotonic() - started))


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


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(),
                    reason="the kernel has no autogroup scheduler to give a share in")
def test_the_cpu_hog_takes_a_runaways_cpu_share() -> None:
    """The hogging API's session gets the largest CPU share (a platform gives the runaway's
    container a vCPU of its own); a service without the hog keeps the services' share."""
    if not os.access("/proc/self/autogroup", os.W_OK) or os.geteuid() != 0:
        pytest.skip("raising an autogroup's share needs CAP_SYS_NICE")
    # As the supervisor starts the API: a session of its own with the services' share.
    program = ("import os, sys; from runbook.sandbox.procs import reserve_cpu_share;"
               " from runbook.sandbox.services.api import start_cpu_hog;"
               " reserve_cpu_share(os.getpid());"
               " start_cpu_hog({'RUNBOOK_CHAOS_CPU_HOG': sys.argv[1]});"
               " print(open('/proc/self/autogroup').read())")
    shares = {}
    for hog in ("1", "0"):
        done = subprocess.run([sys.executable, "-c", program, hog], capture_output=True,
                              text=True, timeout=60, start_new_session=True, check=False)
        assert done.returncode == 0, done.stderr
        shares[hog] = done.stdout.split("nice")[-1].strip()
    assert shares == {"1": str(RUNAWAY_AUTOGROUP_NICE), "0": str(SERVICE_AUTOGROUP_NICE)}


# -- a misconfiguration lives where a real one does ------------------------------------------


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


#: The misconfiguration faults, and the check that shows each while it is in. The CPU hog
#: burns a core, but under the suite's four workers on two cores the restarted API can be
#: scheduled below the runbook's 80% for tens of seconds (CI, 2026-12-02: under 80% for 21 s):
#: half a core still tells a burning API from an idle one (a few percent), whatever the load.
MISCONFIGURATIONS = {
    "high-cpu": lambda c: resources.api_cpu(c.target, c.timeouts, limit_percent=50),
    "api-500-missing-variable": lambda c: journeys.login(c.target, c.timeouts),
    "invalid-token": lambda c: journeys.release(c.target, c.timeouts),
    "upload-failures-wrong-credentials": lambda c: journeys.upload(c.target, c.timeouts),
    "email-not-sending-invalid-key": lambda c: journeys.email(c.target, c.timeouts),
    "email-not-sending-unverified-sender": lambda c: journeys.email(c.target, c.timeouts),
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(MISCONFIGURATIONS))
def test_a_misconfiguration_survives_a_plain_restart(
        name: str, healthy_sandbox: RunningSandbox, context: DrillContext,
        cpu_hog_turn: Callable[[], AbstractContextManager[None]]) -> None:
    with cpu_hog_turn() if name == "high-cpu" else nullcontext():
        _survives_a_plain_restart(name, healthy_sandbox, context)


def _survives_a_plain_restart(name: str, healthy_sandbox: RunningSandbox,
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
        seen = wait_until(lambda: not check(context).ok, timeout=45, interval=0.5)
        assert seen.ok, f"{name}: the incident's check passes after a plain restart"
    finally:
        reverted = spec.revert(context, params)
    assert reverted.ok, reverted.error
    assert spec.present is not None and spec.present(context, params) is None
    assert check(context).ok
    assert healthy_sandbox.sandbox.stored_variables() == {}
