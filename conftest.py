"""pytest wiring for the executable runbook: options, the target fixture, safety gates,
tags, evidence, the runbook summary and the exit codes.

Step modules are registered here, once; scenarios are bound in ``steps/test_runbook.py``.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import allure
import pytest
from pytest_bdd.exceptions import StepDefinitionNotFoundError
from pytest_bdd.parser import ScenarioTemplate
from pytest_bdd.scenario import scenario_wrapper_template_registry

from harness import allure_labels, allure_redaction, parallel
from runbook import features, targets
from runbook.actions.users import CanaryPool
from runbook.config import (
    Environment,
    Target,
    TargetChoice,
    choose_target,
    setting_secrets,
)
from runbook.drills.catalog import DRILLS
from runbook.drills.faults import DrillContext
from runbook.drills.guard import Guard
from runbook.drills.record import DrillRecord, PhaseListener, ProgressFile, write_record
from runbook.errors import CheckFailed, ConfigError, RunbookError
from runbook.manual import EXPIRED
from runbook.platforms import NoPlatform, PlatformAdapter, RecordingPlatform, platform_for
from runbook.redact import Redactor, redact_log_records
from runbook.reporting.summary import (
    CADENCES,
    EXIT_USAGE,
    ScenarioOutcome,
    append_history,
    exit_code,
    render,
    staleness,
    write_summary,
)
from runbook.results import ProbeResult, utcnow
from runbook.safety import KINDS, check_gate
from runbook.sections import RUNBOOK_FILE, Heading, named_sections, parse_headings
from runbook.timeouts import Timeouts

pytest_plugins = [
    "pytester",
    "steps.target",
    "steps.service",
    "steps.database",
    "steps.queue",
    "steps.storage",
    "steps.email",
    "steps.metrics",
    "steps.platform",
    "steps.users",
    "steps.drill",
    "steps.manual",
    "steps.maintenance",
]

CHOICE = pytest.StashKey[TargetChoice]()
OUTCOMES = pytest.StashKey[dict[str, ScenarioOutcome]]()
SCENARIO = pytest.StashKey[tuple[str, str]]()
REDACTOR = pytest.StashKey[Redactor]()
ATTACHED = pytest.StashKey[set[int]]()
TARGET_NAME = pytest.StashKey[str]()
HEADINGS = pytest.StashKey[dict[str, "Heading"]]()
VERSIONS = pytest.StashKey[dict[str, str]]()
FIGURES = pytest.StashKey[dict[str, float]]()
STARTED = pytest.StashKey[str]()
DRILL_RECORDS = pytest.StashKey[list[DrillRecord]]()
#: What an undefined step's message says (a usage error: the run exits 2).
UNDEFINED = "no step definition for"
TIERS = ("critical", "warning", "info")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runbook", "the executable runbook")
    group.addoption("--target", default=None,
                    help="sandbox, env, or a [targets.NAME] profile of runbook.toml")
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


def _template(item: pytest.Item) -> ScenarioTemplate | None:
    function = getattr(item, "obj", None)
    return scenario_wrapper_template_registry.get(function) if callable(function) else None


def _is_scenario(item: pytest.Item) -> bool:
    return _template(item) is not None


def _sections(item: pytest.Item) -> tuple[str, ...]:
    """The ``@runbook:`` sections of a scenario, its own before its feature's."""
    template = _template(item)
    if template is None:
        return ()
    own = sorted(t.split(":", 1)[1] for t in template.tags if t.startswith("runbook:"))
    inherited = sorted(t.split(":", 1)[1] for t in template.feature.tags
                       if t.startswith("runbook:"))
    return tuple(dict.fromkeys(own + inherited))


def _tags(item: pytest.Item) -> tuple[str, ...]:
    """The scenario's own tags, then its feature's, as written (``runbook:...`` included)."""
    template = _template(item)
    if template is None:
        return ()
    return tuple(dict.fromkeys(sorted(template.tags) + sorted(template.feature.tags)))


def _cadence(item: pytest.Item) -> str | None:
    return next((c for c in CADENCES if item.get_closest_marker(c)), None)


