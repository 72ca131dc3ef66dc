"""Running the bound scenarios in a pytest subprocess: one code path for ``runbook check``,
``runbook drill``, every ``runbook watch`` round, and a game day's detection round (the
scheduled suite run against the faulted target, as the schedule would run it).

A ``runbook watch`` round is forked from a resident pytest instead (``runbook.resident``),
driven through the same code as the subprocess.

The subprocess gets the target already resolved, in its environment (``RUNBOOK_RUN``, a
``targets.RunSpec``; secrets travel there, never on its command line). Its output is
streamed through the redactor. The runbook exit code comes from the run's own
``summary.json`` (its ``run_id`` must match), else from pytest's exit code.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from runbook import manual, shipped
from runbook.errors import ConfigError
from runbook.features import load_features
from runbook.redact import Redactor
from runbook.reporting.summary import EXIT_FAILED, EXIT_USAGE, EXIT_WARNINGS
from runbook.resident import Resident, ResidentUnavailable, Round

#: The module binding every feature, shipped in the package.
SCENARIOS = shipped.SCENARIOS
EXIT_INTERRUPTED = 130

#: What runs every few minutes (``check`` without options, ``watch``, a game day's
#: detection): the synthetic checks that have no maintenance cadence; those run at their
#: cadence, with ``--cadence``.
SYNTHETIC = "synthetic and not (daily or weekly or monthly or quarterly)"
#: Variables that describe the pytest process a run was started from (a game day's
#: detection round runs while the drill's own pytest is running): not the new run's.
#: ``PYTEST_ADDOPTS`` and ``PYTEST_PLUGINS`` are the user's and go through.
_PYTEST_VARIABLES = ("PYTEST_CURRENT_TEST", "PYTEST_XDIST_WORKER",
                     "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")
#: The run loads the plugins ``Selection.plugins`` names, not every installed one (also in
#: pytest-xdist's workers, which inherit the environment).
AUTOLOAD_OFF = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
#: How pytest reports a run it stopped (``pytest.exit``: a safety gate's refusal, a
#: configuration error): ``!!! _pytest.outcomes.Exit: <reason> !!!``.
_EXIT_REASON = re.compile(r"^!+ _pytest\.outcomes\.Exit: (?P<reason>.+?) !+$")


def color_wanted(stream: TextIO) -> bool:
    """Colour for output shown on ``stream``: only a terminal, and never with ``NO_COLOR``
    set to anything but the empty string (https://no-color.org; ``--no-color`` sets it)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def marks_for(tags: str | None, cadence: str | None) -> str:
    """The scenarios a check runs: ``tags`` (default: the @synthetic ones without a
    cadence), at a cadence (then its @synthetic and @manual items, so what is due shows as
    expired)."""
    if cadence:
        return f"({tags or 'synthetic or manual'}) and {cadence}"
    return f"({tags})" if tags else SYNTHETIC


def features_directory() -> Path:
    """The feature files the runs use: ``RUNBOOK_FEATURES`` (``--features``), else the ones
    shipped in the package."""
    return Path(os.environ.get("RUNBOOK_FEATURES") or shipped.FEATURES).resolve()


def use_features(directory: Path | None) -> Path:
    """``--features DIR``: the runs of this process and their pytest subprocesses read the
    feature files there (``RUNBOOK_FEATURES``). A directory that does not exist, or holds no
    scenario, is a usage error (one line, exit 2). Returns the directory in use."""
    if directory is None:
        return features_directory()
    resolved = directory.expanduser().resolve()
    if not resolved.is_dir():
        raise ConfigError(f"--features {directory}: no such directory")
    if not any(resolved.rglob("*.feature")):
        raise ConfigError(f"--features {directory}: no .feature file in it")
    os.environ["RUNBOOK_FEATURES"] = str(resolved)
    return resolved


def check_features(directory: Path) -> None:
    """Every feature file parses: a malformed one is one line naming it, before any run."""

    if not load_features(directory):
        raise ConfigError(f"{directory}: no scenarios in any .feature file; check --features"
                          " (RUNBOOK_FEATURES)")


@dataclass(frozen=True)
class Selection:
    """One pytest run of the bound scenarios: which (``marks``, ``extra``), writing where.
    The target is not on the command line: the run gets it resolved, in its environment
    (``targets.RunSpec.to_environ``)."""

    marks: str
    reports: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    extra: Sequence[str] = ()
    #: Allure results and junit.xml (a detection round keeps only its summary).
    full_reports: bool = True
    #: Every scenario's overall deadline (pytest-timeout), seconds.
    deadline_s: str = field(default_factory=lambda: os.environ.get(
        "RUNBOOK_SCENARIO_DEADLINE", "120"))
    #: pytest's colours: for a terminal without ``NO_COLOR`` (the caller's stream).
    color: bool = field(default_factory=lambda: color_wanted(sys.stdout))

    def command(self) -> list[str]:
        """The pytest command line (no secret on it): the shipped scenarios with the shipped
        configuration, from whatever directory the command runs in (``-P``: a ``runbook``
        directory there is not the package)."""
        features = features_directory()
        command = [
            sys.executable, "-P", "-m", "pytest", str(SCENARIOS),
            "-c", str(shipped.PYTEST_INI),
            "-m", self.marks,
            "--runbook-reports", str(self.reports),
            "-o", f"bdd_features_base_dir={features}",
            # Allure names a feature by its path under the root (features/<file> for the
            # shipped ones, as pytest finds pytest.ini itself): a common one for features
            # outside the package (--features, RUNBOOK_FEATURES).
            "--rootdir", os.path.commonpath([shipped.PACKAGE, features]),
            "--color", "yes" if self.color else "no",
            "-rN",
            # Every scenario's overall deadline, above the per-probe ones (pytest-timeout).
            "--timeout", self.deadline_s,
            *self.plugins(),
            *self.extra,
        ]
        if self.full_reports:
            command += ["--alluredir", str(self.reports / "allure-results"),
                        "--junitxml", str(self.reports / "junit.xml"),
                        "-o", "junit_family=xunit2"]
        return command

    def plugins(self) -> list[str]:
        """The plugins the run loads, by name (``-p``), and no others: pytest's search of
        every installed distribution for plugins is skipped (``AUTOLOAD_OFF``, a third of
        the run's start-up). A team's own plugins come in through ``PYTEST_PLUGINS`` or
        ``PYTEST_ADDOPTS='-p NAME'``, as pytest documents."""
        names = ["pytest_bdd.plugin", "pytest_timeout"]
        if self.full_reports:
            names.append("allure_pytest_bdd.plugin")
        if "--reruns" in self.extra:
            names.append("pytest_rerunfailures")
        if "-n" in self.extra:
            names.append("xdist.plugin")
        # Not pytest's hunt for unraisable exceptions: it forces garbage collections at the
        # end of the run (about a tenth of a check's CPU) to report warnings no check reads.
        return [option for name in names for option in ("-p", name)] + [
            "-p", "no:unraisableexception"]


def environment(run_id: str, home: Path, extra: Mapping[str, str] | None = None
                ) -> dict[str, str]:
    """The subprocess's environment: this one (without a parent pytest's variables), the
    run id, ``RUNBOOK_HOME`` and ``RUNBOOK_RECORDS`` made absolute, then ``extra``."""

    env = {k: v for k, v in os.environ.items() if k not in _PYTEST_VARIABLES}
    env.update(RUNBOOK_HOME=str(home), RUNBOOK_RUN_ID=run_id,
               RUNBOOK_RECORDS=str(manual.records_file().parent.resolve()))
    env.update(extra or {})
    return env


def execute(selection: Selection, env: Mapping[str, str], redact: Redactor, *,
            echo: Callable[[str], None] | None = None, handle_signals: bool = True,
            timeout_s: float | None = None, say: Callable[[str], None] | None = None,
            resident: Resident | None = None) -> int:
    """Run ``selection`` and return the runbook exit code.

    ``echo`` hears every output line, redacted (nothing is shown without it).
    ``handle_signals``: SIGTERM stops the child too, then it is treated as Ctrl-C (exit
    130); without it (a run started inside a drill, whose own handlers are installed), an
    interruption stops the child and propagates. ``timeout_s`` bounds the whole run: the
    child is stopped and the run counts as failed. ``say`` hears why a run that wrote no
    summary ended as it did. With ``resident`` (``runbook watch``) the run is forked from
    it, else (or when it is unavailable) it is a new pytest subprocess."""
    selection.reports.mkdir(parents=True, exist_ok=True)
    process = _start(selection.command(), {**env, **AUTOLOAD_OFF}, resident)
    assert process.stdout is not None
    terminated: list[int] = []
    reasons: list[str] = []

    def heard(line: str) -> None:
        shown = redact(line)
        if found := _EXIT_REASON.match(shown.strip()):
            # Said once, in the runbook's own words (``runbook: <reason>``), not also as
            # pytest's banner.
            reasons.append(found["reason"])
            return
        if echo is not None:
            echo(shown)

    def terminate(signum: int, frame: object) -> None:
        # A scheduler stopping the run: the child must stop too (a drill restores first),
        # not carry on unwatched; then as for Ctrl-C (once).
        process.send_signal(signal.SIGTERM)
        if not terminated:
            terminated.append(signum)
            raise KeyboardInterrupt

    previous = None
    if handle_signals:
        try:
            previous = signal.signal(signal.SIGTERM, terminate)
        except ValueError:  # not the main thread
            previous = None
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    timer = None
    if deadline is not None:
        import threading

        def overdue() -> None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

        timer = threading.Timer(timeout_s or 0.0, overdue)
        timer.daemon = True
        timer.start()
    try:
        for line in process.stdout:
            heard(line)
        code = process.wait()
    except KeyboardInterrupt:
        if not handle_signals:
            _stop(process)
            raise
        # The child got the same SIGINT (same process group); let it finish its teardown.
        process.send_signal(signal.SIGINT)
        for line in process.stdout:
            heard(line)
        process.wait()
        return EXIT_INTERRUPTED
    except BaseException:
        _stop(process)
        raise
    finally:
        if timer is not None:
            timer.cancel()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if deadline is not None and time.monotonic() > deadline and code != 0:
        return EXIT_FAILED
    return runbook_exit(code, selection.reports / "summary.json", selection.run_id,
                        selection.marks, say, reason=reasons[-1] if reasons else None)


def _start(command: list[str], env: dict[str, str], resident: Resident | None
           ) -> subprocess.Popen[str] | Round:
    """The run's process: forked by ``resident`` when there is one and it is available,
    else a new pytest subprocess (the resident says why, once)."""
    if resident is not None:
        try:
            return resident.spawn(command, env)
        except ResidentUnavailable as exc:
            resident.fallback(exc)
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1)


