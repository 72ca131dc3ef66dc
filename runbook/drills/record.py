"""What a drill measured: phases with timestamps, RTO and RPO against the runbook's targets,
the verdict, where the record came from (``provenance``), and the record a reviewer signs
(JSON and Markdown, entered in the drill ledger: ``ledger``)."""

from __future__ import annotations

import contextlib
import getpass
import json
import re
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from runbook.config import Target
from runbook.drills import ledger
from runbook.drills.provenance import Provenance, collect, identify
from runbook.redact import Redactor
from runbook.results import ProbeResult, utcnow
from runbook.wait import wait_until

#: Hears each phase's name as the phase starts (``DrillRun.begin``).
PhaseListener = Callable[[str], None]


@dataclass(frozen=True)
class Phase:
    """One step of a drill: steady state, inject, detect, recover, verify, restore.

    Not a ``results.Record``: a phase is part of the signed drill record, whose JSON
    (``DrillRecord``: its ``ok``, its ``evidence`` as stored) is the format reviewers sign
    and ``verify`` reads back; it holds the records' evidence, already serialised."""

    name: str
    started_at: datetime
    finished_at: datetime
    ok: bool
    detail: str = ""
    evidence: tuple[Mapping[str, Any], ...] = ()

    @property
    def elapsed_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Objective:
    """The runbook's targets for this scenario (``None``: not measured by this drill)."""

    rto_s: float | None = None
    rpo_s: float | None = None


@dataclass(frozen=True)
class Watch:
    """What repeated checks saw while waiting for a change of state (like
    ``wait.WaitOutcome``, a wait's outcome, not a probe or action result: ``ok`` and
    ``elapsed_s`` are what the wait measured, stored as such)."""

    ok: bool
    at: datetime | None          # when the first check of the wanted run gave its verdict
    checks: int
    elapsed_s: float
    observations: tuple[str, ...]


def watch_until(check: Callable[[], ProbeResult], *, want_ok: bool, consecutive: int = 1,
                timeout: float, interval: float = 0.25) -> Watch:
    """Run ``check`` until it gives ``want_ok`` ``consecutive`` times in a row.

    ``at`` is when the first check of that run gave its verdict: for detection, the first
    failing check; for recovery, the first of N consecutive green checks (not when a process
    started). Every distinct problem seen is
    kept, so a timeout says what happened.
    """
    streak_started: datetime | None = None
    streak = 0

    def look() -> ProbeResult:
        nonlocal streak, streak_started
        result = check()
        if result.ok == want_ok:
            if streak == 0:
                streak_started = result.timing.finished_at
            streak += 1
        else:
            streak = 0
        return result

    waited = wait_until(look, timeout=timeout, interval=interval,
                        accept=lambda _: streak >= consecutive,
                        describe=lambda result: "ok" if result.ok else result.problem,
                        errors=())
    return Watch(waited.ok, streak_started if waited.ok else None, waited.attempts,
                 waited.elapsed_s, waited.observations)


def judge(*, completed: bool, phases_ok: Iterable[bool], objective: Objective,
          rto_s: float | None, rpo_s: float | None) -> str:
    """A drill's verdict: ``pass`` when it ran to its end, every phase passed and each
    figure the objective sets was measured and meets it; ``fail`` otherwise; ``aborted``
    when it ended early. The one rule for a record in memory and a record read back."""
    if not completed:
        return "aborted"
    if not all(phases_ok):
        return "fail"
    if objective.rto_s is not None and (rto_s is None or rto_s > objective.rto_s):
        return "fail"
    if objective.rpo_s is not None and (rpo_s is None or rpo_s > objective.rpo_s):
        return "fail"
    return "pass"


