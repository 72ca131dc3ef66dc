"""The fixtures steps receive: the target, its platform, timeouts, the canary pool, and what
a drill acts through and writes to.

Each scenario takes the run's target as resolved once (``gates``): the ``target`` fixture
reads where it is now (a disaster drill may rebuild the sandbox on new ports) and never
chooses it again.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import allure
import pytest

from runbook import reachability
from runbook.actions.users import CanaryPool
from runbook.config import Target
from runbook.drills.faults import DrillContext
from runbook.drills.guard import Guard
from runbook.drills.record import DrillRecord, PhaseListener, ProgressFile, write_record
from runbook.errors import ConfigError, RunbookError
from runbook.harness import parallel, scenarios
from runbook.harness.state import run_state, scenario_state
from runbook.platforms import NoPlatform, PlatformAdapter, RecordingPlatform, platform_for
from runbook.probes import queues as queue_probe
from runbook.reporting import plots
from runbook.reporting.docs import render_html
from runbook.timeouts import Timeouts


@pytest.fixture(scope="session")
def timeouts() -> Timeouts:
    """Connect, read and per-probe deadlines (``RUNBOOK_*_TIMEOUT`` to change them)."""
    return Timeouts.from_env()


@pytest.fixture(autouse=True)
def _target_for_scenarios(request: pytest.FixtureRequest) -> None:
    """Every scenario takes the target first, so its secrets are known to the redactor
    even when no step of the scenario asks for it."""
    if scenarios.is_scenario(request.node):
        request.getfixturevalue("target")


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Target:
    """The LegacyVideo under test: the run's target, where it is now (the sandbox started
    when it is down)."""
    state = run_state(request.config)
    if state.run is None:
        pytest.exit("configuration error: no target was chosen for this run (the scenarios"
                    " were not collected by this harness)", returncode=2)
    try:
        resolved = state.run.target()
    except RunbookError as exc:
        pytest.exit(f"{type(exc).__name__}: {exc}", returncode=exc.exit_code)
    state.redactor.add(resolved.secret_values())
    state.target_described = resolved.describe()
    return resolved


@pytest.fixture(scope="session")
def components(timeouts: Timeouts) -> Iterator[reachability.Reachability]:
    """Whether each component answers, asked once for the run (``runbook.reachability``);
    the queues' workers all at once, each with a canary job."""
    gate = reachability.Reachability(timeouts, ask_workers=queue_probe.ask_workers(timeouts),
                                     queues=queue_probe.QUEUES)
    yield gate
    gate.close()


def _gated(item: pytest.Item) -> bool:
    """A synthetic check, not an operation or a drill (``_unreachable_components_fail_fast``)."""
    return (scenarios.is_scenario(item) and item.get_closest_marker("synthetic") is not None
            and not any(item.get_closest_marker(m) is not None
                        for m in ("operation", "drill", "read-only")))


#: Set when the run holds a synthetic check that waits on a queue's worker.
_ASK_WORKERS_AHEAD = pytest.StashKey[bool]()
#: What the run's synthetic checks are marked as needing (``scenarios.needs``).
_ASK_AHEAD = pytest.StashKey[tuple[str, ...]]()
#: What the run's checks ask while a component they need is down (``needs(meanwhile=)``).
_ASK_MEANWHILE = pytest.StashKey[tuple[tuple[str, Callable[..., object]], ...]]()
#: The checks moved after the others for what they need, with what each needs.
_NEEDING = pytest.StashKey[dict[int, tuple[str, ...]]]()
#: The run's gate and target, once its first gated check has started.
_GATE = pytest.StashKey[tuple[reachability.Reachability, Target]]()