def _runs_scenarios(config: pytest.Config) -> bool:
    return CHOICE in config.stash


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[OUTCOMES] = {}
    config.stash[REDACTOR] = Redactor()
    config.stash[STARTED] = utcnow().isoformat()
    # After allure-pytest-bdd registered its file logger: replace it with a redacting one.
    allure_redaction.install(config.stash[REDACTOR], config.add_cleanup)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under pytest-xdist the controller checks the target and the gates on its own
    collection and gathers the outcomes its workers send (see harness/parallel.py)."""
    config = session.config
    if not parallel.is_controller(config):
        return

    def received(sent: parallel.Sent) -> None:
        config.stash[OUTCOMES][sent.outcome.nodeid] = sent.outcome
        if sent.target:
            config.stash[TARGET_NAME] = sent.target
        config.stash.setdefault(VERSIONS, {}).update(sent.versions)

    config.pluginmanager.register(parallel.Controller(received), "runbook-parallel")


def pytest_bdd_apply_tag(tag: str, function: Callable[..., object]) -> object:
    """``@runbook:<section>`` becomes ``pytest.mark.runbook("<section>")``."""
    if tag.startswith("runbook:"):
        pytest.mark.runbook(tag.split(":", 1)[1])(function)
        return True
    return None


def _environment_of(choice: TargetChoice) -> Environment:
    if choice.kind == "sandbox":
        return Environment.SANDBOX
    return Environment(choice.variables.get("RUNBOOK_ENVIRONMENT", "production"))


def _drills(item: pytest.Item) -> tuple[str, ...]:
    """The drills a scenario runs (its step's quoted name, an outline's from its row)."""
    template = _template(item)
    if template is None:
        return ()
    callspec = getattr(item, "callspec", None)
    row = callspec.params.get("_pytest_bdd_example") if callspec is not None else None
    return features.drill_names((step.name for step in template.steps), row or None)


def _listed(config: pytest.Config, option: str) -> set[str]:
    return {name.strip() for name in (config.getoption(option) or "").split(",") if name.strip()}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--runbook-sections`` and ``--runbook-drills``: keep the scenarios tagged with one of
    the sections or running one of the drills."""
    sections, drills = _listed(config, "--runbook-sections"), _listed(config, "--runbook-drills")
    if not sections and not drills:
        return
    keep = [item for item in items
            if sections & set(_sections(item)) or drills & set(_drills(item))]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    """Choose and validate the target, then apply the safety gates: a misconfigured target
    exits 2 and a refused drill exits 3, before any scenario runs, not half-way through."""
    config = session.config
    scenarios = [item for item in session.items if _is_scenario(item)]
    if not scenarios:
        return
    config.stash[REDACTOR].add(setting_secrets(os.environ))
    try:
        choice = choose_target(config.getoption("--target"),
                               config_file=config.getoption("--runbook-config"))
        if choice.kind != "sandbox":
            # Known now, so redaction holds from the first line the run prints.
            config.stash[REDACTOR].add(Target.from_variables(
                choice.name, choice.variables, source=choice.source).secret_values())
    except ConfigError as exc:
        if parallel.is_worker(config):
            return  # the xdist controller said so, once, and hands out no scenario
        pytest.exit(f"configuration error: {exc}", returncode=exc.exit_code)
    config.stash[CHOICE] = choice
    # Log records too, whoever writes them (captured, live, --log-file): client libraries
    # log credentials at DEBUG, botocore its Authorization header.
    config.add_cleanup(redact_log_records(config.stash[REDACTOR]))
    if parallel.is_worker(config):
        return  # the controller checked the gates on its own collection (harness/parallel.py)
    environment = _environment_of(choice)
    for item in scenarios:
        for kind in KINDS:
            if item.get_closest_marker(kind) is None:
                continue
            try:
                check_gate(kind, environment, target_name=choice.name,
                           allow_drills=config.getoption("--allow-drills"),
                           allow_operations=config.getoption("--allow-operations"),
                           read_only=item.get_closest_marker("read-only") is not None)
            except RunbookError as exc:
                pytest.exit(f"{exc} [{item.name}]", returncode=exc.exit_code)
    # Only a drill the gates allow gets this far; it still never shares the target.
    if parallel.is_controller(config):
        changing = next((item for item in scenarios if item.get_closest_marker("drill")
                         or item.get_closest_marker("operation")), None)
        if changing is not None:
            pytest.exit(f"drills and operations never run in parallel: each changes the target"
                        f" (a fault, a restart) the other scenarios would be checking; run them"
                        f" without --workers (pytest -n) [{changing.name}]",
                        returncode=EXIT_USAGE)


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def timeouts() -> Timeouts:
    """Connect, read and per-probe deadlines (``RUNBOOK_*_TIMEOUT`` to change them)."""
    return Timeouts.from_env()


