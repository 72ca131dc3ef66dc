"""How an incident's steps are recorded: each an ``Activity`` named after the runbook's step
("1. check service status"), whose ``command`` is the call that really ran (the platform
adapter's, a probe's: ``library_call``) and whose ``runbook_says`` is the runbook's own
command for it ("railway status"). ``ok`` says the step was carried out; what it found leads
its output ("found: ..."): a failing check is a finding, not a failed step.

``StepLog`` keeps a remedy's activities in order; a step that raises is a failed activity
(the error, redacted), never a crash: the drill goes on to its recovery and its restore.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from runbook.drills.faults import DrillContext
from runbook.platforms.base import Variables, fingerprint, library_call, lines_since, record
from runbook.probes import describe_error
from runbook.probes.logs import summarize as recent_logs_summary
from runbook.redact import Redactor
from runbook.results import Activity, ProbeResult, Stopwatch, Timing, failure

#: Error lines newer than this count as the incident's own (older ones are history).
FRESH_ERRORS = timedelta(minutes=1)
_OUTPUT_DATA_CHARS = 3000


def output(finding: str, data: object = None) -> str:
    """``found: ...`` first, then the evidence as compact JSON (trimmed)."""
    text = f"found: {finding}"
    if data is not None:
        text += "\n" + json.dumps(data, default=str, separators=(",", ":"))[:_OUTPUT_DATA_CHARS]
    return text


def result_text(result: ProbeResult) -> str:
    verdict = "passes" if result.ok else f"FAILS: {result.problem}"
    return f"{result.component} {result.check} {verdict}"


class StepLog:
    """The activities of one remedy, in order (see the module doc)."""

    def __init__(self, context: DrillContext, *secrets_: str) -> None:
        self.context = context
        self.redact = Redactor([*context.target.secret_values(), *secrets_])
        self.activities: list[Activity] = []

    def step(self, name: str, command: Sequence[str],
             body: Callable[[], tuple[bool, str, str]], *, runbook_says: str = "") -> Activity:
        """Run ``body`` (``ok, output, error``) as the step ``name`` and keep its record."""
        watch = Stopwatch()
        try:
            activity = record(name, command, body, self.redact, runbook_says=runbook_says)
        except Exception as exc:
            activity = Activity(name=name, command=tuple(self.redact(c) for c in command),
                                timing=watch.timing(),
                                error=self.redact(describe_error(exc)),
                                runbook_says=self.redact(runbook_says))
        self.activities.append(activity)
        return activity

    def check(self, name: str, function: str, check: Callable[[], ProbeResult],
              finding: Callable[[ProbeResult], str] | None = None, *,
              runbook_says: str = "") -> ProbeResult | None:
        """A read-only check as a runbook step: carried out (ok) whatever it found; the
        finding and the check's evidence are the output. ``None`` when it raised."""
        seen: list[ProbeResult] = []

        def body() -> tuple[bool, str, str]:
            result = check()
            seen.append(result)
            said = finding(result) if finding is not None else result_text(result)
            return True, output(said, result.evidence()), ""

        self.step(name, library_call(function), body, runbook_says=runbook_says)
        return seen[0] if seen else None

    def add(self, activity: Activity, name: str | None = None, *, runbook_says: str = "",
            finding: str = "", ok: bool | None = None) -> Activity:
        """Keep an activity made elsewhere (a platform call), as the runbook's step ``name``:
        ``finding`` leads its output, ``ok`` (when given) says whether it was carried out."""
        performed = activity.ok if ok is None else ok
        shown = "\n".join(part for part in (f"found: {finding}" if finding else "",
                                            activity.output) if part)
        activity = replace(activity, name=name or activity.name, output=self.redact(shown),
                           error="" if performed else failure(name or activity.name,
                                                              activity.error),
                           runbook_says=self.redact(runbook_says or activity.runbook_says))
        self.activities.append(activity)
        return activity

    # -- the platform's steps ---------------------------------------------------------------

    def status(self, name: str, service: str | None = None, *, runbook_says: str) -> Activity:
        """The platform's status; carried out when the platform answered (a service that is
        not running is the finding)."""
        activity = self.context.platform.status(service)
        answered = activity.ok or activity.error.startswith("not running")
        finding = "everything running" if activity.ok else activity.error
        return self.add(activity, name, runbook_says=runbook_says, finding=finding,
                        ok=answered)

    def logs(self, name: str, service: str, *, runbook_says: str, must_show: str = "",
             count: str = "", since: str = "10m") -> Activity:
        """Read ``service``'s recent logs and count their errors (and the lines matching
        the regular expression ``count``). With ``must_show``, the step is carried out only
        when a fresh error line (within ``FRESH_ERRORS``) matches it: the logs must show the
        incident's error. The output keeps the last error lines, not the log."""
        logs = self.context.platform.logs(service, since=since, lines=500)
        summary = recent_logs_summary(logs, since=since)
        fresh = lines_since(list(summary.errors), FRESH_ERRORS)
        shown = [line for line in fresh if must_show and re.search(must_show, line, re.I)]
        finding = (f"{summary.lines} lines, {summary.error_lines} error lines"
                   f" ({len(fresh)} in the last {int(FRESH_ERRORS.total_seconds())} s)")
        if count:
            matching = sum(1 for line in logs.lines if re.search(count, line))
            finding += f", {matching} lines matching /{count}/"
        if summary.error_percent is not None:
            finding += f", {summary.error_percent:g}% of requests answered 5xx"
        latest = (shown or fresh or list(summary.errors) or [""])[-1]
        if latest:
            finding += f"; latest error: {latest}"
        if must_show:
            finding += (f"; the error /{must_show}/ is shown" if shown
                        else f"; NO fresh error line matches /{must_show}/")
        ok = summary.ok and (not must_show or bool(shown))
        activity = replace(summary.activity, output="\n".join(summary.errors[-10:]))
        return self.add(activity, name, runbook_says=runbook_says, finding=finding, ok=ok)

    def restart(self, name: str, service: str, *, runbook_says: str) -> Activity:
        """Restart ``service`` through the platform adapter (ok: it runs again)."""
        return self.add(self.context.platform.restart(service), name,
                        runbook_says=runbook_says)

    def set_variables(self, name: str, service: str, values: dict[str, str | None], *,
                      runbook_says: str) -> Activity:
        """Set ``service``'s variables through the platform (it restarts with them); the
        values are never recorded."""
        self.redact.add([v for v in values.values() if v])
        return self.add(self.context.platform.set_variables(service, values), name,
                        runbook_says=runbook_says)

    def variables(self, service: str, name: str, *, runbook_says: str) -> Variables | None:
        """The platform's fingerprints of ``service``'s variables (``None``, recorded as a
        failed step ``name``, when they cannot be read)."""
        try:
            return self.context.platform.variables(service)
        except Exception as exc:
            error = describe_error(exc)
            self.step(name, library_call("variables", service), lambda: (False, "", error),
                      runbook_says=runbook_says)
            return None

    def compare(self, name: str, variable: str, services: tuple[str, str] = ("api", "worker"),
                *, runbook_says: str) -> bool | None:
        """Fingerprints of ``variable`` on two services (never the values), as the step
        ``name``; whether they match (``None``: cannot tell)."""
        first, second = (self.context.platform.variables(s) for s in services)
        same = first.matches(second, variable)
        prints = ", ".join(f"{v.service} {v.fingerprints.get(variable, 'unset/unreadable')}"
                           for v in (first, second))
        verdict = {True: "the same", False: "DIFFERENT", None: "cannot tell"}[same]
        timing = Timing(first.activity.timing.started_at, second.activity.timing.finished_at,
                        first.activity.elapsed_s + second.activity.elapsed_s)
        self.activities.append(Activity(
            name=name, command=(*first.activity.command, "&&", *second.activity.command),
            timing=timing, output=f"found: {variable} fingerprints {prints}: {verdict}",
            error="; ".join(v.activity.error for v in (first, second) if v.activity.error),
            runbook_says=runbook_says))
        return same


def differing(found: Variables | None, accepted: dict[str, str], names: Sequence[str]
              ) -> tuple[list[str], dict[str, Any]]:
    """The variables among ``names`` whose fingerprint on the service differs from (or is
    missing next to) the value in ``accepted`` (the target's, which the runbook's own checks
    prove the provider accepts); and the evidence (fingerprints only)."""
    differ: list[str] = []
    evidence: dict[str, Any] = {}
    if found is None:  # unreadable: nothing to compare, so nothing to correct
        return differ, {"unreadable": list(names)}
    for name in names:
        mine = found.fingerprints.get(name)
        theirs = fingerprint(accepted[name]) if name in accepted else None
        evidence[name] = {"service": mine, "accepted": theirs}
        if mine != theirs:
            differ.append(name)
    return differ, evidence


__all__ = ["FRESH_ERRORS", "StepLog", "differing", "output", "result_text"]
