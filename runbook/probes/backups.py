"""Maintenance Tasks > Weekly "Review database backup status", as a standing check: the newest
backup is younger than the runbook's RPO target for a database failure (1 hour), intact.

Where backups can be read:

* the sandbox: its own backups in ``$RUNBOOK_HOME/sandbox/backups/`` (``runbook.sandbox.
  backups``): the newest one's snapshot time, size, and SHA-256 checked against the
  digest recorded when it was written;
* Railway: not readable by the runbook. Railway's automatic backups are volume backups
  listed in the dashboard (the database service's Backups tab) and its GraphQL API, not by
  the ``railway`` CLI (a ``railway backup`` command, railwayapp/cli#678, was a ``pg_dump``
  wrapper and was closed unmerged): the check says so and is skipped;
* Kubernetes: no standard place for backups either: skipped with the reason.

Read-only; the result's ``observed["unavailable"]`` tells a step to skip.
"""

from __future__ import annotations

from runbook.config import Platform, Target
from runbook.probes import Verdict, run_probe
from runbook.results import ProbeResult, utcnow
from runbook.sandbox.backups import sandbox_backups
from runbook.timeouts import Timeouts

#: The advice key of this check's failures (``runbook.sections.NEXT_STEPS``): "Maintenance
#: Tasks > Weekly: Review database backup status", then "Disaster Recovery > Data Loss
#: Scenarios > Database Corruption: 1-2" (a backup is what those steps restore).
ADVICE = "database-backups"
#: What to do next, also in the problem line itself.
NEXT = "review the backup schedule (Maintenance Tasks > Weekly: review database backup status)"
#: Why a platform's backups cannot be read, by platform.
UNAVAILABLE: dict[Platform, str] = {
    Platform.RAILWAY: (
        "Railway's backups are listed in its dashboard (database service > Backups) and its"
        " GraphQL API, not by the railway CLI: review them there"),
    Platform.KUBERNETES: (
        "a Kubernetes target has no standard backup location the runbook can read: review"
        " the backup job's own status"),
}


def unavailable_reason(target: Target) -> str | None:
    """Why this target's backups cannot be read, or ``None`` when they can."""
    if target.platform is Platform.SANDBOX and target.runbook_home is not None:
        return None
    if target.platform is None:
        return "the target sets no PLATFORM: nowhere known to read backups from"
    return UNAVAILABLE.get(target.platform, f"{target.platform.value} backups are not"
                           " readable by the runbook")


def backup_freshness(target: Target, timeouts: Timeouts, max_age_s: float) -> ProbeResult:
    """The newest backup's age (from its snapshot) is at most ``max_age_s`` and its file is
    intact (size and SHA-256 as recorded). Records the backup's name, snapshot time, age,
    size and how many backups are kept; ``unavailable`` where backups cannot be read."""
    expected = f"a backup younger than {max_age_s:g} s, intact"
    reason = unavailable_reason(target)

    def body() -> Verdict:
        if reason is not None:
            return Verdict(False, expected, f"backups unavailable: {reason}",
                           {"unavailable": True, "platform": str(target.platform)},
                           advice=ADVICE)

        assert target.runbook_home is not None
        backups = sandbox_backups(target.runbook_home)
        observed: dict[str, object] = {"backups": len(backups), "max_age_s": max_age_s}
        if not backups:
            return Verdict(False, expected, "no backup at all: the database cannot be"
                           " restored; take one (runbook sandbox backup)", observed,
                           advice=ADVICE)
        newest = backups[0]
        age = newest.age_s(utcnow())
        observed.update(newest=newest.name, taken_at=newest.taken_at.isoformat(),
                        age_s=round(age, 3), size_bytes=newest.size_bytes,
                        reason=newest.reason)
        damaged = newest.verify()
        if damaged:
            observed["intact"] = False
            return Verdict(False, expected, f"{damaged}; {NEXT}", observed, advice=ADVICE)
        observed["intact"] = True
        if age > max_age_s:
            return Verdict(False, expected, f"the newest backup is {age:.0f} s old: older than"
                           f" the {max_age_s:g} s RPO target; {NEXT}", observed,
                           advice=ADVICE)
        return Verdict(True, expected, observed=observed)

    return run_probe("database", "backup freshness", target, timeouts, body,
                     expected=expected)


__all__ = ["ADVICE", "UNAVAILABLE", "backup_freshness", "unavailable_reason"]