@pytest.fixture(autouse=True)
def _target_for_scenarios(request: pytest.FixtureRequest) -> None:
    """Every scenario resolves the target first, so its secrets are known to the redactor
    even when no step of the scenario asks for it."""
    if _is_scenario(request.node):
        request.getfixturevalue("target")


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The LegacyVideo under test, resolved afresh for each scenario (a disaster drill may
    have rebuilt the sandbox on new ports); the sandbox is started when it is down."""
    config = request.config
    choice = config.stash[CHOICE]
    home = Path(os.environ.get("RUNBOOK_HOME", ".runbook")).resolve()
    try:
        resolved = targets.resolve(choice, home)
    except RunbookError as exc:
        pytest.exit(f"{type(exc).__name__}: {exc}", returncode=exc.exit_code)
    config.stash[REDACTOR].add(resolved.secret_values())
    config.stash[TARGET_NAME] = resolved.describe()
    yield resolved


@pytest.fixture(scope="session")
def canary_pool() -> Iterator[CanaryPool]:
    """The run's canary user, shared by the canary journeys (one made per run and target,
    not one per journey), removed when the run ends; a removal that fails is a warning."""
    pool = CanaryPool()
    yield pool
    for problem in pool.close():
        warnings.warn(f"a canary user was not removed: {problem}", stacklevel=1)


@pytest.fixture
def scenario_name(request: pytest.FixtureRequest) -> str:
    """The name of the running scenario, as the feature file gives it."""
    return request.node.stash.get(SCENARIO, ("", request.node.name))[1] or request.node.name


@pytest.fixture
def cadence(request: pytest.FixtureRequest) -> str | None:
    """The running scenario's maintenance cadence (``daily`` ... ``quarterly``), if any."""
    return _cadence(request.node)