def _span(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def _moment(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def _figure(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def verdict_of_json(document: Mapping[str, Any]) -> str:
    """The verdict recomputed from a record as written (``DrillRecord.to_json``): from its
    phases, its fault and recovery times and its RPO, by ``judge``, never from its stored
    ``verdict``. Raises ``KeyError``, ``TypeError`` or ``ValueError`` when it is not one."""
    objective = document["objective"]
    phases = document["phases"]
    if not isinstance(objective, Mapping) or not isinstance(phases, list):
        raise TypeError("objective or phases malformed")
    completed = document["completed"]
    oks = [phase["ok"] for phase in phases]
    if not isinstance(completed, bool) or not all(isinstance(ok, bool) for ok in oks):
        raise TypeError("completed and each phase's ok must be true or false")
    return judge(completed=completed, phases_ok=oks,
                 objective=Objective(_figure(objective["rto_s"]), _figure(objective["rpo_s"])),
                 rto_s=_span(_moment(document["fault_at"]), _moment(document["recovered_at"])),
                 rpo_s=_figure(document["rpo_s"]))


@dataclass(frozen=True)
class DrillRecord:
    """The sign-off record of one drill run."""

    drill: str
    runbook_section: str
    target: str
    environment: str
    operator: str
    host: str
    started_at: datetime
    finished_at: datetime
    objective: Objective
    phases: tuple[Phase, ...]
    fault_at: datetime | None = None
    detected_at: datetime | None = None
    recovered_at: datetime | None = None
    rpo_s: float | None = None
    lost_canaries: int | None = None
    notes: tuple[str, ...] = ()
    evidence: Mapping[str, Any] = field(default_factory=dict)
    #: False when the drill ended before its last phase (interrupted, timed out, refused).
    completed: bool = True
    #: Which code, runbook and target the record speaks for (``runbook.drills.provenance``).
    provenance: Provenance | None = None

    @property
    def rto_s(self) -> float | None:
        """Fault to the first of N consecutive green end-to-end checks."""
        return _span(self.fault_at, self.recovered_at)

    @property
    def time_to_detect_s(self) -> float | None:
        return _span(self.fault_at, self.detected_at)

    @property
    def verdict(self) -> str:
        """``pass`` when the drill ran to its end, every phase passed and the measured
        figures meet the objective; ``aborted`` when it ended early (``judge``)."""
        return judge(completed=self.completed, phases_ok=(p.ok for p in self.phases),
                     objective=self.objective, rto_s=self.rto_s, rpo_s=self.rpo_s)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document.update(rto_s=self.rto_s, time_to_detect_s=self.time_to_detect_s,
                        verdict=self.verdict)
        return json.loads(json.dumps(document, default=str))


class DrillRun:
    """Collects a drill's phases as they happen; ``finish`` freezes them into a record."""

    def __init__(self, drill: str, runbook_section: str, target: str, environment: str,
                 objective: Objective | None = None, on_phase: PhaseListener | None = None
                 ) -> None:
        self.drill = drill
        self.runbook_section = runbook_section
        self.target = target
        self.environment = environment
        self.objective = objective or Objective()
        self.started_at = utcnow()
        self.phases: list[Phase] = []
        self.fault_at: datetime | None = None
        self.detected_at: datetime | None = None
        self.recovered_at: datetime | None = None
        self.rpo_s: float | None = None
        self.lost_canaries: int | None = None
        self.notes: list[str] = []
        self.evidence: dict[str, Any] = {}
        self.completed = False
        self.on_phase = on_phase
        #: The phase under way (``begin``'s last), "" before the first: what an interruption
        #: cut short.
        self.current = ""

    def begin(self, name: str) -> datetime:
        """Phase ``name`` starts: announce it to ``on_phase`` and return its start time. A
        listener that fails is noted, never stops the drill (nor its restore); an
        interruption raised in it goes through."""
        self.current = name
        if self.on_phase is not None:
            try:
                self.on_phase(name)
            except Exception as exc:
                self.notes.append(f"phase listener failed at {name!r}: {type(exc).__name__}:"
                                  f" {exc}")
        return utcnow()

    def ended_early(self, exc: BaseException) -> None:
        """Note what cut the drill short and in which phase."""
        where = f" in phase {self.current!r}" if self.current else ""
        self.notes.append(f"ended early{where} by {type(exc).__name__}: {exc}")

    def held(self, signals: Sequence[str]) -> None:
        """Note the interruptions held while the drill was ending or restoring
        (``guard.Interruptions``)."""
        if signals:
            self.notes.append(f"{', '.join(dict.fromkeys(signals))} arrived while the drill"
                              " was ending or restoring: held until the fault was reverted"
                              " and this record written")

    def phase(self, name: str, started_at: datetime, ok: bool, detail: str = "",
              evidence: Sequence[Mapping[str, Any]] = ()) -> Phase:
        recorded = Phase(name, started_at, utcnow(), ok, detail, tuple(evidence))
        self.phases.append(recorded)
        return recorded

    def finish(self) -> DrillRecord:
        return DrillRecord(
            drill=self.drill, runbook_section=self.runbook_section, target=self.target,
            environment=self.environment, operator=_operator(), host=socket.gethostname(),
            started_at=self.started_at, finished_at=utcnow(), objective=self.objective,
            phases=tuple(self.phases), fault_at=self.fault_at, detected_at=self.detected_at,
            recovered_at=self.recovered_at, rpo_s=self.rpo_s,
            lost_canaries=self.lost_canaries, notes=tuple(self.notes),
            evidence=dict(self.evidence), completed=self.completed, provenance=collect(),
        )


def _operator() -> str:
    import os

    explicit = os.environ.get("RUNBOOK_OPERATOR")
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def render_markdown(record: DrillRecord) -> str:
    """The record as a reviewer reads it."""
    lines = [
        f"# Drill: {record.drill}",
        "",
        f"- Runbook section: {record.runbook_section}",
        f"- Target: {record.target} ({record.environment})",
        f"- Operator: {record.operator} on {record.host}",
        f"- Started: {record.started_at.isoformat()}  Finished: {record.finished_at.isoformat()}",
        f"- **Verdict: {record.verdict.upper()}**",
        "",
        "| measure | measured | target |",
        "|---|---|---|",
        f"| time to detect | {_seconds(record.time_to_detect_s)} | |",
        f"| RTO | {_seconds(record.rto_s)} | {_seconds(record.objective.rto_s)} |",
        f"| RPO | {_seconds(record.rpo_s)} | {_seconds(record.objective.rpo_s)} |",
    ]
    if record.lost_canaries is not None:
        lines.append(f"| canaries lost | {record.lost_canaries} | |")
    lines += ["", "## Phases", "", "| phase | started | seconds | ok | detail |",
              "|---|---|---|---|---|"]
    for phase in record.phases:
        detail = phase.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {phase.name} | {phase.started_at.isoformat()} |"
                     f" {phase.elapsed_s:.3f} | {'yes' if phase.ok else 'NO'} | {detail} |")
    if record.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in record.notes]
    if record.provenance is not None:
        lines += ["", "## Provenance", ""] + [f"- {line}" for line in
                                              record.provenance.lines()]
    lines += ["", "Signed off by: ____________________  Date: __________", "",
              "(Sign in the drill ledger: runbook drill sign <this record's .json> --by NAME"
              " --evidence LINK; runbook drill verify checks records, ledger and signatures.)",
              ""]
    return "\n".join(lines)


def _stem(record: DrillRecord, directory: Path) -> str:
    """``<UTC time>-<drill>``, with ``-2``, ``-3`` ... when that record exists already: a
    record in the ledger is never overwritten."""
    stem = f"{record.started_at.strftime('%Y%m%dT%H%M%SZ')}-{record.drill}"
    taken = 1
    while (directory / f"{stem}{f'-{taken}' if taken > 1 else ''}.json").exists():
        taken += 1
    return f"{stem}-{taken}" if taken > 1 else stem


def write_record(record: DrillRecord, directory: Path, redact: Redactor, *,
                 target: Target | None = None) -> tuple[Path, Path]:
    """Write ``<UTC time>-<drill>.json`` and ``.md`` under ``directory``, redacted, and
    append their ``recorded`` entry to ``directory/ledger.jsonl``; the drill's running
    progress file there, if any, becomes ``<UTC time>-<drill>.progress``.

    The record gets its provenance here when it has none yet, and ``target``'s identity
    (name, environment, endpoint fingerprint) when given."""
    directory.mkdir(parents=True, exist_ok=True)
    provenance = record.provenance or collect()
    if target is not None and provenance.target is None:
        provenance = replace(provenance, target=identify(target))
    record = replace(record, provenance=provenance)
    stem = _stem(record, directory)
    json_path = directory / f"{stem}.json"
    md_path = directory / f"{stem}.md"
    # Redacted value by value: redacting the dumped text could break its JSON.
    document = cast(dict[str, Any], redact.data(record.to_json()))
    written = json.dumps(document, indent=2).encode("utf-8")
    markdown = redact(render_markdown(record)).encode("utf-8")
    json_path.write_bytes(written)
    md_path.write_bytes(markdown)
    running = ProgressFile(directory, record.drill)
    if running.path.exists():
        with contextlib.suppress(OSError):  # the record is what matters, and it is written
            running.line(f"recorded: {record.verdict}")
            running.path.replace(directory / f"{stem}.progress")
    identity = provenance.target
    ledger.append(directory / ledger.LEDGER_FILE, ledger.recorded_body(
        record=json_path.name, record_sha256=ledger.sha256_hex(written), markdown=md_path.name,
        markdown_sha256=ledger.sha256_hex(markdown), drill=str(document["drill"]),
        verdict=str(document["verdict"]), environment=str(document["environment"]),
        fingerprint=identity.fingerprint if identity is not None else None))
    return json_path, md_path


class ProgressFile:
    """Where a running drill is, for operators (``tail -f``) and for whoever must act in a
    given phase: ``<directory>/<drill>.progress``, one ``<UTC ISO time> <phase>`` line as
    each phase starts, flushed at once. Started afresh by the drill's first phase; once the
    record is written (``write_record``) it is kept next to it as ``<stem>.progress`` and
    ends with ``recorded: <verdict>``. A drill that died keeps it under the running name,
    its last line the phase it died in. No secret: phase names and times only."""

    def __init__(self, directory: Path, drill: str) -> None:
        self.path = directory / f"{drill}.progress"
        self._fresh = True

    def __call__(self, phase: str) -> None:
        if self._fresh:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("", encoding="utf-8")
            self._fresh = False
        self.line(phase)

    def line(self, text: str) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"{utcnow().isoformat()} {text}\n")


