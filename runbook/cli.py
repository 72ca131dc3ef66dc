"""The ``runbook`` command: the sandbox, synthetic checks, and (in time) drills and reports.

Exit codes: 0 all passed; 1 a check failed; 2 usage or configuration error; 3 refused by a
safety gate; 4 only warning-tier checks failed; 130 interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from runbook import targets
from runbook.config import Target, TargetChoice, choose_target
from runbook.errors import ConfigError, RunbookError
from runbook.redact import Redactor
from runbook.reporting.summary import EXIT_FAILED, EXIT_USAGE, EXIT_WARNINGS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = PROJECT_ROOT / "steps" / "test_runbook.py"
EXIT_INTERRUPTED = 130

app = typer.Typer(
    help="The LegacyVideo operations runbook, executable: checks, drills, the sandbox.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
sandbox_app = typer.Typer(help="The embedded LegacyVideo on loopback.", no_args_is_help=True,
                          rich_markup_mode=None)
app.add_typer(sandbox_app, name="sandbox")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"runbook: {message}", markup=False)
    return typer.Exit(code)


def _home() -> Path:
    return Path(os.environ.get("RUNBOOK_HOME", ".runbook")).resolve()


def _sandbox():  # type: ignore[no-untyped-def]
    from runbook.sandbox import Sandbox

    return Sandbox(_home())


# -- runbook sandbox ...  --------------------------------------------------------------------

COMPONENTS = ("api", "web", "worker", "postgres", "redis", "s3", "mail")


def _component(name: str) -> str:
    if name not in COMPONENTS:
        raise _fail(f"unknown component {name!r}; one of {', '.join(COMPONENTS)}", EXIT_USAGE)
    return name


@sandbox_app.command("up")
def sandbox_up(
    timeout: Annotated[float, typer.Option(help="seconds to wait for all components")] = 60.0,
) -> None:
    """Start the sandbox (idempotent) and wait until all seven components run."""
    started = time.monotonic()
    try:
        status = _sandbox().up(timeout=timeout)
    except RunbookError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    elapsed = time.monotonic() - started
    for name, component in status.to_json()["components"].items():
        out.print(f"  {name:<9} {component['state']:<9} pid {component.get('pid') or '-':<8}"
                  f" {component.get('url') or ''}", markup=False)
    out.print(f"sandbox up in {elapsed:.1f} s; state in {_home()}", markup=False)


@sandbox_app.command("down")
def sandbox_down() -> None:
    """Stop every sandbox process (data is kept); a second call is a no-op."""
    try:
        stopped = _sandbox().down()
    except RunbookError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    out.print("sandbox stopped" if stopped else "sandbox was not running", markup=False)


@sandbox_app.command("status")
def sandbox_status(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Each component's state, pid and URL."""
    status = _sandbox().status()
    document = status.to_json()
    if as_json:
        redact = Redactor(_secrets_of(document.get("env", {})))
        out.print(redact(json.dumps(document, indent=2)), markup=False)
        return
    for name, component in document["components"].items():
        out.print(f"{name:<9} {component['state']:<9} pid {component.get('pid') or '-':<8}"
                  f" {component.get('url') or ''}", markup=False)


def _secrets_of(env: dict[str, str]) -> list[str]:
    try:
        return Target.from_variables("sandbox", env, source="sandbox").secret_values()
    except ConfigError:
        return []


@sandbox_app.command("env")
def sandbox_env() -> None:
    """``export NAME=value`` lines making the running sandbox a complete target.

    These hold the sandbox's own secrets, by design: ``eval "$(runbook sandbox env)"``."""
    import shlex

    env = _sandbox().env()
    for name, value in env.items():
        out.print(f"export {name}={shlex.quote(value)}", markup=False, soft_wrap=True)


@sandbox_app.command("logs")
def sandbox_logs(
    component: Annotated[str, typer.Argument(help=", ".join(COMPONENTS))],
    lines: Annotated[int, typer.Option("--lines", "-n")] = 200,
) -> None:
    """The last lines of a component's log."""
    sandbox = _sandbox()
    text = sandbox.logs(_component(component), lines=lines)
    out.print(Redactor(_secrets_of(sandbox.env()))(text), markup=False, end="")


