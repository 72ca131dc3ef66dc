"""Each scenario's outcome, as the on-call engineer reads it: the runbook's words for a
failed check, one line for an undefined step, a drill's record as its verdict, skips and
retries said as what they are; everything redacted before it reaches a report."""

from __future__ import annotations

import re
from collections.abc import Generator

import pytest
from pytest_bdd.exceptions import StepDefinitionNotFoundError

from runbook.errors import CheckFailed
from runbook.harness import parallel, scenarios
from runbook.harness.state import run_state, scenario_state
from runbook.manual import EXPIRED
from runbook.reporting.summary import ScenarioOutcome
from runbook.results import utcnow
from runbook.sections import named_sections

#: What an undefined step's message says (a usage error: the run exits 2).
UNDEFINED = "no step definition for"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if not scenarios.is_scenario(item):
        return report
    state = run_state(item.config)
    scenario = scenario_state(item)
    failed_record = next((r for r in scenario.drill_records if r.verdict != "pass"), None)
    if report.when == "call" and report.passed and failed_record is not None:
        # The drill record's verdict is the only verdict: a scenario never passes beside a
        # record that failed (an inject or a clean-up no step looked at, say).
        verdict = CheckFailed(
            "drill", failed_record.target,
            f"the drill record says {failed_record.verdict.upper()}: " + next(
                (f"phase {p.name!r} failed: {p.detail}" for p in failed_record.phases
                 if not p.ok), "; ".join(failed_record.notes) or "it did not complete"),
            "every phase passed, the figures within the limits",
            (f"read the drill record of {failed_record.drill} under reports/drills/",))
        report.outcome = "failed"
        # On the call itself, so the Allure listener (a wrapper around this one) reports the
        # scenario failed, as pytest and the summary do.
        call.excinfo = pytest.CallInfo.from_call(lambda: _raise(verdict), when="call").excinfo
    failure = call.excinfo.value if call.excinfo is not None else None
    redact = state.redactor
    # Captured output and logs reach the terminal and junit.xml beside the longrepr.
    report.sections = [(title, redact(text)) for title, text in report.sections]
    previous = state.outcomes.get(item.nodeid)
    named = previous.named if previous else ()
    attempts = previous.attempts if previous else 1
    outcome = previous.outcome if previous else "passed"
    message = previous.message if previous else ""
    duration = report.duration + (previous.duration_s if previous else 0.0)
    if previous is not None and report.when == "setup":
        # A retry (--reruns): a pass from here on is flaky, never silently green.
        attempts += 1
        outcome = "retrying" if previous.failed else outcome
    if report.failed and isinstance(failure, StepDefinitionNotFoundError):
        # The feature file and the steps disagree: a usage error (exit 2), said in one line.
        outcome = "error"
        message = redact(_undefined_step(str(failure)))
        report.longrepr = message
    elif report.failed and isinstance(failure, CheckFailed):
        # The runbook's own words are the whole story: no traceback through the harness.
        outcome = "failed" if report.when == "call" else "error"
        report.longrepr = redact(failure.render())
        message = redact(f"{failure.component} on {failure.target}: {failure.seen}")
        named = named_sections(failure.next_steps)
    elif report.failed:
        outcome = "failed" if report.when == "call" else "error"
        crash = getattr(report.longrepr, "reprcrash", None)
        text = getattr(crash, "message", None) or str(report.longrepr)
        message = redact(text.strip().splitlines()[0] if text.strip() else "")
        # Whatever failed, its text reaches the terminal and junit.xml redacted.
        report.longrepr = redact(str(report.longrepr))
    elif report.skipped and outcome == "passed":
        longrepr = report.longrepr
        message = redact(str(longrepr[2]) if isinstance(longrepr, tuple) else "")
        # A manual step whose record is missing or too old is due, not merely skipped.
        if message.startswith("Skipped: "):
            message = message[len("Skipped: "):]
        outcome = "expired" if message.startswith(EXPIRED) else "skipped"
    elif report.when == "teardown" and outcome == "retrying":
        outcome = "flaky"
    state.outcomes[item.nodeid] = ScenarioOutcome(
        nodeid=item.nodeid, name=scenario.name or item.name, feature=scenario.feature,
        sections=scenarios.sections(item), tier=scenarios.tier(item), outcome=outcome,
        duration_s=duration, message=message, attempts=attempts, tags=scenarios.tags(item),
        cadence=scenarios.cadence(item), figures=dict(scenario.figures),
        finished_at=utcnow().isoformat(), named=named,
    )
    wanted = item.config.getoption("--runbook-stop-when-named")
    if wanted and outcome in ("failed", "error") and wanted in named:
        # Detected: what the rest of the round would add is not needed to say so.
        item.session.shouldfail = f"a failure named {wanted!r}: detected"
    if parallel.is_worker(item.config):  # the xdist controller reports it, not this worker
        parallel.attach(report, parallel.Sent(state.outcomes[item.nodeid],
                                              state.target_described, dict(state.versions)))
    return report


def _raise(exc: BaseException) -> None:
    raise exc


def _undefined_step(text: str) -> str:
    """pytest-bdd's message as ``file:line: no step definition for <step>; ...``."""
    found = re.match(r'Step definition is not found: (?P<step>.*?)\. Line (?P<line>\d+) in'
                     r' scenario "(?P<scenario>.*)" in the feature "(?P<file>.*)"', text)
    if found is None:
        return text.strip().splitlines()[0]
    return (f"{found['file']}:{found['line']}: {UNDEFINED} {found['step']}"
            f" (scenario {found['scenario']!r}); fix the wording to match a step in steps/,"
            " or add one")
