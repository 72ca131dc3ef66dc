"""The run's outcome per scenario, the exit code it implies, and the terminal summary."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

#: Exit codes of ``runbook`` (see the design's command-line contract).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_WARNINGS = 4

#: Alert tiers that do not page: their failures alone give ``EXIT_WARNINGS``.
NON_PAGING_TIERS = frozenset({"warning", "info"})

#: The maintenance cadences and how long a pass (or a person's record) stays valid.
CADENCES: dict[str, timedelta] = {
    "daily": timedelta(days=1),
    "weekly": timedelta(days=7),
    "monthly": timedelta(days=31),
    "quarterly": timedelta(days=92),
}


@dataclass(frozen=True)
class ScenarioOutcome:
    """One scenario's result as the summary and the exit code see it."""

    nodeid: str
    name: str
    feature: str
    sections: tuple[str, ...]
    tier: str | None
    outcome: str  # passed | flaky | failed | skipped | error | expired
    duration_s: float
    message: str = ""
    #: How many times it ran: more than one when retries were allowed and it failed first.
    attempts: int = 1
    #: The scenario's tags and its feature's (``synthetic``, ``critical``, ``runbook:...``).
    tags: tuple[str, ...] = ()
    #: ``daily`` ... ``quarterly`` for maintenance checks, else ``None``.
    cadence: str | None = None
    #: What it measured: probe latencies (``"api health ms"``), drill RTO/RPO in seconds.
    figures: Mapping[str, float] = field(default_factory=dict)
    finished_at: str = ""
    #: When it last passed, this run or an earlier one (from the history), ISO UTC.
    last_passed_at: str | None = None
    #: Its cadence has gone by since it last passed: the check is overdue.
    expired: bool = False
    #: The runbook sections its failure's next steps name, first first (its diagnosis).
    named: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.outcome in {"failed", "error"}


#: Outcomes that mean the scenario was really checked (a person's record counts for a
#: @manual one); skipped and expired ones were not.
CHECKED = frozenset({"passed", "flaky", "failed", "error"})


def checked(outcomes: Iterable[ScenarioOutcome]) -> bool:
    """Whether at least one scenario was really checked (not skipped, not merely due)."""
    return any(o.outcome in CHECKED for o in outcomes)


def unchecked_critical(outcomes: Iterable[ScenarioOutcome]) -> list[ScenarioOutcome]:
    """The @critical scenarios that were skipped: a paging check nobody ran."""
    return [o for o in outcomes if o.outcome == "skipped" and o.tier == "critical"]


def exit_code(outcomes: Iterable[ScenarioOutcome], *, environment: str = "sandbox") -> int:
    """0 all passed; 4 only warning- or info-tier scenarios failed, or (off the sandbox) a
    @critical scenario was skipped; 1 otherwise; 2 when nothing was checked at all (every
    selected scenario skipped or only due): a run that checked nothing is not green."""
    outcomes = list(outcomes)
    if not checked(outcomes):
        return EXIT_USAGE
    failed = [o for o in outcomes if o.failed]
    if failed:
        if all(o.tier in NON_PAGING_TIERS for o in failed):
            return EXIT_WARNINGS
        return EXIT_FAILED
    if environment != "sandbox" and unchecked_critical(outcomes):
        return EXIT_WARNINGS
    return EXIT_OK


_MARK = {"passed": "ok  ", "flaky": "FLKY", "failed": "FAIL", "error": "ERR ",
         "skipped": "skip", "expired": "EXPD"}