@sandbox_app.command("backup")
def sandbox_backup() -> None:
    """Take a backup of the sandbox's database now (it also takes them on a schedule)."""
    from runbook.sandbox import backups

    info = backups.take_backup(_sandbox(), reason="manual")
    out.print(backups.describe(info), markup=False)


@sandbox_app.command("restart")
def sandbox_restart(component: Annotated[str, typer.Argument(help=", ".join(COMPONENTS))]
                    ) -> None:
    """Restart one component, as the platform's restart does."""
    try:
        _sandbox().restart(_component(component))
    except RunbookError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    out.print(f"{component} restarted", markup=False)


# -- runbook check ---------------------------------------------------------------------------


def _resolve(target_name: str | None, config_file: Path | None) -> tuple[TargetChoice, Target]:
    """Choose the target, start the sandbox when it is the one and is down, validate."""
    choice = choose_target(target_name, config_file=config_file)
    started = time.monotonic()

    def said(_: float) -> None:
        err.print(f"sandbox started in {time.monotonic() - started:.1f} s ({_home()})",
                  markup=False)

    return choice, targets.resolve(choice, _home(), on_start=said)


def run_scenarios(
    *,
    marks: str,
    target_name: str | None,
    config_file: Path | None,
    reports: Path,
    extra: Sequence[str] = (),
    allow_drills: str | None = None,
) -> int:
    """Run the bound scenarios selected by ``marks`` in a pytest subprocess.

    Its output is streamed through the redactor; returns the runbook exit code.
    """
    config_file = config_file or (Path("runbook.toml") if Path("runbook.toml").exists() else None)
    try:
        choice, target = _resolve(target_name, config_file)
    except RunbookError as exc:
        err.print(f"runbook: {exc}", markup=False)
        return exc.exit_code
    reports = reports.resolve()
    reports.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex
    command = [
        sys.executable, "-m", "pytest", str(SCENARIOS),
        "-m", marks,
        "--target", choice.name,
        "--alluredir", str(reports / "allure-results"),
        "--junitxml", str(reports / "junit.xml"),
        "--runbook-reports", str(reports),
        "-o", "junit_family=xunit2",
        "--color", "yes" if sys.stdout.isatty() else "no",
        "-rN",
        # Every scenario's overall deadline, above the per-probe ones (pytest-timeout).
        "--timeout", os.environ.get("RUNBOOK_SCENARIO_DEADLINE", "120"),
        *extra,
    ]
    if config_file is not None:
        command += ["--runbook-config", str(config_file.resolve())]
    if allow_drills:
        command += ["--allow-drills", allow_drills]
    from runbook import manual

    env = dict(os.environ, RUNBOOK_HOME=str(_home()), RUNBOOK_RUN_ID=run_id,
               RUNBOOK_RECORDS=str(manual.records_file().parent.resolve()))
    redact = Redactor(target.secret_values())
    code = _stream(command, env, redact)
    if code == EXIT_INTERRUPTED:
        return code
    return _runbook_exit(code, reports / "summary.json", run_id, marks)


def _stream(command: list[str], env: dict[str, str], redact: Redactor) -> int:
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace", bufsize=1,
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            sys.stdout.write(redact(line))
            sys.stdout.flush()
        return process.wait()
    except KeyboardInterrupt:
        # The child got the same SIGINT (same process group); let it finish its teardown.
        process.send_signal(signal.SIGINT)
        for line in process.stdout:
            sys.stdout.write(redact(line))
        process.wait()
        err.print("runbook: interrupted", markup=False)
        return EXIT_INTERRUPTED


def _runbook_exit(code: int, summary: Path, run_id: str, marks: str) -> int:
    """Map pytest's exit code onto the runbook's, trusting only this run's summary."""
    recorded: int | None = None
    try:
        document = json.loads(summary.read_text(encoding="utf-8"))
        if document.get("run_id") == run_id:
            recorded = int(document["exit_code"])
    except (OSError, ValueError, KeyError):
        recorded = None
    if recorded is not None:
        return recorded
    if code == 5:
        err.print(f"runbook: no scenario matches {marks!r}; check --tags", markup=False)
        return EXIT_USAGE
    if code in (2, 3):  # pytest.exit from the configuration check or a safety gate
        return code
    if code == 4 or code == EXIT_WARNINGS:
        return EXIT_USAGE  # pytest's usage error (a warnings-only run writes its summary)
    return EXIT_FAILED if code else 0


