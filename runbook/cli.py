"""The ``runbook`` command: the sandbox, synthetic checks, and (in time) drills and reports.

Exit codes: 0 all passed; 1 a check failed; 2 usage or configuration error; 3 refused by a
safety gate; 4 only warning-tier checks failed; 130 interrupted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from typer._click import Command as ClickCommand  # Typer vendors click: its groups' types
from typer._click import Context as ClickContext
from typer._click.exceptions import ClickException
from typer.core import TyperGroup

from runbook import runner, shipped
from runbook.config import Target, setting_secrets
from runbook.errors import ConfigError, RunbookError
from runbook.redact import Redactor
from runbook.reporting import allure3, publish
from runbook.reporting.summary import EXIT_FAILED, EXIT_REFUSED, EXIT_USAGE, json_lines
from runbook.resident import Resident
from runbook.runner import EXIT_INTERRUPTED, SCENARIOS
from runbook.sections import RUNBOOK_FILE
from runbook.targets import RunSpec

__all__ = ["SCENARIOS", "app", "main"]

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

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def version() -> str:
    """``runbook <version>``, and ``(commit <hash>)`` when it runs from a git checkout of the
    project (not from a wheel installed in a virtualenv that happens to sit in some other
    repository)."""
    from importlib import metadata

    try:
        line = f"runbook {metadata.version('legacyvideo-runbook')}"
    except metadata.PackageNotFoundError:
        line = "runbook (not installed)"
    try:
        found = subprocess.run(["git", "rev-parse", "--show-toplevel", "--short=12", "HEAD"],
                               cwd=shipped.SOURCE, capture_output=True, text=True, timeout=5,
                               check=False)
    except (OSError, subprocess.SubprocessError):
        return line
    top, _, commit = found.stdout.strip().partition("\n")
    if found.returncode == 0 and commit and Path(top).resolve() == shipped.SOURCE:
        line += f" (commit {commit.strip()})"
    return line


def _show_version(value: bool) -> None:
    if value:
        out.print(version(), markup=False)
        raise typer.Exit(0)


@app.callback(epilog="Examples: runbook sandbox up; runbook check; runbook check --json |"
                     " jq; runbook drill api-crash; NO_COLOR=1 runbook check")
def _options(
    _version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_show_version,
        help="the version (and the commit, in a git checkout), then exit")] = False,
    no_color: Annotated[bool, typer.Option(
        "--no-color", help="no colour anywhere, as with NO_COLOR=1 (https://no-color.org)")
    ] = False,
) -> None:
    """The LegacyVideo operations runbook, executable: checks, drills, the sandbox."""
    if no_color:
        # As NO_COLOR for this process and what it starts (pytest, the Allure CLI).
        os.environ["NO_COLOR"] = "1"
        out.no_color = err.no_color = True


@dataclass
class Reply:
    """How a command answers: human lines on stdout (errors on stderr), or with ``--json``
    one JSON object per line on stdout and the human output on stderr. Each JSON line is
    redacted value by value with the run's redactor, the one its human lines go through."""

    as_json: bool = False
    redact: Redactor = field(default_factory=Redactor)
    #: What was said of the run on the way (``runbook: ...`` lines): why it has no result.
    said: list[str] = field(default_factory=list)

    @property
    def human(self) -> TextIO:
        """Where the human output goes: stdout, or stderr beside JSON."""
        return sys.stderr if self.as_json else sys.stdout

    @property
    def live(self) -> bool:
        """Whether someone watches the human output on a terminal (live progress)."""
        return self.human.isatty()

    def json(self, document: Mapping[str, Any]) -> None:
        sys.stdout.write(json.dumps(self.redact.data(dict(document))) + "\n")
        sys.stdout.flush()

    def say(self, message: str) -> None:
        """A one-line message about the run (``runbook: ...`` on stderr), kept for the
        JSON error object."""
        self.said.append(message)
        err.print(f"runbook: {message}", markup=False)

    def fail(self, message: str, code: int) -> typer.Exit:
        """Exit ``code``: the message on stderr, and with ``--json`` as an error object."""
        err.print(f"runbook: {message}", markup=False)
        if self.as_json:
            self.json(error(code, message))
        return typer.Exit(code)

    def result(self, code: int, reports: Path, run_id: str) -> typer.Exit:
        """The run's end: with ``--json`` its scenarios and summary from its own
        ``summary.json``, or an error object when it has none; exit ``code`` either way."""
        if self.as_json:
            document = runner.load_summary(reports.resolve(), run_id)
            if document is None:
                message = (self.said[-1] if self.said
                           else f"the run ended (exit {code}) with no result")
                self.json(error(code, message))
            else:
                for line in json_lines(document):
                    self.json(line)
        return typer.Exit(code)