def render(outcomes: Sequence[ScenarioOutcome], *, environment: str = "sandbox") -> list[str]:
    """Lines grouped by runbook section, each scenario with its verdict and duration (and
    the reason of every failure, skip and expiry); then the counts, and what was not
    checked."""
    by_section: dict[str, list[ScenarioOutcome]] = {}
    for outcome in outcomes:
        key = outcome.sections[0] if outcome.sections else "(no runbook section)"
        by_section.setdefault(key, []).append(outcome)
    lines: list[str] = []
    for section in sorted(by_section):
        lines.append(f"runbook: {section}")
        for o in by_section[section]:
            tier = f" [{o.tier}]" if o.tier else ""
            mark = _MARK.get(o.outcome, o.outcome)
            lines.append(f"  {mark} {o.duration_s:6.2f}s  {o.name}{tier}")
            if (o.failed or o.outcome in ("flaky", "expired", "skipped")) and o.message:
                prefix = f"passed on attempt {o.attempts}; first: " if o.outcome == "flaky" else ""
                lines.append(f"         {prefix}{o.message}")
            if o.expired and o.outcome != "expired":
                since = f"last passed {o.last_passed_at}" if o.last_passed_at else "never passed"
                lines.append(f"         EXPIRED: {since}; its cadence is {o.cadence}")
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    overdue = sum(1 for o in outcomes if o.expired and o.outcome != "expired")
    lines.append(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no scenarios ran")
    if overdue:
        lines.append(f"{overdue} overdue for their cadence (expired): see above")
    not_checked = counts.get("skipped", 0)
    if outcomes and not checked(outcomes):
        lines.append("nothing was checked: every selected scenario was skipped or is only due"
                     " (exit 2); see the reasons above")
    elif not_checked:
        lines.append(f"{not_checked} not checked (skipped): a skip is not a pass; see the"
                     " reasons above")
    critical = unchecked_critical(outcomes)
    if critical and checked(outcomes) and environment != "sandbox":
        lines.append(f"{len(critical)} critical check(s) not run on this {environment} target"
                     " (exit 4 unless something failed): "
                     + "; ".join(f"{o.name}: {o.message}" for o in critical))
    return lines


def staleness(outcomes: Sequence[ScenarioOutcome], history: Path,
              now: datetime | None = None) -> list[ScenarioOutcome]:
    """The outcomes with ``last_passed_at`` from this run or the history, and ``expired``
    set where a cadence scenario's last pass is older than its cadence."""
    now = now or datetime.now(UTC)
    last_pass = last_passes(history)
    updated: list[ScenarioOutcome] = []
    for o in outcomes:
        passed_now = o.outcome in ("passed", "flaky")
        last = o.finished_at if passed_now else last_pass.get(o.nodeid)
        expired = o.outcome == "expired"
        if o.cadence in CADENCES and not passed_now and o.outcome != "skipped":
            expired = expired or last is None or (
                now - datetime.fromisoformat(last) > CADENCES[o.cadence])
        updated.append(replace(o, last_passed_at=last, expired=expired))
    return updated


def last_passes(history: Path) -> dict[str, str]:
    """nodeid -> when it last passed, from ``history.jsonl`` (a torn last line is skipped):
    from its index when the index is of the history as it is now (``HistoryIndex``), else
    from every entry."""
    index = HistoryIndex.of(history)
    if index is not None:
        return dict(index.last_passes)
    return _Tally().add(read_history(history)).last_passes


def read_history(history: Path) -> Iterable[dict[str, Any]]:
    """Every entry of ``history.jsonl``, oldest first; lines that do not parse are skipped."""
    try:
        handle = history.open(encoding="utf-8")
    except OSError:
        return
    with handle:
        yield from _parsed(handle)


def _parsed(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            yield entry


#: history.jsonl is trimmed to about this many entries (the oldest go first).
HISTORY_LIMIT = 20_000


#: What the index keeps of a scenario's latest entry on a target (``parallelism``).
LATEST_FIELDS = ("name", "tags", "duration_s")


@dataclass
class _Tally:
    """What the index holds, added up entry by entry in the history's order."""

    entries: int = 0
    last_passes: dict[str, str] = field(default_factory=dict)
    latest: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def add(self, entries: Iterable[Mapping[str, Any]]) -> _Tally:
        for entry in entries:
            nodeid = str(entry.get("nodeid", ""))
            finished = str(entry.get("finished_at") or "")
            if (entry.get("outcome") in ("passed", "flaky")
                    and finished > self.last_passes.get(nodeid, "")):
                self.last_passes[nodeid] = finished
            if "nodeid" in entry and "target" in entry:
                self.latest.setdefault(str(entry["target"]), {})[nodeid] = {
                    name: entry[name] for name in LATEST_FIELDS if name in entry}
        return self


@dataclass(frozen=True)
class HistoryIndex:
    """What every run reads of ``history.jsonl`` (each scenario's last pass; its latest
    entry on each target, for ``parallelism``; how many entries it holds), kept beside it
    in ``history.index.json`` so that a run reads a few kilobytes instead of parsing the
    whole history: at its limit, 20,000 entries and about 15 MB, that took about 0.15 s of
    CPU a run (2.4 ms with the index). The index is of the history whose size and
    modification time (nanoseconds) it records; a history written, trimmed, edited or
    replaced since by anything else no longer matches them, and is read in full again."""

    size: int
    mtime_ns: int
    entries: int
    last_passes: Mapping[str, str]
    #: target -> nodeid -> ``LATEST_FIELDS`` of the scenario's latest entry there.
    latest: Mapping[str, Mapping[str, Mapping[str, Any]]]

    @staticmethod
    def path(history: Path) -> Path:
        return history.with_suffix(".index.json")

    @classmethod
    def of(cls, history: Path) -> HistoryIndex | None:
        """The index of ``history`` as it is now; ``None`` when there is none, it does not
        parse, or it is of another state of the history."""
        try:
            stat = history.stat()
            document = json.loads(cls.path(history).read_text(encoding="utf-8"))
            index = cls(int(document["size"]), int(document["mtime_ns"]),
                        int(document["entries"]),
                        {str(k): str(v) for k, v in dict(document["last_passes"]).items()},
                        {str(t): {str(n): dict(e) for n, e in dict(by_node).items()}
                         for t, by_node in dict(document["latest"]).items()})
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if (index.size, index.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            return None
        return index

    def tally(self) -> _Tally:
        return _Tally(self.entries, dict(self.last_passes),
                      {t: {n: dict(e) for n, e in by_node.items()}
                       for t, by_node in self.latest.items()})

    @classmethod
    def write(cls, history: Path, tally: _Tally) -> None:
        """Record ``tally`` as the index of ``history`` as it is now."""
        stat = history.stat()
        document = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                    "entries": tally.entries, "last_passes": tally.last_passes,
                    "latest": tally.latest}
        path = cls.path(history)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(document), encoding="utf-8")
        tmp.replace(path)


def _tally_of(lines: list[str]) -> _Tally:
    return _Tally(len(lines)).add(_parsed(lines))


@contextlib.contextmanager
def _writing(history: Path) -> Iterator[bool]:
    """One writer of the history at a time: a lock on ``history.lock`` beside it (the history
    and its index are replaced when trimmed, so neither can hold it; opened for writing, as
    NFS's locks need). Whether the lock is held: a file system that takes no lock gives
    none, and the writer goes on without one, as writers did before the index."""
    fd = os.open(history.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)


def append_history(history: Path, outcomes: Sequence[ScenarioOutcome], *, run_id: str,
                   target: str, environment: str) -> None:
    """Append one line per scenario to ``history.jsonl``: staleness, the living
    documentation and the trend read it. Trimmed to ``HISTORY_LIMIT`` entries. Its index
    (``HistoryIndex``) is brought up to date with it; the whole history is read only where
    the index was not of it, and when trimming."""
    history.parent.mkdir(parents=True, exist_ok=True)
    finished = datetime.now(UTC).isoformat()
    documents = [{"run_id": run_id, "finished_at": o.finished_at or finished,
                  "target": target, "environment": environment, **_outcome_json(o)}
                 for o in outcomes]
    with _writing(history) as alone:
        index = HistoryIndex.of(history) if alone else None
        with history.open("a", encoding="utf-8") as handle:
            handle.write("".join(f"{json.dumps(d)}\n" for d in documents))
        if not alone:
            # Another writer may append between this one's lines and its index: no index,
            # and every run reads the whole history, as before there was one.
            HistoryIndex.path(history).unlink(missing_ok=True)
            _trim(history, len(history.read_text(encoding="utf-8").splitlines()))
            return
        if index is None:
            tally = _tally_of(history.read_text(encoding="utf-8").splitlines(keepends=True))
        else:
            tally = index.tally().add(documents)
            tally.entries += len(documents)
        kept = _trim(history, tally.entries)
        if kept is not None:
            tally = _tally_of(kept)
        HistoryIndex.write(history, tally)


def _trim(history: Path, entries: int) -> list[str] | None:
    """Trim ``history`` to its last ``HISTORY_LIMIT`` entries when it holds more than a
    quarter over (``entries``); the lines kept, ``None`` when it was not trimmed."""
    if entries <= HISTORY_LIMIT * 1.25:
        return None
    kept = history.read_text(encoding="utf-8").splitlines(keepends=True)[-HISTORY_LIMIT:]
    tmp = history.with_suffix(".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    tmp.replace(history)
    return kept


def _outcome_json(outcome: ScenarioOutcome) -> dict[str, Any]:
    document = asdict(outcome)
    document["figures"] = dict(outcome.figures)
    return document


def write_summary(path: Path, outcomes: Sequence[ScenarioOutcome], code: int, target: str,
                  run_id: str = "", *, environment: str = "", started_at: str = "") -> None:
    """Write ``summary.json``: what ran, how it ended, and the exit code it implies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "run_id": run_id,
        "target": target,
        "environment": environment,
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(),
        "exit_code": code,
        "expired": sum(1 for o in outcomes if o.expired),
        "scenarios": [_outcome_json(o) for o in outcomes],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2), encoding="utf-8")
    tmp.replace(path)


def json_lines(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A run's ``summary.json`` as ``runbook check --json`` prints it: one object per
    scenario (``"type": "scenario"``, its fields as in the summary), then the run's own
    (``"type": "summary"``: target, times, exit code, the number of scenarios and the count
    of each outcome)."""
    scenarios = [dict(s) for s in document.get("scenarios", []) if isinstance(s, Mapping)]
    counts: dict[str, int] = {}
    for scenario in scenarios:
        outcome = str(scenario.get("outcome"))
        counts[outcome] = counts.get(outcome, 0) + 1
    run = {k: v for k, v in document.items() if k != "scenarios"}
    return [*({"type": "scenario", **s} for s in scenarios),
            {"type": "summary", **run, "scenarios": len(scenarios), "counts": counts}]
