"""Maintenance Tasks > Quarterly: "Conduct disaster recovery drill", as a standing check: a
disaster recovery drill of THIS target passed within the quarter, its record verified
against the drill ledger (``runbook drill verify``), of the same environment and endpoint
fingerprint (``provenance``): a sandbox drill never stands for staging or production.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from runbook.config import Target
from runbook.drills import provenance
from runbook.drills.verify import RecordCheck, verify
from runbook.probes import Verdict, run_probe
from runbook.probes.maintenance import DR_DRILL_ADVICE, DR_PART, as_days, parse_moment
from runbook.results import ProbeResult, utcnow
from runbook.timeouts import Timeouts


def _not_counted(check: RecordCheck, ledger_problem: str, environment: str,
                 fingerprint: str) -> str:
    """Why a disaster recovery drill's record does not count for this target ("" when it
    does, its age aside)."""
    if ledger_problem:  # then no record can be trusted to be the one written
        return f"the drill ledger does not verify ({ledger_problem})"
    if not check.ok:
        return "; ".join(check.problems)
    if check.environment != environment:
        return f"a drill of {check.environment or 'no environment'}, not {environment}"
    if check.fingerprint is None:
        return "written without its target's fingerprint, so of no known target"
    if check.fingerprint != fingerprint:
        return (f"a drill of other endpoints (fingerprint {check.fingerprint[:12]}), not this"
                f" target's ({fingerprint[:12]})")
    return ""


def _drill_summary(check: RecordCheck, now: datetime, why: str) -> dict[str, Any]:
    finished = parse_moment(check.finished_at)
    return {"file": check.file, "drill": check.drill, "section": check.section,
            "verdict": check.verdict, "environment": check.environment,
            "fingerprint": check.fingerprint, "finished_at": finished.isoformat(),
            "age_days": as_days((now - finished).total_seconds()), "not_counted": why}


def dr_drill_passed(target: Target, timeouts: Timeouts, records: Path, *, within_days: float,
                    now: datetime | None = None) -> ProbeResult:
    """A disaster recovery drill of THIS target passed within ``within_days``: among the
    drill records in ``records``, one whose section is under the runbook's Disaster Recovery,
    that verifies against the drill ledger (``runbook drill verify``: bytes as written,
    verdict as its phases and figures give it, ledger intact), whose recomputed verdict is
    ``pass``, and whose environment and endpoint fingerprint are the target's
    (``runbook.drills.provenance``). Records what was counted and why every other DR record
    was not."""
    environment, fingerprint = target.environment.value, provenance.fingerprint(target)
    expected = (f"a disaster recovery drill of this target ({environment}, endpoints"
                f" {fingerprint[:12]}) passed within the last {within_days:g} days, its"
                " record verified against the drill ledger")

    def body() -> Verdict:
        moment = now or utcnow()
        if not records.is_dir():
            return Verdict(False, expected,
                           f"no disaster recovery drill is recorded in {records}",
                           {"records": str(records), "dr_drills": 0}, advice=DR_DRILL_ADVICE)
        verification = verify(records)
        ledger_problem = verification.ledger_problems[0] if verification.ledger_problems \
            else ""
        drills: list[dict[str, Any]] = []
        # Records that do not parse (or have no finish time) may be DR drills: named too.
        unreadable = [check.file for check in verification.records if check.document is None]
        for check in verification.records:
            if not check.section.startswith(DR_PART):
                continue
            why = _not_counted(check, ledger_problem, environment, fingerprint)
            try:
                drills.append(_drill_summary(check, moment, why))
            except ValueError:
                unreadable.append(check.file)
        drills.sort(key=lambda d: str(d["finished_at"]), reverse=True)
        ours = [d for d in drills if not d["not_counted"]]
        others = [d for d in drills if d["not_counted"]]
        passed = [d for d in ours if d["verdict"] == "pass"]
        observed: dict[str, Any] = {
            "records": str(records), "environment": environment, "fingerprint": fingerprint,
            "dr_drills": len(drills), "of_this_target": len(ours),
            "not_counted": [{"file": d["file"], "why": d["not_counted"]} for d in others],
            "unreadable": unreadable, "ledger_problems": list(verification.ledger_problems),
            "newest": ours[0] if ours else None, "newest_pass": passed[0] if passed else None,
            "within_days": within_days,
        }
        if passed and passed[0]["age_days"] <= within_days:
            return Verdict(True, expected, observed=observed)
        if passed:
            seen = (f"the last passing disaster recovery drill of this target"
                    f" ({passed[0]['drill']}) finished {passed[0]['age_days']:.0f} days ago,"
                    f" on {passed[0]['finished_at'][:10]}")
        elif ours:
            newest = ours[0]
            seen = (f"no disaster recovery drill passed: {len(ours)} recorded for this target,"
                    f" the newest ({newest['drill']}, {newest['finished_at'][:10]})"
                    f" {newest['verdict']}")
        else:
            seen = (f"no disaster recovery drill of this target ({environment}, endpoints"
                    f" {fingerprint[:12]}) is recorded in {records}")
        skipped = [f"{d['file']} ({d['not_counted']})" for d in others]
        skipped += [f"{name} (not a readable drill record)" for name in unreadable]
        if skipped:
            shown = "; ".join(skipped[:3])
            more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
            seen += f"; not counted: {shown}{more}"
        return Verdict(False, expected, seen, observed, advice=DR_DRILL_ADVICE)

    return run_probe("drill", "disaster recovery drill recency", target, timeouts, body,
                     expected=expected)