def error(code: int, message: str) -> dict[str, Any]:
    """The JSON object of a command that could not give its result: refused, misconfigured,
    interrupted."""
    return {"type": "error", "exit_code": code, "message": message}


JsonOption = Annotated[bool, typer.Option(
    "--json", help="JSON lines on stdout (schema: docs/json-output.md); the human output goes"
                   " to stderr")]


def _fail(message: str, code: int) -> typer.Exit:
    return Reply().fail(message, code)


def _home() -> Path:
    return Path(os.environ.get("RUNBOOK_HOME", ".runbook")).resolve()


def _sandbox(*, command: bool = True):  # type: ignore[no-untyped-def]
    """The sandbox in ``RUNBOOK_HOME``; for a ``runbook sandbox`` ``command``, only where the
    ``[sandbox]`` extra is installed (else one line saying how, exit 2)."""
    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook.sandbox import Sandbox, extra

    if command:
        try:
            extra.require()
        except RunbookError as exc:
            raise _fail(str(exc), exc.exit_code) from None
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
    # imported when this command runs: `runbook --help` and the other commands stay fast
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


def _resolve(target_name: str | None, config_file: Path | None, *,
             allow_drills: str | None = None, allow_operations: str | None = None
             ) -> tuple[RunSpec, Target]:
    """The run's target, resolved once for the whole run: chosen and validated
    (``RunSpec.choose``), the sandbox started when it is the one and is down."""
    config_file = config_file or (Path("runbook.toml") if Path("runbook.toml").exists() else None)
    started = time.monotonic()

    def said(_: float) -> None:
        err.print(f"sandbox started in {time.monotonic() - started:.1f} s ({_home()})",
                  markup=False)

    run = RunSpec.choose(target_name, home=_home(), config_file=config_file,
                         allow_drills=allow_drills, allow_operations=allow_operations)
    return run, run.target(on_start=said)


def run_scenarios(
    *,
    marks: str,
    target_name: str | None,
    config_file: Path | None,
    reports: Path,
    extra: Sequence[str] = (),
    allow_drills: str | None = None,
    allow_operations: str | None = None,
    delivery: publish.Delivery | None = None,
    echo: bool = True,
    deadline_s: str | None = None,
    run_id: str | None = None,
    reply: Reply | None = None,
    phases: bool = False,
    workers: int = 1,
    always_parallel: bool = False,
    match: str | None = None,
) -> int:
    """Resolve the target once, then run the bound scenarios selected by ``marks`` (and
    ``match``, already in ``extra``) against it (``run_resolved``), on ``workers`` processes
    where they pay or ``always_parallel``; returns the runbook exit code."""
    reply = reply or Reply()
    try:
        runner.check_features(runner.features_directory())
        run, target = _resolve(target_name, config_file, allow_drills=allow_drills,
                               allow_operations=allow_operations)
    except RunbookError as exc:
        reply.say(str(exc))
        return exc.exit_code
    if workers > 1:
        extra = [*extra, *(["-n", str(workers)] if always_parallel else _workers_that_pay(
            workers, target.name, reports, marks, match))]
    return run_resolved(run, target, marks=marks, reports=reports, extra=extra,
                        delivery=delivery, echo=echo, deadline_s=deadline_s, run_id=run_id,
                        reply=reply, phases=phases)


def run_resolved(
    run: RunSpec,
    target: Target,
    *,
    marks: str,
    reports: Path,
    extra: Sequence[str] = (),
    delivery: publish.Delivery | None = None,
    run_id: str | None = None,
    echo: bool = True,
    deadline_s: str | None = None,
    reply: Reply | None = None,
    phases: bool = False,
    resident: Resident | None = None,
) -> int:
    """Run the bound scenarios selected by ``marks`` against the resolved ``run`` in a
    pytest subprocess (``runbook.runner``; forked from ``resident`` when given), which gets
    the run in its environment.

    Its output is streamed through the redactor to the reply's human output (dropped when
    not ``echo``); on a terminal one line per scenario as it ends and, with ``phases``, each
    drill phase as it starts. Returns the runbook exit code. With ``delivery`` the run's
    metrics are written (and pushed) and its failures posted to the webhook; ``runbook
    watch`` does that itself (``None``).
    """
    reply = reply or Reply()
    reports = reports.resolve()
    human = reply.human
    live = echo and reply.live
    selection = runner.Selection(marks=marks, reports=reports,
                                 run_id=run_id or uuid.uuid4().hex,
                                 extra=(*extra, "-v") if live else tuple(extra),
                                 color=runner.color_wanted(human))
    if deadline_s is not None:
        selection = replace(selection, deadline_s=deadline_s)
    started = datetime.now(UTC)
    redact = reply.redact
    redact.add([*target.secret_values(), *setting_secrets(os.environ)])
    if delivery is not None:
        redact.add(delivery.secrets())

    def shown(line: str) -> None:
        human.write(line)
        human.flush()

    with _phases_shown(reports / "drills", started, human, on=live and phases):
        code = runner.execute(selection, runner.environment(selection.run_id, _home(),
                                                            run.to_environ()), redact,
                              echo=shown if echo else None, say=reply.say,
                              resident=resident)
    if code == EXIT_INTERRUPTED:
        reply.say("interrupted")
        return code
    if delivery is not None:
        publish.publish_run(reports, run_id=selection.run_id, code=code, target=run.name,
                            started=started, redact=redact, delivery=delivery,
                            warn=lambda line: err.print(f"runbook: warning: {redact(line)}",
                                                        markup=False))
    return code