def _marks(tags: str | None, cadence: str | None) -> str:
    """The scenarios a check runs: ``tags`` (default: the @synthetic ones), at a cadence
    (then the @manual items of that cadence too, so what is due shows as expired)."""
    if cadence:
        return f"({tags or 'synthetic or manual'}) and {cadence}"
    return f"({tags})" if tags else "synthetic"


TargetOption = Annotated[
    str | None,
    typer.Option("--target", help="sandbox, env, or a [targets.NAME] profile of runbook.toml"),
]
ReportsOption = Annotated[Path, typer.Option("--reports", help="where reports are written")]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="runbook.toml with target profiles")
]


@app.command()
def check(
    target: TargetOption = None,
    tags: Annotated[str | None, typer.Option(
        help="a tag expression selecting scenarios instead of @synthetic, e.g."
             " 'synthetic and critical' or 'operation'")] = None,
    match: Annotated[str | None, typer.Option(
        "--match", "-k", help="only scenarios whose name matches (pytest -k syntax)")] = None,
    cadence: Annotated[
        str | None, typer.Option(help="daily, weekly, monthly or quarterly")
    ] = None,
    reports: ReportsOption = Path("reports"),
    config: ConfigOption = None,
    allow_operations: Annotated[str | None, typer.Option(
        metavar="ENVIRONMENT",
        help="let @operation scenarios change state on this environment (needed only for"
             " production; staging and the sandbox allow them)")] = None,
    retries: Annotated[int, typer.Option(
        min=0, max=10,
        help="re-run a failing scenario up to N times; it counts as failed only if every"
             " attempt fails, and a pass on retry is reported as flaky")] = 0,
) -> None:
    """Run the @synthetic scenarios (read-only, bounded) against the target, or those
    --tags selects (@operation ones pass the safety gates first)."""
    if cadence is not None and cadence not in ("daily", "weekly", "monthly", "quarterly"):
        raise _fail(f"--cadence {cadence!r}: one of daily, weekly, monthly, quarterly",
                    EXIT_USAGE)
    extra = ["--reruns", str(retries), "--reruns-delay", "1"] if retries else []
    if match:
        extra += ["-k", match]
    if allow_operations:
        extra += ["--allow-operations", allow_operations]
    code = run_scenarios(marks=_marks(tags, cadence), target_name=target,
                         config_file=config, reports=reports, extra=extra)
    raise typer.Exit(code)


@app.command()
def drill(
    names: Annotated[list[str] | None, typer.Argument(
        metavar="[NAME]...",
        help="runbook sections to drill (e.g. service-down); all drills when omitted")] = None,
    target: TargetOption = None,
    allow_drills: Annotated[str | None, typer.Option(
        metavar="ENVIRONMENT",
        help="let destructive drills run against this environment: staging needs it;"
             " production is always refused")] = None,
    reports: ReportsOption = Path("reports"),
    config: ConfigOption = None,
) -> None:
    """Run @drill scenarios: game days and DR drills that inject faults, measure detection
    and recovery, and always restore. Records go to reports/drills/."""
    extra = ["--runbook-sections", ",".join(names)] if names else []
    code = run_scenarios(marks="drill", target_name=target, config_file=config,
                         reports=reports, extra=extra, allow_drills=allow_drills)
    raise typer.Exit(code)


manual_app = typer.Typer(help="Record what only a person can do, with who, when, evidence.",
                         no_args_is_help=True, rich_markup_mode=None)
app.add_typer(manual_app, name="manual")


