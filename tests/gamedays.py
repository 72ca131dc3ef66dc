"""Running game days in the tests, with the engine the features use (``engine.run``).

Detection is by the scheduled suite, through the same runner and features as ``runbook
check``, narrowed (``-k``) to the scheduled scenario each fault must trip, so a test round
costs one scenario, not the whole suite; ``tests/test_drill_verdicts.py`` runs game days
with the full selection through ``runbook drill``, as a user does.

What each game day must come to on the sandbox (``OUTCOMES``): ``pass`` where the runbook's
own steps restore service; ``defect`` where they do not and the corrected procedure does (the
drill then fails, as it must, with what the runbook should add).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runbook.actions.users import CanaryUser
from runbook.drills import detection, engine
from runbook.drills.catalog import DRILLS
from runbook.drills.connection_holder import APPLICATION_NAME
from runbook.drills.faults import DrillContext
from runbook.drills.guard import Guard
from runbook.drills.incidents.database_connection_errors import connection_use
from runbook.drills.incidents.disaster import seeded_check
from runbook.drills.incidents.worker_not_processing import backlog_ids
from runbook.drills.record import DrillRecord, Phase, render_markdown
from runbook.probes import e2e, postgres
from runbook.probes import queues as queue_probe
from runbook.results import ProbeResult
from runbook.targets import RunSpec
from tests.conftest import RunningSandbox

#: The scheduled scenario (a ``-k`` expression) each game day's fault must trip, naming
#: the incident's section.
DETECTED_BY: dict[str, str] = {
    "service-down": "the_api_reports_status_ok",
    "database-connection-errors": "test_the_database_answers",
    "connection-limit-exhausted": "test_the_database_answers",
    "high-cpu": "the_api_processs_cpu",
    "api-500-missing-variable": "a_user_can_log_in",
    "api-500-lost-database": "a_user_can_log_in",
    "worker-not-processing": "the_worker_completes_a_canary_job",
    "invalid-token": "a_requested_release_is_processed",
    "upload-failures-wrong-credentials": "a_users_upload_through_the_apis_presigned_url",
    "upload-failures-bucket-policy": "browsers_can_upload_through_presigned_urls",
    "upload-failures-cors": "browsers_can_upload_through_presigned_urls",
    "email-not-sending-invalid-key": "an_email_the_worker_sends_is_delivered",
    "email-not-sending-unverified-sender": "an_email_the_worker_sends_is_delivered",
    "data-breach": "no_address_is_guessing_passwords",
    "slow-query-performance": "no_query_runs_over_500_milliseconds",
}
#: ``pass``: the runbook's steps restore service; ``defect``: they do not (measured).
OUTCOMES: dict[str, str] = {
    "service-down": "pass",
    "database-connection-errors": "defect",
    "connection-limit-exhausted": "defect",
    "high-cpu": "defect",
    "api-500-missing-variable": "defect",
    "api-500-lost-database": "defect",
    "worker-not-processing": "pass",
    "invalid-token": "defect",
    "upload-failures-wrong-credentials": "pass",
    "upload-failures-bucket-policy": "pass",
    "upload-failures-cors": "pass",
    "email-not-sending-invalid-key": "pass",
    "email-not-sending-unverified-sender": "pass",
    "data-breach": "pass",
    "slow-query-performance": "defect",
}
#: The Gherkin's limits (features/*.feature), the only place they are stated.
LIMITS = engine.Limits(detect_within_s=60, rto_s=300)


def spec(box: RunningSandbox) -> RunSpec:
    return RunSpec.sandbox(box.home)


def steady(user: CanaryUser) -> engine.Check:
    """The end-to-end round trip as ``user``: the steady state and the recovery check."""
    def check(context: DrillContext) -> ProbeResult:
        return e2e.round_trip(context.target, context.timeouts, user.email, user.password)
    return check


def narrowed(evidence: Path, name: str) -> detection.Detector:
    """The scheduled suite, narrowed to the scenario ``name``'s fault must trip."""
    return detection.scheduled_suite(evidence, extra=("-k", DETECTED_BY[name]))