@contextmanager
def _phases_shown(directory: Path, since: datetime, stream: TextIO, *, on: bool
                  ) -> Iterator[None]:
    """While the block runs (and ``on``), each drill phase started under ``directory`` is
    shown on ``stream`` as it starts, followed from the drills' progress files."""
    if not on:
        yield
        return
    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook.drills.record import follow_progress

    def show(drill: str, phase: str, at: datetime) -> None:
        stream.write(f"runbook: drill {drill}: {phase} ({at:%H:%M:%S}Z)\n")
        stream.flush()

    stop = threading.Event()
    follower = threading.Thread(target=follow_progress, args=(directory, since, show, stop),
                                name="drill phases", daemon=True)
    follower.start()
    try:
        yield
    finally:
        stop.set()
        follower.join(timeout=5)


#: What runs every few minutes (``check`` without options, ``watch``).
SYNTHETIC = runner.SYNTHETIC
_marks = runner.marks_for


TargetOption = Annotated[
    str | None,
    typer.Option("--target", help="sandbox, env, or a [targets.NAME] profile of runbook.toml"),
]
ReportsOption = Annotated[Path, typer.Option("--reports", help="where reports are written")]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="runbook.toml with target profiles")
]
FeaturesOption = Annotated[Path | None, typer.Option(
    "--features", metavar="DIR",
    help="run (or read) the .feature files in DIR with the shipped steps (default: the"
         " runbook's own, shipped in the package; $RUNBOOK_FEATURES)")]
PushgatewayOption = Annotated[str | None, typer.Option(
    "--pushgateway", metavar="URL",
    help="push reports/metrics.prom to this Pushgateway after the run"
         " (default: $RUNBOOK_PUSHGATEWAY_URL)")]
WebhookOption = Annotated[str | None, typer.Option(
    "--webhook", metavar="URL",
    help="Slack-compatible webhook for every alert tier (default: $RUNBOOK_WEBHOOK_URL,"
         " or $RUNBOOK_WEBHOOK_URL_CRITICAL|_WARNING|_INFO per tier); never printed")]


def _features(directory: Path | None, reply: Reply | None = None) -> Path:
    """``--features``: the feature files this command's runs use; a bad directory is one line,
    exit 2."""
    try:
        return runner.use_features(directory)
    except RunbookError as exc:
        raise (reply or Reply()).fail(str(exc), exc.exit_code) from None


def _delivery(pushgateway: str | None, webhook: str | None, reply: Reply | None = None
              ) -> publish.Delivery:
    """Where metrics and alerts go; a URL that cannot work is a usage error (exit 2)."""
    delivery = publish.Delivery(pushgateway=pushgateway, webhook=webhook)
    for problem in delivery.problems():
        raise (reply or Reply()).fail(problem, EXIT_USAGE)
    return delivery


@app.command(epilog="Examples: runbook check (the sandbox, started if down); runbook check"
                    " --target staging --cadence daily; runbook check --json -k api"
                    " (one JSON line per scenario, then the summary)")
