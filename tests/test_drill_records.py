"""Records a reviewer can verify: one verdict rule for a record and its JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runbook.drills.record import DrillRecord, Objective, Phase, verdict_of_json

DR = "Disaster Recovery > Recovery Time Objectives"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
#: The runbook's API crash row: 5 minutes, no data.
API_CRASH = Objective(300, 0)


# -- one verdict rule --------------------------------------------------------------------------


def _measured(*, ok: bool = True, rto_s: float | None = 60, rpo_s: float | None = 0,
              objective: Objective = API_CRASH, completed: bool = True) -> DrillRecord:
    """A drill measured as given, at a fixed time."""
    phase = Phase("recover", T0, T0 + timedelta(seconds=5), ok)
    return DrillRecord(
        drill="api-crash", runbook_section=DR, target="t", environment="staging",
        operator="o", host="h", started_at=T0,
        finished_at=T0 + timedelta(minutes=5), objective=objective, phases=(phase,),
        fault_at=T0, recovered_at=None if rto_s is None else T0 + timedelta(seconds=rto_s),
        rpo_s=rpo_s, completed=completed)


@pytest.mark.parametrize(("record", "verdict"), [
    (_measured(), "pass"),
    (_measured(ok=False), "fail"),
    (_measured(rto_s=301), "fail"),
    (_measured(rto_s=None), "fail"),
    (_measured(rpo_s=0.5), "fail"),
    (_measured(rpo_s=None), "fail"),
    (_measured(rpo_s=None, rto_s=None, objective=Objective()), "pass"),
    (_measured(completed=False), "aborted"),
], ids=["pass", "phase failed", "rto over", "rto unmeasured", "rpo over", "rpo unmeasured",
        "no objective", "aborted"])
def test_the_record_and_its_json_give_one_verdict(record: DrillRecord, verdict: str) -> None:
    assert record.verdict == verdict
    document = record.to_json()
    assert verdict_of_json(document) == verdict
    document["verdict"] = "pass" if verdict != "pass" else "fail"
    assert verdict_of_json(document) == verdict, "recomputed, never read back"


def test_a_json_that_is_no_record_is_refused() -> None:
    document = _measured().to_json()
    del document["phases"]
    with pytest.raises(KeyError):
        verdict_of_json(document)
    document = {**_measured().to_json(), "completed": "yes"}
    with pytest.raises(TypeError):
        verdict_of_json(document)