@pytest.hookimpl(trylast=True)  # after the selection (-m, --runbook-sections)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The run asks, as its first check starts, every queue's worker and every component its
    synthetic checks are marked as needing; those checks run after the others, the ones
    that wait on a worker last. With a component dead, its asking (a canary's 10 s, a
    connect or read timeout) overlaps the checks that need it not, instead of holding the
    run up where the first check needing it stands."""
    waiting_marked = scenarios.worker_waiting_steps()
    needing_marked = scenarios.needing_steps()
    waiting: list[pytest.Item] = []
    needing: list[pytest.Item] = []
    needed: dict[str, None] = {}
    meanwhile: dict[tuple[str, Callable[..., object]], None] = {}
    for item in items:
        if not _gated(item):
            continue
        if scenarios.waits_on_a_worker(item, waiting_marked):
            waiting.append(item)
        elif (needs := scenarios.components_needed(item, needing_marked)).components:
            needing.append(item)
            needed.update(dict.fromkeys(needs.components))
            meanwhile.update(dict.fromkeys(needs.meanwhile))
            config.stash.setdefault(_NEEDING, {})[id(item)] = needs.components
    if waiting:
        config.stash[_ASK_WORKERS_AHEAD] = True
    if needed:
        config.stash[_ASK_AHEAD] = tuple(needed)
    if meanwhile:
        config.stash[_ASK_MEANWHILE] = tuple(meanwhile)
    moved = {id(item) for item in (*needing, *waiting)}
    if moved:
        items[:] = [item for item in items if id(item) not in moved] + needing + waiting


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """As the checks moved for what they need are about to start, those whose components
    are all answered go first, those still being asked after them: with one component dead,
    the healthy ones' checks run while its asking goes on. Once per run; not in a parallel
    run's worker, which runs the items the controller sends it by their place."""
    yield
    needing = item.config.stash.get(_NEEDING, None)
    if not needing or nextitem is None or id(nextitem) not in needing \
            or id(item) in needing or parallel.is_worker(item.config):
        return
    found = item.config.stash.get(_GATE, None)
    if found is None:
        return
    gate, target = found
    items = item.session.items
    start = items.index(nextitem)
    group = items[start:start + len(needing)]
    if len(group) != len(needing) or any(id(i) not in needing for i in group):
        return  # not the order the collection made
    asking = {i: gate.still_asking(target, needing[id(i)]) for i in group}
    reordered = [i for i in group if not asking[i]] + [i for i in group if asking[i]]
    items[start:start + len(group)] = reordered


@pytest.fixture(autouse=True)
def _unreachable_components_fail_fast(request: pytest.FixtureRequest) -> Iterator[None]:
    """A synthetic check's probes ask each component they need once for the run: after one
    did not answer, every check that needs it fails at once naming it, instead of waiting
    out its own timeouts. Operations and drills are not gated: they wait for a target to
    come back (a restart, a recovery), which a verdict held for the run would defeat."""
    item = request.node
    if not _gated(item):
        yield
        return
    gate: reachability.Reachability = request.getfixturevalue("components")
    if request.config.stash.get(_ASK_WORKERS_AHEAD, False):
        gate.ask_workers_ahead(request.getfixturevalue("target"))
    if ahead := request.config.stash.get(_ASK_AHEAD, ()):
        target = request.getfixturevalue("target")
        gate.ask_ahead(target, ahead)
        for component, ask in request.config.stash.get(_ASK_MEANWHILE, ()):
            gate.ask_meanwhile(component, target, ask)
        request.config.stash[_GATE] = (gate, target)
    gate.scenario = scenarios.names(item)[1]
    with reachability.active(gate):
        yield


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
    return scenario_state(request.node).name or request.node.name