def _stop(process: subprocess.Popen[str] | Round, grace_s: float = 10.0) -> None:
    """Stop the child (SIGTERM, then SIGKILL after ``grace_s``) and reap it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace_s)


def load_summary(reports: Path, run_id: str) -> dict[str, Any] | None:
    """This run's ``summary.json`` (``None`` when absent, torn, or another run's)."""
    try:
        document = json.loads((reports / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("run_id") != run_id:
        return None
    return document


def runbook_exit(code: int, summary: Path, run_id: str, marks: str,
                 say: Callable[[str], None] | None = None, *, reason: str | None = None
                 ) -> int:
    """Map pytest's exit code onto the runbook's, trusting only this run's summary.
    Without one, ``say`` hears why: ``reason`` (what stopped the run, redacted), or that
    nothing matched."""
    document = load_summary(summary.parent, run_id)
    if document is not None and isinstance(document.get("exit_code"), int):
        return int(document["exit_code"])
    if reason is not None and say is not None:
        say(reason)
    if code == 5:
        if say is not None:
            say(f"no scenario matches {marks!r}; check --tags")
        return EXIT_USAGE
    if code in (2, 3):  # pytest.exit from the configuration check or a safety gate
        return code
    if code == 4 or code == EXIT_WARNINGS:
        return EXIT_USAGE  # pytest's usage error (a warnings-only run writes its summary)
    return EXIT_FAILED if code else 0