@pytest.fixture
def platform(request: pytest.FixtureRequest, target: Target) -> Iterator[PlatformAdapter]:
    """The target's platform adapter. It may change state only in scenarios tagged
    @operation or @drill, which passed the safety gates before the run began.

    Every call it passes on is appended to ``reports/platform-calls.jsonl`` (scenario,
    method, service, read or destructive, when, how it ended): the audit trail of what the
    run did to the target's platform."""
    node = request.node
    changes = bool(node.get_closest_marker("operation") or (
        node.get_closest_marker("drill") and not node.get_closest_marker("read-only")))
    try:
        recording = RecordingPlatform(platform_for(target, allow_changes=changes))
    except ConfigError as exc:
        if target.platform is not None or request.node.get_closest_marker("drill") is None:
            pytest.skip(str(exc))
        # A target of data services only: the drills that need no platform run on it, the
        # others are refused by their own reason (``_drills_this_target_can_take``).
        recording = RecordingPlatform(NoPlatform(target.name))
    yield recording
    calls = [{"scenario": request.node.nodeid, "target": target.name,
              "environment": target.environment.value, "method": c.method,
              "service": c.service, "kind": c.kind, "at": c.at.isoformat(),
              "outcome": c.outcome} for c in recording.calls]
    if calls:
        trail = _reports(request.config) / "platform-calls.jsonl"
        trail.parent.mkdir(parents=True, exist_ok=True)
        with trail.open("a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(call) + "\n" for call in calls))


@pytest.fixture
def drill_context(target: Target, timeouts: Timeouts, platform: PlatformAdapter) -> DrillContext:
    """What a drill acts through: the target, its platform (changes allowed: @drill
    scenarios passed the safety gates) and the sandbox's state directory."""
    home = target.runbook_home or Path(os.environ.get("RUNBOOK_HOME", ".runbook")).resolve()
    return DrillContext(target, timeouts, platform, home)


@pytest.fixture(autouse=True)
def _drills_this_target_can_take(request: pytest.FixtureRequest) -> None:
    """A drill scenario whose drill cannot run on this target (it needs the sandbox, an API,
    a platform, a scratch database) is not checked, with the drill's own one-line reason,
    before any step (not even the canary user of its steady state) touches the target."""
    item = request.node
    if not _is_scenario(item) or item.get_closest_marker("drill") is None:
        return
    names = _drills(item)
    if not names:
        return
    context: DrillContext = request.getfixturevalue("drill_context")
    for name in names:
        incident = DRILLS.get(name)
        reason = incident.refusal(context) if incident is not None else None
        if reason:
            # Named as the feature file names it (the skip comes before pytest-bdd's hook).
            template = _template(item)
            callspec = getattr(item, "callspec", None)
            row = callspec.params.get("_pytest_bdd_example") if callspec is not None else None
            if template is not None:
                item.stash[SCENARIO] = (template.feature.name,
                                        template.render(row or {}).name)
            pytest.skip(reason)


@pytest.fixture
def guard(request: pytest.FixtureRequest, drill_context: DrillContext) -> Iterator[Guard]:
    """A restoration guard watching this process for the scenario's length."""
    config = request.config
    choice = config.stash[CHOICE]
    config_file = config.getoption("--runbook-config")
    armed = Guard.arm(_reports(config) / "drills" / "guards", {
        "name": choice.name,
        "config_file": str(config_file) if config_file else None,
        "home": str(drill_context.home),
    })
    yield armed
    armed.disarm()


@pytest.fixture
def drill_progress(request: pytest.FixtureRequest) -> Callable[[str], PhaseListener]:
    """Where a drill announces each phase as it starts: ``reports/drills/<drill>.progress``
    (``ProgressFile``; kept next to the record once it is written)."""
    directory = _reports(request.config) / "drills"
    return lambda drill: ProgressFile(directory, drill)


@pytest.fixture
def drill_evidence(request: pytest.FixtureRequest) -> Path:
    """Where a game day's detection rounds (the scheduled suite against the faulted target)
    write their summaries: ``reports/drills/detection/``."""
    return (_reports(request.config) / "drills" / "detection").resolve()


@pytest.fixture
def record_drill(request: pytest.FixtureRequest, target: Target
                 ) -> Callable[[DrillRecord], None]:
    """Write a drill's record under reports/drills/ (with the target's identity, entered in
    the drill ledger) and attach it to the scenario; the scenario's verdict is then the
    record's (``pytest_runtest_makereport``)."""
    redact = request.config.stash[REDACTOR]

    def write(record: DrillRecord) -> None:
        request.node.stash.setdefault(DRILL_RECORDS, []).append(record)
        figures = request.node.stash.setdefault(FIGURES, {})
        for name, value in (("rto_s", record.rto_s), ("rpo_s", record.rpo_s),
                            ("time_to_detect_s", record.time_to_detect_s),
                            ("rto_objective_s", record.objective.rto_s),
                            ("rpo_objective_s", record.objective.rpo_s)):
            if value is not None:
                figures[name] = round(float(value), 3)
        json_path, md_path = write_record(record, _reports(request.config) / "drills", redact,
                                          target=target)
        allure.attach.file(str(md_path), name=f"drill record: {record.drill}",
                           attachment_type=allure.attachment_type.TEXT)
        allure.attach.file(str(json_path), name=f"drill record (JSON): {record.drill}",
                           attachment_type=allure.attachment_type.JSON)

    return write


def _headings(config: pytest.Config) -> dict[str, Heading]:
    if HEADINGS not in config.stash:
        runbook_file = Path(__file__).parent / RUNBOOK_FILE
        found = parse_headings(runbook_file.read_text()) if runbook_file.exists() else []
        config.stash[HEADINGS] = {h.slug: h for h in found}
    return config.stash[HEADINGS]


def _reports(config: pytest.Config) -> Path:
    reports: Path = config.getoption("--runbook-reports") or Path("reports")
    return reports


# -- evidence and outcomes -----------------------------------------------------------------


@pytest.hookimpl(trylast=True)  # after allure-pytest-bdd has opened the test case
def pytest_bdd_before_scenario(request: pytest.FixtureRequest, feature: object,
                               scenario: object) -> None:
    item = request.node
    item.stash[SCENARIO] = (getattr(feature, "name", ""), getattr(scenario, "name", ""))
    item.stash[ATTACHED] = set()
    tier = next((t for t in TIERS if item.get_closest_marker(t)), None)
    allure_labels.label(getattr(feature, "name", ""), _sections(item),
                        _headings(request.config), tier)


def _attach_evidence(request: pytest.FixtureRequest, args: dict[str, object]) -> None:
    """Attach, once per scenario, the evidence of every record a step received."""
    redact = request.config.stash[REDACTOR]
    seen = request.node.stash.setdefault(ATTACHED, set())
    for name, value in args.items():
        evidence = getattr(value, "evidence", None)
        if not callable(evidence) or id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, ProbeResult):
            figures = request.node.stash.setdefault(FIGURES, {})
            figures[f"{value.component} {value.check} ms"] = round(value.timing.elapsed_ms, 1)
            versions = request.config.stash.setdefault(VERSIONS, {})
            for key, name in (("server_version", "PostgreSQL"), ("redis_version", "Redis")):
                if value.observed.get(key):
                    versions[name] = str(value.observed[key])
        body = json.dumps(redact.data(evidence()), indent=2, default=str)
        title = (f"{value.component}: {value.check}" if isinstance(value, ProbeResult)
                 else name.replace("_", " "))
        allure.attach(body, name=title, attachment_type=allure.attachment_type.JSON)