@pytest.fixture
def cadence(request: pytest.FixtureRequest) -> str | None:
    """The running scenario's maintenance cadence (``daily`` ... ``quarterly``), if any."""
    return scenarios.cadence(request.node)


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
        if target.platform is not None or node.get_closest_marker("drill") is None:
            pytest.skip(str(exc))
        # A target of data services only: the drills that need no platform run on it, the
        # others are refused by their own reason (``_drills_this_target_can_take``).
        recording = RecordingPlatform(NoPlatform(target.name))
    yield recording
    calls = [{"scenario": node.nodeid, "target": target.name,
              "environment": target.environment.value, "method": c.method,
              "service": c.service, "kind": c.kind, "at": c.at.isoformat(),
              "outcome": c.outcome} for c in recording.calls]
    if calls:
        trail = run_state(request.config).reports / "platform-calls.jsonl"
        trail.parent.mkdir(parents=True, exist_ok=True)
        with trail.open("a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(call) + "\n" for call in calls))


@pytest.fixture
def drill_context(request: pytest.FixtureRequest, target: Target, timeouts: Timeouts,
                  platform: PlatformAdapter) -> DrillContext:
    """What a drill acts through: the target, its platform (changes allowed: @drill
    scenarios passed the safety gates) and the sandbox's state directory."""
    run = run_state(request.config).run
    assert run is not None  # the target fixture exits otherwise
    return DrillContext(target, timeouts, platform, target.runbook_home or run.home)


@pytest.fixture(autouse=True)
def _drills_this_target_can_take(request: pytest.FixtureRequest) -> None:
    """A drill scenario whose drill cannot run on this target (it needs the sandbox, an API,
    a platform, a scratch database) is not checked, with the drill's own one-line reason,
    before any step (not even the canary user of its steady state) touches the target."""
    item = request.node
    if not scenarios.is_scenario(item) or item.get_closest_marker("drill") is None:
        return
    names = scenarios.drills(item)
    if not names:
        return
    # imported for a drill scenario only: every other run starts without importing the
    # drills' catalog (every incident's module)
    from runbook.drills.catalog import DRILLS
    context: DrillContext = request.getfixturevalue("drill_context")
    for name in names:
        incident = DRILLS.get(name)
        reason = incident.refusal(context) if incident is not None else None
        if reason:
            # Named as the feature file names it (the skip comes before pytest-bdd's hook).
            state = scenario_state(item)
            state.feature, state.name = scenarios.names(item)
            pytest.skip(reason)


@pytest.fixture
def guard(request: pytest.FixtureRequest) -> Iterator[Guard]:
    """A restoration guard watching this process for the scenario's length, on the run's
    target as it was resolved."""
    state = run_state(request.config)
    assert state.run is not None  # the target fixture exits otherwise
    armed = Guard.arm(state.reports / "drills" / "guards", state.run)
    yield armed
    armed.disarm()


@pytest.fixture
def drill_progress(request: pytest.FixtureRequest) -> Callable[[str], PhaseListener]:
    """Where a drill announces each phase as it starts: ``reports/drills/<drill>.progress``
    (``ProgressFile``; kept next to the record once it is written)."""
    directory = run_state(request.config).reports / "drills"
    return lambda drill: ProgressFile(directory, drill)


@pytest.fixture
def drill_evidence(request: pytest.FixtureRequest) -> Path:
    """Where a game day's detection rounds (the scheduled suite against the faulted target)
    write their summaries: ``reports/drills/detection/``."""
    return (run_state(request.config).reports / "drills" / "detection").resolve()


@pytest.fixture
def record_drill(request: pytest.FixtureRequest, target: Target
                 ) -> Callable[[DrillRecord], None]:
    """Write a drill's record under reports/drills/ (with the target's identity, entered in
    the drill ledger) and attach it to the scenario; the scenario's verdict is then the
    record's (``outcomes.pytest_runtest_makereport``)."""
    state = run_state(request.config)
    scenario = scenario_state(request.node)

    def write(record: DrillRecord) -> None:
        scenario.drill_records.append(record)
        for name, value in (("rto_s", record.rto_s), ("rpo_s", record.rpo_s),
                            ("time_to_detect_s", record.time_to_detect_s),
                            ("rto_objective_s", record.objective.rto_s),
                            ("rpo_objective_s", record.objective.rpo_s)):
            if value is not None:
                scenario.figures[name] = round(float(value), 3)
        json_path, md_path = write_record(record, state.reports / "drills", state.redactor,
                                          target=target)
        allure.attach(render_html(md_path.read_text(encoding="utf-8"),
                                  title=f"Drill record: {record.drill}"),
                      name=f"drill record: {record.drill}",
                      attachment_type=allure.attachment_type.HTML)
        allure.attach.file(str(json_path), name=f"drill record (JSON): {record.drill}",
                           attachment_type=allure.attachment_type.JSON)
        drawn = [plots.drill_svg(h) for h in plots.read_drill_histories(json_path.parent)
                 if h.drill == record.drill]
        allure.attach(plots.html_page(
            f"{record.drill}: RTO, RPO and time to detect over time", drawn,
            "Every record of this drill in the drill records, this one last; the runbook's"
            " objective dashed, a red point where a figure missed it or the record failed."),
            name=f"RTO, RPO and time to detect over time: {record.drill}",
            attachment_type=allure.attachment_type.HTML)

    return write