@manual_app.command("record")
def manual_record(
    scenario: Annotated[str, typer.Argument(help="the @manual scenario's name, as in the feature")],
    by: Annotated[str, typer.Option(help="who did it")],
    evidence: Annotated[str, typer.Option(help="where the proof is: a link, a ticket")],
    result: Annotated[str, typer.Option(help="pass or fail")] = "pass",
    notes: Annotated[str, typer.Option(help="anything the reviewer should know")] = "",
    at: Annotated[str | None, typer.Option(
        help="when it was done, ISO 8601 with a zone (default: now)")] = None,
) -> None:
    """Record the result of a manual runbook step; its scenario reads it back."""
    from datetime import datetime

    from runbook import manual

    known = {name.lower(): name for name in _manual_scenarios()}
    if scenario.lower() not in known:
        raise _fail(f"no @manual scenario named {scenario!r}; see 'runbook manual list'",
                    EXIT_USAGE)
    try:
        when = datetime.fromisoformat(at) if at else None
    except ValueError:
        raise _fail(f"--at {at!r} is not an ISO 8601 time, e.g. 2026-11-28T09:00:00+00:00",
                    EXIT_USAGE) from None
    try:
        entry = manual.record(known[scenario.lower()], result=result, by=by,
                              evidence=evidence, notes=notes, at=when)
    except RunbookError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    out.print(f"recorded {entry.result} for {entry.name!r} by {entry.by} at {entry.at}"
              f" in {manual.records_file()}", markup=False)


@manual_app.command("list")
def manual_list() -> None:
    """Every @manual scenario with its latest record and whether it is still valid."""
    from runbook import manual

    try:
        for name, cadence in _manual_scenarios().items():
            standing = manual.standing(name, cadence)
            failed = standing.record is not None and standing.record.result != "pass"
            mark = "EXPD" if standing.expired else "FAIL" if failed else "ok  "
            out.print(f"{mark} {name} [{cadence or 'quarterly'}]: {standing.describe()}",
                      markup=False)
    except RunbookError as exc:
        raise _fail(str(exc), exc.exit_code) from None


def _manual_scenarios() -> dict[str, str | None]:
    """name -> cadence of every @manual scenario under features/."""
    from runbook.features import load_features

    cadences = ("daily", "weekly", "monthly", "quarterly")
    found: dict[str, str | None] = {}
    for scenario in load_features(PROJECT_ROOT / "features"):
        if "manual" in scenario.tags:
            found[scenario.name] = next((c for c in cadences if c in scenario.tags), None)
    return found


def allure_cli() -> str | None:
    """The Allure 3 CLI: the project's own (``npm install`` in the project), else on PATH."""
    import shutil

    local = PROJECT_ROOT / "node_modules" / ".bin" / "allure"
    if local.exists():
        return str(local)
    return shutil.which("allure")


@app.command()
def report(
    reports: ReportsOption = Path("reports"),
    timeout: Annotated[float, typer.Option(help="seconds the Allure CLI may take")] = 300.0,
) -> None:
    """Render reports/allure-results as HTML in reports/allure-report with the Allure 3 CLI."""
    results = reports.resolve() / "allure-results"
    if not any(results.glob("*-result.json")):
        raise _fail(f"no Allure results in {results}; run runbook check or runbook drill first",
                    EXIT_USAGE)
    cli = allure_cli()
    if cli is None:
        raise _fail(
            "the HTML report needs Node.js and the Allure 3 CLI (npm package 'allure'):"
            f" install Node.js, then run 'npm install' in {PROJECT_ROOT}; the raw results in"
            f" {results} stay usable", EXIT_USAGE)
    output = reports.resolve() / "allure-report"
    try:
        done = subprocess.run(
            [cli, "generate", str(results), "--output", str(output),
             "--report-name", "LegacyVideo runbook"],
            capture_output=True, text=True, timeout=timeout, check=False,
            env=dict(os.environ, NO_COLOR="1"),
        )
    except subprocess.TimeoutExpired:
        raise _fail(f"the Allure CLI did not finish within {timeout:g} s", EXIT_FAILED) from None
    if done.returncode != 0 or not (output / "index.html").exists():
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise _fail(f"the Allure CLI failed (exit {done.returncode}): {last[0]}", EXIT_FAILED)
    out.print(f"HTML report: {output / 'index.html'}", markup=False)


def main() -> None:
    """Entry point of the ``runbook`` console script."""
    try:
        app()
    except RunbookError as exc:
        err.print(f"runbook: {exc}", markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("runbook: interrupted", markup=False)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
