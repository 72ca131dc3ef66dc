"""The resident pytest of ``runbook watch`` (``runbook.resident``), against the session's
sandbox: a round forked from it prints, summarizes and exits as a new pytest process does;
a watch's rounds and history are the same with it and without; a round stopped by its time
limit ends as before; a resident that dies is replaced after one plain round, said once; and
a watch killed with SIGKILL leaves no resident behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runbook import runner, shipped
from runbook.cli import _home, _resolve
from runbook.config import TARGET_VARIABLES
from runbook.redact import Redactor
from runbook.reporting.summary import EXIT_FAILED
from runbook.resident import Resident
from runbook.targets import RunSpec
from runbook.wait import wait_until
from tests.conftest import RunningSandbox
from tests.receiver import CLEAN
from tests.test_watch import API, REDIS, SCENARIOS

#: What differs between two runs of the same scenarios: durations, ids, the reports' path.
_VARYING = re.compile(r"\d+\.\d+s|[0-9a-f]{32}|/[\w./-]+/(junit\.xml)")


@pytest.fixture
def sandbox_run(healthy_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
                ) -> Iterator[RunSpec]:
    """The sandbox resolved as ``runbook check --target sandbox`` resolves it."""
    for name in TARGET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUNBOOK_HOME", str(healthy_sandbox.home))
    run, _ = _resolve("sandbox", None)
    yield run


def execute(run: RunSpec, reports: Path, resident: Resident | None, *,
            timeout_s: float | None = None) -> tuple[int, list[str], dict[str, Any] | None]:
    """One run of ``SCENARIOS`` (verbose): its exit code, output lines and summary."""
    lines: list[str] = []
    selection = runner.Selection(marks=runner.SYNTHETIC, reports=reports, color=False,
                                 extra=["-k", SCENARIOS, "-v"])
    code = runner.execute(selection, runner.environment(selection.run_id, _home(),
                                                        run.to_environ()),
                          Redactor(), echo=lines.append, timeout_s=timeout_s,
                          resident=resident)
    return code, lines, runner.load_summary(reports, selection.run_id)


def normalized(lines: list[str]) -> list[str]:
    return [_VARYING.sub(r"<\1>", line) for line in lines]


def outcomes(summary: dict[str, Any] | None) -> dict[str, str]:
    assert summary is not None
    return {s["nodeid"]: s["outcome"] for s in summary["scenarios"]}


def children_of(parent: int, marker: bytes = b"") -> list[int]:
    """The processes whose parent is ``parent`` and whose command line holds ``marker``
    (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and any(marker in part for part in command):
            found.append(int(entry.name))
    return found


def residents_of(parent: int) -> list[int]:
    return children_of(parent, b"runbook.harness.resident")


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def test_a_forked_round_prints_summarizes_and_exits_as_a_new_pytest_does(
    sandbox_run: RunSpec, tmp_path: Path
) -> None:
    warnings: list[str] = []
    with Resident(warn=warnings.append) as resident:
        plain = execute(sandbox_run, tmp_path / "plain", None)
        # A watch's rounds: one command line, the reports in one directory.
        first = execute(sandbox_run, tmp_path / "forked", resident)
        pid = resident.pid
        second = execute(sandbox_run, tmp_path / "forked", resident)
        assert resident.pid == pid is not None and alive(pid)
        assert residents_of(os.getpid()) == [pid]
        # Another command line (the reports elsewhere): a resident configured for it.
        other = execute(sandbox_run, tmp_path / "other", resident)
        assert resident.pid != pid and residents_of(os.getpid()) == [resident.pid]
        assert other[0] == 0 and (tmp_path / "other" / "junit.xml").is_file()
    assert not alive(pid)
    assert warnings == []
    code, lines, summary = plain
    assert code == 0 and len(outcomes(summary)) == 2
    assert set(outcomes(summary).values()) == {"passed"}
    for forked in (first, second):
        assert forked[0] == code
        assert outcomes(forked[2]) == outcomes(summary)
        # Line for line the same output: no warning of pytest's (a module imported before it
        # could rewrite it), nothing missing.
        assert normalized(forked[1]) == normalized(lines)
    assert "2 passed" in "".join(second[1]) and "Warning" not in "".join(second[1])
    assert (tmp_path / "forked" / "junit.xml").is_file()
    assert any((tmp_path / "forked" / "allure-results").glob("*-result.json"))


def test_a_round_reads_a_feature_file_changed_since_the_resident_parsed_it(
    sandbox_run: RunSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resident parses the feature files once, ahead of its rounds; a file edited while
    a watch runs is read afresh by the next round, as a new pytest process would."""
    features = tmp_path / "features"
    shutil.copytree(shipped.FEATURES, features)
    monkeypatch.setenv("RUNBOOK_FEATURES", str(features))
    [edited] = [p for p in features.glob("**/*.feature")
                if f"Scenario: {REDIS}\n" in p.read_text(encoding="utf-8")]
    with Resident() as resident:
        _, _, before = execute(sandbox_run, tmp_path / "forked", resident)
        edited.write_text(edited.read_text(encoding="utf-8").replace(
            f"Scenario: {REDIS}\n", f"Scenario: {REDIS} at once\n"), encoding="utf-8")
        _, _, after = execute(sandbox_run, tmp_path / "forked", resident)
    assert before is not None and after is not None
    assert sorted(s["name"] for s in before["scenarios"]) == sorted([API, REDIS])
    assert sorted(s["name"] for s in after["scenarios"]) == sorted([API, f"{REDIS} at once"])


_PLUGIN = """\
import pathlib

print("imported: {word}")


def pytest_load_initial_conftests(early_config, parser, args):
    print("while the conftest files load: {word}")


def pytest_report_header(config):
    return "the plugin says: {word}"


def pytest_collectreport(report):
    # What pytest captured around the collection of a file (with what it captured while
    # loading the conftest files): shown only when the collection fails.
    with open(pathlib.Path(__file__).with_name("sections.log"), "a") as log:
        log.writelines(f"{{title}}: {{text}}" for title, text in report.sections)
"""


def sections(plugins: Path) -> str:
    """What the plugin noted of the last run's collection reports (then forgotten)."""
    log = plugins / "sections.log"
    text = log.read_text(encoding="utf-8") if log.exists() else ""
    log.unlink(missing_ok=True)
    return text


def test_a_round_shows_what_its_plugins_print_and_runs_them_as_they_are_on_disk(
    sandbox_run: RunSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resident configures pytest once, importing the plugins: a round shows what that
    printed, and what pytest captured meanwhile, as a new pytest process does; a plugin
    edited while a watch runs is imported afresh for the next round (a new resident)."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    plugin = plugins / "team_plugin.py"
    plugin.write_text(_PLUGIN.format(word="one"), encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(plugins))
    monkeypatch.setenv("PYTEST_PLUGINS", "team_plugin")
    warnings: list[str] = []
    with Resident(warn=warnings.append) as resident:
        code, lines, _ = execute(sandbox_run, tmp_path / "plain", None)
        captured = [sections(plugins)]
        first = execute(sandbox_run, tmp_path / "forked", resident)
        captured.append(sections(plugins))
        pid = resident.pid
        plugin.write_text(_PLUGIN.format(word="two"), encoding="utf-8")
        second = execute(sandbox_run, tmp_path / "forked", resident)
        captured.append(sections(plugins))
        assert resident.pid is not None and resident.pid != pid and alive(resident.pid)
    assert warnings == []
    assert code == first[0] == second[0] == 0
    assert "imported: one\n" in lines and any("the plugin says: one" in x for x in lines)
    assert normalized(first[1]) == normalized(lines)
    assert normalized(second[1]) == [line.replace("one", "two")
                                     for line in normalized(lines)]
    assert captured[0] == "Captured stdout: while the conftest files load: one\n"
    assert captured == [captured[0], captured[0], captured[0].replace("one", "two")]


def test_a_run_the_resident_cannot_configure_runs_plain_and_fails_as_pytest_does(
    sandbox_run: RunSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_ADDOPTS", "--no-such-option")
    warnings: list[str] = []
    with Resident(warn=warnings.append) as resident:
        plain = execute(sandbox_run, tmp_path / "plain", None)
        rounds = [execute(sandbox_run, tmp_path / "forked", resident) for _ in range(2)]
        assert resident.broken and resident.pid is None
    assert plain[0] != 0 and any("--no-such-option" in line for line in plain[1])
    for forked in rounds:
        assert forked[0] == plain[0] and normalized(forked[1]) == normalized(plain[1])
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("the resident pytest could not configure the run"
                                  " (UsageError: ")
    assert warnings[0].endswith("; rounds run as plain pytest subprocesses while it is"
                                " unavailable")


def test_a_round_stopped_by_its_time_limit_ends_as_before(
    sandbox_run: RunSpec, tmp_path: Path
) -> None:
    with Resident() as resident:
        code, _, summary = execute(sandbox_run, tmp_path / "forked", resident, timeout_s=0.05)
        assert resident.pid is not None and alive(resident.pid)
        after, _, again = execute(sandbox_run, tmp_path / "forked", resident)
    plain, _, _ = execute(sandbox_run, tmp_path / "plain", None, timeout_s=0.05)
    assert code == plain == EXIT_FAILED and summary is None
    assert after == 0 and set(outcomes(again).values()) == {"passed"}


def test_a_dead_resident_costs_one_plain_round_said_once_then_is_replaced(
    sandbox_run: RunSpec, tmp_path: Path
) -> None:
    warnings: list[str] = []
    with Resident(warn=warnings.append) as resident:
        assert execute(sandbox_run, tmp_path / "rounds", resident)[0] == 0
        first = resident.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert wait_until(lambda: not alive(first), timeout=10).ok
        code, _, summary = execute(sandbox_run, tmp_path / "rounds", resident)
        assert code == 0 and set(outcomes(summary).values()) == {"passed"}
        assert resident.pid is None  # that round ran as a plain subprocess
        assert execute(sandbox_run, tmp_path / "rounds", resident)[0] == 0
        second = resident.pid
        assert second is not None and second != first and alive(second)
        os.kill(second, signal.SIGKILL)
        assert wait_until(lambda: not alive(second), timeout=10).ok
        assert execute(sandbox_run, tmp_path / "rounds", resident)[0] == 0
    assert len(warnings) == 1, warnings
    # Broken pipe or end of file, whichever the dead resident's socket gives first.
    assert re.match(r"the resident pytest (is gone|did not fork the round) \(.+\); rounds run"
                    r" as plain pytest subprocesses while it is unavailable$", warnings[0])


def watch(home: Path, cwd: Path, *args: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "runbook.cli", "watch", "--target", "sandbox", "-k", SCENARIOS,
         "--interval", "0", "--rounds", "3", "--json", *args],
        cwd=cwd, env={**CLEAN, "RUNBOOK_HOME": str(home)}, capture_output=True, text=True,
        timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_a_watch_rounds_and_history_are_the_same_with_the_resident_and_without(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    home = healthy_sandbox.home
    seen: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], str]] = {}
    cpu: dict[str, float] = {}
    for name, args in (("forked", ()), ("plain", ("--no-resident",))):
        (home / "watch-state.json").unlink(missing_ok=True)
        (tmp_path / name).mkdir()
        before = os.times()
        rounds = watch(home, tmp_path / name, *args)
        after = os.times()
        cpu[name] = (after.children_user + after.children_system
                     - before.children_user - before.children_system)
        reports = tmp_path / name / "reports"
        history = [json.loads(line) for line in
                   (reports / "history.jsonl").read_text().splitlines()]
        seen[name] = rounds, history, (reports / "metrics.prom").read_text()
    forked, plain = seen["forked"], seen["plain"]
    assert [r["round"] for r in forked[0]] == [r["round"] for r in plain[0]] == [1, 2, 3]
    keys = ("exit_code", "result", "counts", "failing", "firing", "events")
    assert [{k: r[k] for k in keys} for r in forked[0]] == \
        [{k: r[k] for k in keys} for r in plain[0]]
    # One history line per scenario and round, the same fields and outcomes, in order.
    assert [r["run_id"] for r in forked[0] for _ in range(2)] == \
        [h["run_id"] for h in forked[1]]
    steady = ("target", "environment", "nodeid", "name", "feature", "sections", "tier",
              "outcome", "message", "attempts", "tags")
    assert [(sorted(h), {k: h[k] for k in steady}) for h in forked[1]] == \
        [(sorted(h), {k: h[k] for k in steady}) for h in plain[1]]

    def samples(text: str) -> list[str]:
        return sorted(line.rsplit(" ", 1)[0] for line in text.splitlines()
                      if line and not line.startswith("#") and "seconds" not in line
                      and "timestamp" not in line)

    assert samples(forked[2]) == samples(plain[2])
    # Each round's CPU counts its pytest process, forked or not (0.10-0.37 s for these two
    # scenarios, forked, on 2-core machines), not only the watch's own bookkeeping
    # (0.0-0.01 s): the line between them is 0.03 s, three times the bookkeeping and a
    # third of the fastest forked round seen. All of them less than the whole watch took
    # (the watch, its resident and their rounds, as this process reaped them).
    for name, (rounds, _, _) in seen.items():
        figures = [r["cpu_s"] for r in rounds]
        assert all(f > 0.03 for f in figures), (name, figures)
        assert sum(figures) < cpu[name], (name, figures, cpu[name])


def test_a_watch_killed_with_sigkill_leaves_no_resident(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "runbook.cli", "watch", "--target", "sandbox", "-k", SCENARIOS,
         "--interval", "0.2", "--json"],
        cwd=tmp_path, env={**CLEAN, "RUNBOOK_HOME": str(healthy_sandbox.home)},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        # the second round of this watch (the numbers go on from the home's earlier watches)
        rounds_seen = 0
        for line in process.stdout:
            rounds_seen += line.startswith('{"type": "round"')
            if rounds_seen == 2:
                break
        residents = residents_of(process.pid)
        assert len(residents) == 1, residents
        # Inside round 3: its child must go too.
        assert wait_until(lambda: children_of(residents[0]), timeout=10).ok
        rounds = children_of(residents[0])
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        assert wait_until(lambda: not any(alive(pid) for pid in [*residents, *rounds]),
                          timeout=30).ok
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_resident_imports_and_builds_ahead_no_module_pytest_rewrites_and_starts_no_thread(
        ) -> None:
    done = subprocess.run(
        [sys.executable, "-P", "-c",
         "import json, sys, threading\n"
         "from runbook.harness import resident\n"
         "names = resident.dependencies()\n"
         "imported = resident.preload(names)\n"
         "resident.warm_up()\n"
         "parsed = resident.parse_features()\n"
         "from pytest_bdd import feature\n"
         "from runbook import clients\n"
         "built = [clients._tls_context.cache_info().currsize,"
         " clients._session.cache_info().currsize,"
         " any(key[:3] == ('load_service_model', 's3', 'service-2')"
         " for key in clients._session()._loader._cache),"
         " clients._driver.cache_info().currsize]\n"
         "print(json.dumps({'names': names, 'imported': imported, 'built': built,"
         " 'parsed': sorted(parsed), 'cached': sorted(feature.features),"
         " 'threads': threading.active_count(), 'modules': sorted(sys.modules)}))"],
        capture_output=True, text=True, timeout=120, check=True)
    found = json.loads(done.stdout)
    assert found["threads"] == 1  # forking is safe
    assert found["built"] == [1, 1, True, 1]  # the rounds inherit them
    assert {"pytest", "runbook.probes.api"} <= set(found["imported"])
    assert {"httpx", "httpcore", "psycopg", "redis", "pytest_bdd.scenario", "allure_commons",
            "runbook.drills.engine"} <= set(found["modules"])
    # what pytest-bdd's plugin imports relatively (``from . import generation``), and so on
    assert {"pytest_bdd.generation", "pytest_bdd.cucumber_json", "mako.lookup"} <= set(
        found["modules"])
    # every feature file parsed ahead, into pytest-bdd's own cache
    files = sorted(str(p) for p in shipped.FEATURES.resolve().glob("**/*.feature"))
    assert files and found["parsed"] == found["cached"] == files
    rewritten = [name for name in found["modules"]
                 if name in ("pytest_timeout", "pytest_bdd.plugin", "allure_pytest_bdd.plugin",
                             "conftest", "runbook.steps", "runbook.harness.plugin")
                 or name.startswith("runbook.steps.")
                 or (name.startswith("runbook.harness.") and name != "runbook.harness.resident")]
    assert rewritten == []


def test_the_resident_configures_pytest_once_through_its_rewriting_and_starts_no_thread(
    tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-P", "-c",
         "import json, sys, threading\n"
         "from runbook import runner\n"
         "from runbook.harness import resident\n"
         "before = set(sys.modules)\n"
         "resident.preload(resident.dependencies())\n"
         "from pathlib import Path\n"
         "args = runner.Selection(marks=runner.SYNTHETIC, reports=Path(sys.argv[1], 'reports'),"
         " color=False).command()[4:]\n"
         "prepared = resident.prepare(args, sys.argv[1], before)\n"
         "resident.warm_prepared()\n"
         "import re\n"
         "from pytest_bdd.steps import step_function_context_registry as steps\n"
         "parsers = [c.parser.parser for c in steps.values() if hasattr(c.parser, 'parser')]\n"
         "from _pytest.junitxml import bin_xml_escape\n"
         "cached = len(re._cache)\n"
         "bin_xml_escape('x')\n"
         "plugin = sys.modules['runbook.harness.plugin']\n"
         "print(json.dumps({'threads': threading.active_count(),"
         " 'parsers': len(parsers),"
         " 'uncompiled': sum(p._Parser__match_re is None for p in parsers),"
         " 'compiled_in_round': len(re._cache) - cached,"
         " 'loader': type(plugin.__loader__).__name__,"
         " 'configured': prepared.config._configured,"
         " 'sources': sorted(prepared.sources),"
         " 'changed': resident.changed(prepared.sources)}))",
         str(tmp_path)],
        env={**os.environ, **runner.AUTOLOAD_OFF}, capture_output=True, text=True,
        timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["threads"] == 1  # forking is safe
    # imported as a round's pytest imports it, its asserts rewritten
    assert found["loader"] == "AssertionRewritingHook"
    assert found["configured"] is False  # each round configures (pytest_configure) itself
    # built for the rounds to inherit: every step parser's expression, junit.xml's escaping
    assert found["parsers"] > 20 and found["uncompiled"] == 0
    assert found["compiled_in_round"] == 0
    package = Path(runner.__file__).resolve().parent
    # what it configured with, and what it imported ahead: a change to either is seen
    assert {str(package / "harness" / "plugin.py"), str(package / "steps" / "conftest.py"),
            str(package / "steps" / "service.py"), str(package / "probes" / "api.py"),
            str(Path(httpx.__file__).resolve())} <= set(found["sources"])
    assert found["changed"] is None


def sigterm_after_first_round(home: Path, cwd: Path, *, interval: str, mid_round: bool
                              ) -> tuple[int, str, list[int]]:
    """Start ``runbook watch`` (JSON, a round every ``interval`` s) and send it SIGTERM after
    its first round's line: with ``mid_round`` once the resident has forked the next round,
    else at once. Its exit code, its output, and the resident's and rounds' pids it had."""
    process = subprocess.Popen(
        [sys.executable, "-m", "runbook.cli", "watch", "--target", "sandbox", "-k", SCENARIOS,
         "--interval", interval, "--json"],
        cwd=cwd, env={**CLEAN, "RUNBOOK_HOME": str(home)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # this watch's first round (numbered on from earlier ones)
            if line.startswith('{"type": "round"'):
                break
        residents = residents_of(process.pid)
        assert len(residents) == 1, residents
        if mid_round:
            assert wait_until(lambda: children_of(residents[0]), timeout=10).ok
        pids = [*residents, *children_of(residents[0])]
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, out + err, pids


def test_a_watch_stopped_with_sigterm_mid_round_stops_its_round_and_its_resident(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    code, output, pids = sigterm_after_first_round(healthy_sandbox.home, tmp_path, interval="0",
                                                   mid_round=True)
    assert code == 130, output
    assert "watch interrupted after" in output
    assert not any(alive(pid) for pid in pids)


def test_a_watch_stopped_with_sigterm_between_rounds_exits_as_interrupted(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """A scheduler's SIGTERM while the watch waits for its next round (60 s away): the same
    exit as Ctrl-C, with the counters' place said and the resident stopped, not the default
    death by the signal (exit -15) that a handler held only during a round's run gave."""
    code, output, pids = sigterm_after_first_round(healthy_sandbox.home, tmp_path,
                                                   interval="60", mid_round=False)
    assert code == 130, output
    assert "watch interrupted after 1 round(s)" in output
    assert wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10).ok
