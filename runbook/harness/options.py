"""The runbook's pytest options, the run's state, tags as marks, and the selection by
runbook section or drill."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from runbook.harness import allure_redaction, scenarios
from runbook.harness.state import RunState, start_run
from runbook.redact import Redactor


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runbook", "the executable runbook")
    group.addoption("--target", default=None,
                    help="sandbox, env, or a [targets.NAME] profile of runbook.toml (a bare"
                         " pytest run; the runbook command hands the run its target resolved)")
    group.addoption("--runbook-config", default=None, type=Path,
                    help="the runbook.toml holding target profiles (default ./runbook.toml)")
    group.addoption("--allow-drills", default=None, metavar="ENVIRONMENT",
                    help="let destructive drills run against this environment (staging)")
    group.addoption("--allow-operations", default=None, metavar="ENVIRONMENT",
                    help="let state-changing operations run against this environment")
    group.addoption("--runbook-reports", default=None, type=Path,
                    help="where summary.json goes (default ./reports)")
    group.addoption("--runbook-sections", default=None, metavar="SLUG,...",
                    help="only scenarios restating these runbook sections (@runbook:<slug>)")
    group.addoption("--runbook-drills", default=None, metavar="NAME,...",
                    help="only the @drill scenarios that run these drills (high-cpu, ...)")
    group.addoption("--runbook-stop-when-named", default=None, metavar="SECTION",
                    help="stop the run after the first failure whose next steps name this"
                         " runbook section (a game day's detection round)")


#: The runbook's tags as pytest marks (``--strict-markers`` keeps the feature files to them):
#: registered here, so every run of the scenarios has them, from the package or a checkout.
MARKERS = (
    "synthetic: read-only or self-cleaning canary; allowed against every target",
    "operation: changes state reversibly; never on production unless explicitly allowed",
    "drill: destructive; never on production, staging only with --allow-drills staging",
    "read-only: a drill that only reads the target (a restore test into a scratch database);"
    " production with --allow-operations production",
    "runbook(section): the runbook section a scenario restates (from @runbook:<section>)",
    "runbook-defect: the runbook is wrong about the real system; the scenario asserts reality",
    "manual: a step only a person can do; its result is recorded with who, when, evidence",
    "critical: alert tier, page immediately",
    "warning: alert tier, notify during business hours",
    "info: alert tier, daily digest",
    "daily: maintenance cadence",
    "weekly: maintenance cadence",
    "monthly: maintenance cadence",
    "quarterly: maintenance cadence",
    "rto: measures recovery time against the runbook's RTO",
    "rpo: measures data loss against the runbook's RPO",
)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    state = start_run(config, RunState(
        redactor=Redactor(), reports=config.getoption("--runbook-reports") or Path("reports")))
    # After allure-pytest-bdd registered its file logger: replace it with a redacting one.
    allure_redaction.install(state.redactor, config.add_cleanup)


@pytest.hookimpl(tryfirst=True)
def pytest_bdd_apply_tag(tag: str, function: Callable[..., object]) -> object:
    """``@runbook:<section>`` becomes ``pytest.mark.runbook("<section>")`` (first: pytest-bdd's
    own would make it an unknown mark, and this plugin may be registered before it, ``-p``)."""
    if tag.startswith("runbook:"):
        pytest.mark.runbook(tag.split(":", 1)[1])(function)
        return True
    return None


def _listed(config: pytest.Config, option: str) -> set[str]:
    return {name.strip() for name in (config.getoption(option) or "").split(",") if name.strip()}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--runbook-sections`` and ``--runbook-drills``: keep the scenarios tagged with one of
    the sections or running one of the drills."""
    sections, drills = _listed(config, "--runbook-sections"), _listed(config, "--runbook-drills")
    if not sections and not drills:
        return
    keep = [item for item in items if sections & set(scenarios.sections(item))
            or drills & set(scenarios.drills(item))]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