def read_progress(path: Path) -> list[tuple[datetime, str]]:
    """The ``(time, phase)`` lines of a progress file, oldest first (``[]`` when absent; a
    line being written is left out)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = []
    for line in text.splitlines(keepends=True):
        at, _, phase = line.rstrip("\n").partition(" ")
        if line.endswith("\n") and phase:
            lines.append((datetime.fromisoformat(at), phase))
    return lines


#: A progress file kept next to its record: ``<UTC time>-<drill>[-n].progress``.
_KEPT = re.compile(r"^\d{8}T\d{6}Z-(?P<drill>.+?)(?:-\d+)?$")


def follow_progress(directory: Path, since: datetime, show: Callable[[str, str, datetime], None],
                    stop: threading.Event, *, interval_s: float = 0.25) -> None:
    """Follow the drills' progress files under ``directory`` (running or kept next to their
    record) and call ``show(drill, phase, at)`` once for every phase started at or after
    ``since``, in order, until ``stop`` is set; a last look then shows what came at the
    end. ``runbook drill`` runs it beside the pytest run to show the phases live."""
    seen: set[tuple[datetime, str]] = set()
    cutoff = since.timestamp()
    # not a poll: a follower paced by the interval until the run it follows has ended
    while True:
        ended = stop.wait(interval_s)
        fresh: list[tuple[datetime, str, str]] = []
        for path in directory.glob("*.progress"):
            try:
                if path.stat().st_mtime < cutoff:
                    continue
            except OSError:  # renamed as its record was written: seen under its new name
                continue
            kept = _KEPT.match(path.stem)
            drill = kept["drill"] if kept else path.stem
            fresh += [(at, phase, drill) for at, phase in read_progress(path)
                      if at >= since and (at, phase) not in seen]
        for at, phase, drill in sorted(fresh):
            if (at, phase) not in seen:
                seen.add((at, phase))
                show(drill, phase, at)
        if ended:
            return