def pytest_bdd_after_step(request: pytest.FixtureRequest, feature: object, scenario: object,
                          step: object, step_func: object, step_func_args: dict[str, object]
                          ) -> None:
    _attach_evidence(request, step_func_args)


def pytest_bdd_step_error(request: pytest.FixtureRequest, feature: object, scenario: object,
                          step: object, step_func: object, step_func_args: dict[str, object],
                          exception: BaseException) -> None:
    _attach_evidence(request, step_func_args)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if not _is_scenario(item):
        return report
    failed_record = next((r for r in item.stash.get(DRILL_RECORDS, []) if r.verdict != "pass"),
                         None)
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
    outcomes = item.config.stash[OUTCOMES]
    redact = item.config.stash[REDACTOR]
    # Captured output and logs reach the terminal and junit.xml beside the longrepr.
    report.sections = [(title, redact(text)) for title, text in report.sections]
    previous = outcomes.get(item.nodeid)
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
        if not failure.target:
            failure.target = item.config.stash.get(TARGET_NAME, "the target")
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
    feature, name = item.stash.get(SCENARIO, ("", item.name))
    figures: dict[str, float] = item.stash.get(FIGURES, {})
    tier = next((t for t in TIERS if item.get_closest_marker(t)), None)
    sections = _sections(item)
    outcomes[item.nodeid] = ScenarioOutcome(
        nodeid=item.nodeid, name=name or item.name, feature=feature, sections=sections,
        tier=tier, outcome=outcome, duration_s=duration, message=message, attempts=attempts,
        tags=_tags(item), cadence=_cadence(item), figures=dict(figures),
        finished_at=utcnow().isoformat(), named=named,
    )
    wanted = item.config.getoption("--runbook-stop-when-named")
    if wanted and outcome in ("failed", "error") and wanted in named:
        # Detected: what the rest of the round would add is not needed to say so.
        item.session.shouldfail = f"a failure named {wanted!r}: detected"
    if parallel.is_worker(item.config):  # the xdist controller reports it, not this worker
        parallel.attach(report, parallel.Sent(outcomes[item.nodeid],
                                              item.config.stash.get(TARGET_NAME, None),
                                              item.config.stash.get(VERSIONS, {})))
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


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    outcomes = list(config.stash[OUTCOMES].values())
    if not outcomes or not _runs_scenarios(config) or parallel.is_worker(config):
        return
    if parallel.is_controller(config):  # outcomes came in as workers finished: collection order
        order = {item.nodeid: index for index, item in enumerate(session.items)}
        outcomes.sort(key=lambda o: order.get(o.nodeid, len(order)))
    if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        undefined = any(o.outcome == "error" and UNDEFINED in o.message for o in outcomes)
        session.exitstatus = EXIT_USAGE if undefined else exit_code(
            outcomes, environment=_environment_of(config.stash[CHOICE]).value)
    results = getattr(config.option, "allure_report_dir", None)
    if results:
        allure_labels.write_extras(Path(results), {
            "target": config.stash.get(TARGET_NAME, config.stash[CHOICE].name),
            **{f"{name}.version": v for name, v in config.stash.get(VERSIONS, {}).items()},
        })
    reports = _reports(config)
    outcomes = staleness(outcomes, reports / "history.jsonl")
    config.stash[OUTCOMES] = {o.nodeid: o for o in outcomes}
    environment = _environment_of(config.stash[CHOICE]).value
    run_id = os.environ.get("RUNBOOK_RUN_ID", "")
    write_summary(reports / "summary.json", outcomes, int(session.exitstatus),
                  config.stash[CHOICE].name, run_id, environment=environment,
                  started_at=config.stash[STARTED])
    append_history(reports / "history.jsonl", outcomes, run_id=run_id,
                   target=config.stash[CHOICE].name, environment=environment)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    outcomes = list(config.stash[OUTCOMES].values())
    if not outcomes or not _runs_scenarios(config) or parallel.is_worker(config):
        return
    terminalreporter.write_sep("=", "runbook summary")
    for line in render(outcomes, environment=_environment_of(config.stash[CHOICE]).value):
        terminalreporter.write_line(line)