def run(name: str, box: RunningSandbox, context: DrillContext, user: CanaryUser,
        tmp_path: Path, *, detector: detection.Detector | None = None,
        limits: engine.Limits = LIMITS) -> DrillRecord:
    """Run game day ``name`` under an armed guard; the record (also written by the engine's
    ``on_record``, which must see the same one)."""
    records: list[DrillRecord] = []
    with Guard.arm(tmp_path / "guard", spec(box)) as guard:
        record = engine.run(DRILLS[name], context, limits=limits, guard=guard,
                            steady=steady(user), on_record=records.append,
                            evidence_dir=tmp_path / "detection",
                            detector=detector or narrowed(tmp_path / "detection", name))
    assert records == [record]
    return record


def phases(record: DrillRecord) -> dict[str, Phase]:
    return {p.name: p for p in record.phases}


def explain(record: DrillRecord) -> str:
    """The record as a reviewer reads it, for a failing assertion's message."""
    return render_markdown(record)


def activities(record: DrillRecord, phase: str = "follow the runbook"
               ) -> dict[str, dict[str, Any]]:
    found = phases(record).get(phase)
    return {str(a["name"]): dict(a) for a in (found.evidence if found else ())}


def assert_outcome(name: str, record: DrillRecord) -> None:
    """The record says what the runbook's steps did, as ``OUTCOMES`` expects, detected by
    the scheduled scenario that names the incident's section."""
    report = explain(record)
    found = phases(record)
    section = DRILLS[name].section
    assert found["detect"].ok, report
    by = record.evidence["detection"]["detected_by"]
    assert by and all(section in failure["named"] for failure in by), report
    assert record.time_to_detect_s is not None and record.time_to_detect_s >= 0, report
    assert found["restore"].ok and found["clean up"].ok, report
    if OUTCOMES[name] == "pass":
        assert record.verdict == "pass", report
        assert record.rto_s is not None and record.rto_s > 0, report
        assert "corrected procedure" not in found, report
    else:
        assert record.verdict == "fail", report
        assert not found["recover"].ok, report
        assert "the fault is still in place" in found["recover"].detail, report
        assert record.rto_s is None, report
        assert f"runbook defect: {DRILLS[name].defect}" in record.notes, report
        assert found["corrected procedure"].ok, report


def assert_healthy(box: RunningSandbox, context: DrillContext,
                   user: CanaryUser | None = None) -> None:
    """Every component running with no override and no stored variable left; the API (the
    round trip as ``user``, else as the seeded canary), the database and the worker answer;
    no holder connections and no backlog jobs left."""
    status = box.sandbox.status()
    assert status.running, {n: c.state for n, c in status.components.items()}
    assert not [n for n, c in status.components.items() if c.env_overrides]
    assert box.sandbox.stored_variables() == {}
    round_trip = steady(user) if user is not None else seeded_check()
    for result in (round_trip(context), postgres.answers(context.target, context.timeouts),
                   queue_probe.workers(context.target, context.timeouts, "email")):
        assert result.ok, result.problem
    holders = [g for g in connection_use(context).groups if g[0] == APPLICATION_NAME]
    assert not holders, holders

    async def leftovers(bull: Any, connection: Any) -> int:
        return sum([await connection.exists(f"bull:email:{i}") for i in backlog_ids("email", 3)])

    assert queue_probe.run_async(context.target.require("REDIS_URL"), context.timeouts,
                                 "email", leftovers) == 0


def no_secret_in(record: DrillRecord, secrets: list[str]) -> None:
    document = json.dumps(record.to_json())
    assert not [s for s in secrets if s in document], "a secret reached the drill record"


def matrix_line(name: str, record: DrillRecord, wall: float) -> str:
    """One row of the detection matrix: incident, scheduled scenarios that fired, the
    section named, time to detect, the outcome."""
    by = record.evidence["detection"]["detected_by"]
    scenarios = ", ".join(dict.fromkeys(f["scenario"] for f in by)) or "-"
    ttd = record.time_to_detect_s
    return (f"FAULT MATRIX | {name} | {scenarios} | {DRILLS[name].section} |"
            f" {'-' if ttd is None else f'{ttd:.2f} s'} | {record.verdict} | wall {wall:.1f} s")


Secrets = Callable[[RunningSandbox], list[str]]


def secret_values(box: RunningSandbox) -> list[str]:
    return [v for v in box.sandbox.secrets().values() if len(v) >= 8]