def check(
    target: TargetOption = None,
    tags: Annotated[str | None, typer.Option(
        help="a tag expression selecting scenarios instead of @synthetic, e.g."
             " 'synthetic and critical' or 'operation'")] = None,
    match: Annotated[str | None, typer.Option(
        "--match", "-k", help="only scenarios whose name matches (pytest -k syntax)")] = None,
    cadence: Annotated[
        str | None, typer.Option(help="daily, weekly, monthly or quarterly: that cadence's"
                                      " maintenance checks and manual items")
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
    pushgateway: PushgatewayOption = None,
    webhook: WebhookOption = None,
    workers: Annotated[int, typer.Option(
        min=1, max=32,
        help="run the scenarios in N parallel processes (pytest-xdist); the summary and"
             " the exit code are the same as with 1")] = 1,
    always_parallel: Annotated[bool, typer.Option(
        "--always-parallel",
        help="with --workers N: N processes even where the latest runs of the selected"
             " scenarios say one process is faster")] = False,
    features: FeaturesOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run the @synthetic scenarios (read-only, bounded; maintenance checks only with
    --cadence) against the target, or those --tags selects (@operation ones pass the
    safety gates first)."""
    reply = Reply(as_json=as_json)
    _features(features, reply)
    if cadence is not None and cadence not in ("daily", "weekly", "monthly", "quarterly"):
        raise reply.fail(f"--cadence {cadence!r}: one of daily, weekly, monthly, quarterly",
                         EXIT_USAGE)
    extra = ["--reruns", str(retries), "--reruns-delay", "1"] if retries else []
    if match:
        extra += ["-k", match]
    run_id = uuid.uuid4().hex
    code = run_scenarios(marks=_marks(tags, cadence), target_name=target,
                         config_file=config, reports=reports, extra=extra,
                         workers=workers, always_parallel=always_parallel, match=match,
                         allow_operations=allow_operations,
                         delivery=_delivery(pushgateway, webhook, reply), run_id=run_id,
                         reply=reply)
    raise reply.result(code, reports, run_id)


def _workers_that_pay(workers: int, target: str, reports: Path, marks: str,
                      match: str | None) -> list[str]:
    """pytest's options for ``--workers N``: N workers, or one process where the selected
    scenarios' latest runs on ``target`` say N workers would start slower than they share
    the work (``runbook.parallelism``), said in one line."""
    from runbook import parallelism  # imported when it decides: --help stays fast

    decision = parallelism.decide(workers, history=reports / "history.jsonl", target=target,
                                  marks=marks, match=match)
    if not decision.parallel:  # a note on stderr, not an error (nothing for --json to carry)
        err.print(f"runbook: {decision.reason}", markup=False)
    # 1: the scenarios run in pytest's own process, as without xdist
    return ["-n", str(decision.workers)] if decision.parallel else []


class DrillGroup(TyperGroup):
    """``runbook drill``: its commands (``run``, ``sign``, ``verify``), where a first
    argument that is none of them (a section, an option, nothing) means ``run``, so
    ``runbook drill service-down --target env`` runs drills as it always did."""

    default_command = "run"

    def _with_default(self, ctx: ClickContext, args: list[str]) -> list[str]:
        if args and (args[0] in self.commands or args[0] in ctx.help_option_names):
            return args
        return [self.default_command, *args]

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self._with_default(ctx, args))

    def resolve_command(self, ctx: ClickContext, args: list[str]
                        ) -> tuple[str | None, ClickCommand | None, list[str]]:
        return super().resolve_command(ctx, self._with_default(ctx, args))


drill_app = typer.Typer(
    cls=DrillGroup, rich_markup_mode=None,
    help="Game days and DR drills (run, the default: 'runbook drill [SECTION]...' is"
         " 'runbook drill run [SECTION]...'), and their records: sign one off, verify"
         " records and ledger.")
app.add_typer(drill_app, name="drill")


@drill_app.command("run", epilog="Examples: runbook drill api-crash; runbook drill"
                                  " service-down (every drill of that section); runbook drill"
                                  " --target staging --allow-drills staging; runbook drill"
                                  " api-crash --json")
def drill(
    names: Annotated[list[str] | None, typer.Argument(
        metavar="[NAME]...",
        help="drills (e.g. high-cpu) or runbook sections (e.g. service-down: every drill"
             " of it); all drills when omitted")] = None,
    target: TargetOption = None,
    allow_drills: Annotated[str | None, typer.Option(
        metavar="ENVIRONMENT",
        help="let destructive drills run against this environment: staging needs it;"
             " production is always refused")] = None,
    allow_operations: Annotated[str | None, typer.Option(
        metavar="ENVIRONMENT",
        help="production: let the drills that only read the target (the database restore"
             " test, @read-only) run there; every other drill is still refused")] = None,
    reports: ReportsOption = Path("reports"),
    config: ConfigOption = None,
    pushgateway: PushgatewayOption = None,
    webhook: WebhookOption = None,
    workers: Annotated[int, typer.Option(hidden=True)] = 1,
    features: FeaturesOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run @drill scenarios: game days and DR drills that inject faults, measure detection
    and recovery, and always restore. Records go to reports/drills/. One at a time, never in
    parallel: each injects a fault into the target the others would be measuring. On a
    terminal each phase is shown as it starts."""
    reply = Reply(as_json=as_json)
    _features(features, reply)
    if workers != 1:
        raise reply.fail("drills never run in parallel (--workers): each injects a fault into"
                         " the target the others would be measuring; drop --workers",
                         EXIT_USAGE)
    extra = _drill_selection(names or [], reply)
    run_id = uuid.uuid4().hex
    code = run_scenarios(marks="drill", target_name=target, config_file=config,
                         reports=reports, extra=extra, allow_drills=allow_drills,
                         allow_operations=allow_operations,
                         delivery=_delivery(pushgateway, webhook, reply),
                         deadline_s=os.environ.get("RUNBOOK_DRILL_DEADLINE", "900"),
                         run_id=run_id, reply=reply, phases=True)
    raise reply.result(code, reports, run_id)


def _drill_selection(names: list[str], reply: Reply) -> list[str]:
    """The runner's options selecting ``names``: each a drill the feature files run or a
    runbook section with drills (either or both, as the user wrote them); anything else is a
    usage error listing both."""
    if not names:
        return []
    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook.features import drills, load_features

    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook.runner import features_directory

    try:
        known = drills(load_features(features_directory()))
    except RunbookError as exc:
        raise reply.fail(str(exc), exc.exit_code) from None
    sections = {section for drilled in known.values() for section in drilled}
    unknown = [name for name in names if name not in known and name not in sections]
    if unknown:
        raise reply.fail(f"no drill or drilled runbook section named"
                         f" {', '.join(map(repr, unknown))}; drills: {', '.join(sorted(known))};"
                         f" sections: {', '.join(sorted(sections))}", EXIT_USAGE)
    # A name that is both (service-down, database-connection-errors) is the section: every
    # drill of it, the named one included.
    extra: list[str] = []
    if chosen := [name for name in names if name in sections]:
        extra += ["--runbook-sections", ",".join(chosen)]
    if chosen := [name for name in names if name not in sections]:
        extra += ["--runbook-drills", ",".join(chosen)]
    return extra


@drill_app.command("sign")
def drill_sign(
    record: Annotated[Path, typer.Argument(
        metavar="RECORD", help="the drill record's .json (or its .md) under reports/drills/")],
    by: Annotated[str, typer.Option(metavar="NAME",
                                    help="who reviewed the record and signs it off")],
    evidence: Annotated[str, typer.Option(
        metavar="LINK", help="where the review is: a ticket, a pull request, a document")] = "",
) -> None:
    """Sign a drill record off: append a signed entry for it to the drill ledger, once the
    record and the ledger verify."""
    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook.drills import signoff

    try:
        entry = signoff.sign(record, by=by, evidence=evidence)
    except RunbookError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    out.print(f"signed {entry['record']} by {entry['by']} at {entry['at']}"
              f" (sha256 {entry['record_sha256'][:12]}...) in {record.parent / 'ledger.jsonl'}",
              markup=False)


@drill_app.command("verify")
def drill_verify(
    directory: Annotated[Path, typer.Argument(
        metavar="DIR", help="the drill records' directory")] = Path("reports/drills"),
) -> None:
    """Check every drill record against the ledger: bytes as written, verdict as its phases
    and figures give it, the ledger's chain intact, every signature of a recorded record.
    One line per record; exit 1 on any mismatch."""
    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook.drills.verify import verify

    try:
        verification = verify(directory)
    except RunbookError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    for line in verification.lines():
        out.print(line, markup=False)
    raise typer.Exit(0 if verification.ok else EXIT_FAILED)


@app.command(epilog="Examples: runbook watch --interval 300 --webhook $SLACK_URL; runbook"
                    " watch --rounds 3 --json (one JSON line per round); runbook watch"
                    " --listen 127.0.0.1:9464 (/metrics to scrape, / a status page)")
def watch(
    target: TargetOption = None,
    interval: Annotated[float, typer.Option(
        min=0.0, help="seconds from one round's start to the next")] = 60.0,
    fail_after: Annotated[int, typer.Option(
        min=1, help="alert after N failing rounds in a row")] = 3,
    resolve_after: Annotated[int, typer.Option(
        min=1, help="resolve after M passing rounds in a row")] = 2,
    rounds: Annotated[int, typer.Option(
        min=0, help="stop after K rounds (0: until Ctrl-C)")] = 0,
    match: Annotated[str | None, typer.Option(
        "--match", "-k", help="only scenarios whose name matches (pytest -k syntax)")] = None,
    reports: ReportsOption = Path("reports"),
    config: ConfigOption = None,
    pushgateway: PushgatewayOption = None,
    webhook: WebhookOption = None,
    as_json: JsonOption = False,
    listen: Annotated[str | None, typer.Option(
        metavar="HOST:PORT", help="serve /metrics, a status page (/) and /healthz there while"
                                  " the watch runs (port 0: any free port)")] = None,
    features: FeaturesOption = None,
    resident: Annotated[bool, typer.Option(
        help="fork each round from a pytest started once (no per-round start-up);"
             " --no-resident: a new pytest process every round")] = True,
    keep_results: Annotated[int, typer.Option(
        min=1, help="keep the Allure results of the last N rounds in REPORTS/allure-results;"
                    " older ones go")] = 60,
) -> None:
    """Run the @synthetic scenarios every interval; alert after N failing rounds in a row,
    resolve after M passing ones, each once to the webhook; metrics.prom every round."""
    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook.reporting.live import LiveServer, LiveStatus, parse_listen
    from runbook.watch import Watcher, WatchSettings, state_file  # likewise

    reply = Reply(as_json=as_json)
    _features(features, reply)
    delivery = _delivery(pushgateway, webhook, reply)
    status = LiveStatus(interval, reply.redact) if listen is not None else None
    server = None
    try:
        # Bound first: an address in use stops the watch before a sandbox is started.
        if status is not None and listen is not None:
            server = LiveServer(status, *parse_listen(listen))
        runner.check_features(runner.features_directory())
        run, resolved = _resolve(target, config)
    except RunbookError as exc:
        if server is not None:
            server.stop()
        raise reply.fail(str(exc), exc.exit_code) from None
    redact = reply.redact
    redact.add(resolved.secret_values())
    redact.add(delivery.secrets())
    human = err if as_json else out
    settings = WatchSettings(target=run.name, reports=reports.resolve(),
                             state_file=state_file(_home()), interval_s=interval,
                             fail_after=fail_after, resolve_after=resolve_after, rounds=rounds,
                             keep_results=keep_results)

    def warn(line: str) -> None:
        err.print(f"runbook: warning: {redact(line)}", markup=False)

    # Started at the first round, ended with the watch (and by the kernel with this process).
    forks = Resident(warn=warn) if resident else None

    def run_round(run_id: str) -> int:
        # The target resolved above, once: a round reads where it is now (the sandbox
        # started again when it is down), never chooses it again.
        try:
            now = run.target()
        except RunbookError as exc:
            reply.say(str(exc))
            return exc.exit_code
        return run_resolved(run, now, marks=SYNTHETIC, reports=reports,
                            extra=["-k", match] if match else [], run_id=run_id,
                            echo=False, reply=reply, resident=forks)

    def say(line: str) -> None:
        human.print(redact(line), markup=False)
        human.file.flush()

    if status is not None:
        status.target = run.name
    watcher = Watcher(settings, run_round, redact=redact, delivery=delivery, say=say, warn=warn,
                      report=reply.json if as_json else None, status=status,
                      forked_cpu=(lambda: forks.rounds_cpu_s) if forks is not None else None)
    human.print(f"watching {run.name} every {interval:g} s: alert after {fail_after} failing"
                f" rounds, resolve after {resolve_after} passing; Ctrl-C stops", markup=False)
    if server is not None:
        server.start()
        say(f"listening on {server.url} (/metrics, /healthz, / the status page)")
    try:
        code = watcher.run()
    finally:
        if forks is not None:
            forks.close()
        if server is not None:
            server.stop()
    if as_json and code in (EXIT_USAGE, EXIT_REFUSED, EXIT_INTERRUPTED):
        reply.json(error(code, reply.said[-1] if reply.said else "interrupted"))
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
    features: FeaturesOption = None,
) -> None:
    """Record the result of a manual runbook step; its scenario reads it back."""
    from datetime import datetime

    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook import manual

    _features(features)
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


@manual_app.command("list", epilog="Examples: runbook manual list; runbook manual list --json"
                                   " | jq 'select(.state != \"ok\")'")
def manual_list(features: FeaturesOption = None, as_json: JsonOption = False) -> None:
    """Every @manual scenario with its latest record and whether it is still valid."""
    from dataclasses import asdict

    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook import manual

    reply = Reply(as_json=as_json)
    _features(features, reply)
    try:
        for name, cadence in _manual_scenarios().items():
            standing = manual.standing(name, cadence)
            failed = standing.record is not None and standing.record.result != "pass"
            state = "expired" if standing.expired else "failed" if failed else "ok"
            if as_json:
                reply.json({"type": "manual", "name": name, "cadence": cadence or "quarterly",
                            "state": state, "valid_days": standing.validity.days,
                            "record": asdict(standing.record) if standing.record else None})
                continue
            mark = {"expired": "EXPD", "failed": "FAIL", "ok": "ok  "}[state]
            out.print(f"{mark} {name} [{cadence or 'quarterly'}]: {standing.describe()}",
                      markup=False)
    except RunbookError as exc:
        raise reply.fail(str(exc), exc.exit_code) from None


def _manual_scenarios() -> dict[str, str | None]:
    """name -> cadence of every @manual scenario of the features in use."""
    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook.features import load_features

    cadences = ("daily", "weekly", "monthly", "quarterly")
    found: dict[str, str | None] = {}
    for scenario in load_features(runner.features_directory()):
        if "manual" in scenario.tags:
            found[scenario.name] = next((c for c in cadences if c in scenario.tags), None)
    return found


def allure_cli() -> str | None:
    """The Allure 3 CLI: a source checkout's own (``npm install`` there), else the current
    directory's, else on PATH."""
    import shutil

    for where in (shipped.SOURCE, Path.cwd()):
        local = where / "node_modules" / ".bin" / "allure"
        if local.exists():
            return str(local)
    return shutil.which("allure")


@app.command()
def report(
    reports: ReportsOption = Path("reports"),
    timeout: Annotated[float, typer.Option(help="seconds the Allure CLI may take")] = 300.0,
    history_limit: Annotated[int, typer.Option(
        min=1, help="runs kept in reports/allure-history.jsonl for the trend"
    )] = allure3.HISTORY_LIMIT,
) -> None:
    """Render reports/allure-results as HTML in reports/allure-report with the Allure 3 CLI,
    with the run's incident categories and the history of earlier runs (the trend), the
    results grouped by runbook section, each synthetic check's latencies over the runs."""
    results = reports.resolve() / publish.ALLURE_RESULTS
    if not any(results.glob("*-result.json")):
        raise _fail(f"no Allure results in {results}; run runbook check or runbook drill first",
                    EXIT_USAGE)
    cli = allure_cli()
    if cli is None:
        raise _fail(
            "the HTML report needs Node.js and the Allure 3 CLI (npm package 'allure'):"
            " install Node.js, then 'npm install allure' (here, or -g); the raw results in"
            f" {results} stay usable", EXIT_USAGE)
    output = reports.resolve() / "allure-report"
    history = reports.resolve() / "allure-history.jsonl"
    try:
        allure3.generate(cli, results, output, history=history, name="LegacyVideo runbook",
                         history_limit=history_limit, timeout=timeout,
                         runs=reports.resolve() / "history.jsonl")
    except RunbookError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    index = output / "index.html"
    out.print(f"HTML report: {index} (history: {history})", markup=False)


def _runbook_inputs(markdown: Path | None, features: Path | None) -> tuple[Path, Path]:
    """The runbook and features to read: the given ones, else the ones shipped in the
    package (the features: ``$RUNBOOK_FEATURES`` when set)."""
    return markdown or shipped.RUNBOOK, features or runner.features_directory()


@app.command(epilog="Quotes: a scenario quotes the durations and percentages in its name,"
                     " steps and Examples rows (not the one right after 'allowing'), the"
                     " double-quoted words opening its description or after 'Runbook defect:',"
                     " the step a @manual scenario names, and 'the <name> queue'. Each must"
                     " still be in the sections it restates (its @runbook: tags) or names by"
                     " title; a '# not quoted: VALUE (why)' comment above a scenario exempts a"
                     " value. Exit codes: 0 no drift; 1 a quote no longer matches the runbook;"
                     " 2 bad input. See docs/architecture.md, 'Quotes from the runbook'.")
def coverage(
    runbook_markdown: Annotated[Path | None, typer.Argument(
        metavar="[RUNBOOK_MARKDOWN]",
        help="the runbook in Markdown (default: the shipped copy of docs/RUNBOOK.md)")] = None,
    features: FeaturesOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
    scaffold: Annotated[Path | None, typer.Option(
        "--scaffold", metavar="DIR",
        help="write a @manual feature skeleton in the runbook's words to DIR for each"
             " uncovered section (existing files are kept)")] = None,
) -> None:
    """Each heading of the runbook: covered, manual or uncovered by the @runbook: tags of
    the features; then the covered share (leaves counted, parts rolled up); then every value
    the features quote from the runbook that it no longer says (drift: exit 1)."""
    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook.reporting import coverage as measured

    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook.reporting import drift, scaffolding

    markdown, directory = _runbook_inputs(runbook_markdown, features)
    try:
        result = measured.measure(markdown, directory)
        quoted = drift.measure(markdown, directory)
        made = (scaffolding.write(result, drift.RunbookText.read(markdown), scaffold)
                if scaffold else None)
    except RunbookError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    if as_json:
        document = result.to_json() | {"quotes": quoted.to_json(),
                                       "exit_code": quoted.exit_code}
        if made is not None:
            document["scaffold"] = [m.to_json() for m in made]
        out.print(json.dumps(document, indent=2), markup=False, emoji=False)
    else:
        shown = (scaffolding.lines(made, scaffold) if made is not None and scaffold
                 else scaffolding.hint(result))
        for line in [*result.lines(), *quoted.lines(), *shown]:
            out.print(line, markup=False, emoji=False)
    if quoted.exit_code:
        raise typer.Exit(quoted.exit_code)


@app.command()
def docs(
    reports: ReportsOption = Path("reports"),
    output: Annotated[Path | None, typer.Option(
        "--output", help="where the page is written (default: the reports directory)")] = None,
    runbook_markdown: Annotated[Path | None, typer.Option(
        "--runbook", help="the runbook in Markdown (default: the shipped copy of docs/RUNBOOK.md)"
    )] = None,
    features: FeaturesOption = None,
    propose_fixes: Annotated[bool, typer.Option(
        "--propose-fixes", help="also write runbook-fixes.patch: the runbook's defects as a"
        " unified diff that git apply accepts, each hunk citing its evidence")] = False,
) -> None:
    """Write the runbook as executed, living-runbook.md and .html: each section with its
    scenarios' last status, when they ran and what they measured, manual records, gaps; and
    the runbook annotated, annotated-runbook.html and .md: its own text with the evidence
    beside each section, command and table row, its defects as redlines."""
    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook import defects

    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook.reporting import annotated

    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook.reporting import coverage as measured

    # imported when this command runs: `runbook --help` and the other commands stay fast
    from runbook.reporting import docs as living

    markdown, feature_dir = _runbook_inputs(runbook_markdown, features)
    where = (output or reports).resolve()
    redact = Redactor(_known_secrets())
    try:
        inputs = living.gather(measured.measure(markdown, feature_dir), reports.resolve())
        text = markdown.read_text(encoding="utf-8")
        written = living.write(inputs, where, redact)
        pages = annotated.write(inputs, text, where, redact)
        patch = defects.propose_patch(text, _patch_name(runbook_markdown)) if propose_fixes \
            else None
    except OSError as exc:
        raise _fail(f"cannot read the runbook {markdown}: {exc.strerror}", EXIT_USAGE) from None
    except RunbookError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    out.print(f"living runbook: {written.markdown} and {written.html} ({written.scenarios}"
              f" executable scenarios, {written.never_run} never run; {written.gaps} gaps)",
              markup=False)
    out.print(f"annotated runbook: {pages.html} and {pages.markdown} ({pages.defects} defects"
              f" marked, {pages.unexecuted} commands not executed)", markup=False)
    if patch is not None:
        patch_path = where / annotated.PATCH_FILE
        patch_path.write_text(redact.known(patch), encoding="utf-8")
        out.print(f"proposed fixes: {patch_path} (git apply {patch_path})", markup=False)
    if not inputs.runs:
        out.print(f"no run recorded yet in {reports}: {living.HOW_TO_RUN}", markup=False)


def _patch_name(runbook_markdown: Path | None) -> str:
    """The runbook's path as the patch names it: docs/RUNBOOK.md for the shipped copy (apply
    it at the project's root), else the path given, relative to here when it is below."""
    if runbook_markdown is None:
        return RUNBOOK_FILE
    given = runbook_markdown.resolve()
    try:
        return given.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return given.as_posix().lstrip("/")


def _known_secrets() -> list[str]:
    """The secrets of the target in the environment and of the sandbox in RUNBOOK_HOME, so
    pages written from recorded results mask them even where a record did not."""
    try:
        sandbox = _secrets_of(_sandbox(command=False).env())
    except RunbookError:
        sandbox = []  # no sandbox was ever started here
    return _secrets_of(dict(os.environ)) + sandbox


def _with_usage_errors_as_json(args: Sequence[str]) -> int:
    """Run the command line ``args`` (which asked for ``--json``): a usage error (an unknown
    option, a bad value) prints its usual lines on stderr and, on stdout, the one ``error``
    object every ``--json`` failure gives (docs/json-output.md), so a scheduler parsing
    stdout is never left with nothing. Returns the exit code."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=list(args), prog_name="runbook", standalone_mode=False)
    except ClickException as exc:
        exc.show()
        print(json.dumps(error(exc.exit_code, exc.format_message())), flush=True)
        return exc.exit_code
    except typer.Abort:
        raise KeyboardInterrupt from None
    return code if isinstance(code, int) else 0


def main() -> None:
    """Entry point of the ``runbook`` console script."""
    try:
        if "--json" in sys.argv[1:]:
            sys.exit(_with_usage_errors_as_json(sys.argv[1:]))
        app()
    except RunbookError as exc:
        err.print(f"runbook: {exc}", markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("runbook: interrupted", markup=False)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
