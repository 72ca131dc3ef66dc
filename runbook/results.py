"""Frozen records of what a probe or an action observed, with timestamps: the one record type.

Every probe and action result, and every part of one kept as evidence, is a frozen
dataclass deriving from a base here, and none writes its own ``ok``, ``elapsed_s`` or
``evidence()`` (``tests/test_records.py`` holds them to it):

* ``Record``: ``evidence()``, every field as JSON-ready data (see ``Record.evidence``);
* ``Result``: a ``Record`` with a verdict: ``ok`` is "no ``problems``", and ``problems`` (what
  went wrong, one line each) is the one hook a subclass fills, as a field or a property;
* ``TimedResult``: a ``Result`` with a ``timing``, hence ``elapsed_s``.

Recovery figures (RTO, RPO, time to detect) are derived from these records, never from
clocks read elsewhere.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import PurePath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, cast

#: Characters of one text kept as evidence: the last ones (a command's output ends with
#: what went wrong).
EVIDENCE_TEXT_LIMIT = 4000
#: Items of a list of plain values (row keys, names) kept as evidence: the first ones. A
#: list of records (activities, canaries) is kept whole.
EVIDENCE_ITEMS_LIMIT = 50


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Stopwatch:
    """Started on creation: the wall-clock start plus a monotonic duration, for ``Timing``."""

    def __init__(self) -> None:
        self.started_at = utcnow()
        self._started = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self._started

    def timing(self) -> Timing:
        return Timing(self.started_at, utcnow(), self.seconds)


@dataclass(frozen=True)
class Timing:
    """A start and an end, wall-clock UTC, plus the monotonic duration between them."""

    started_at: datetime
    finished_at: datetime
    elapsed_s: float

    @property
    def elapsed_ms(self) -> float:
        return self.elapsed_s * 1000.0


class Record:
    """A frozen dataclass whose evidence is its own fields.

    ``evidence()`` holds every field shown in ``repr`` (a field declared
    ``field(repr=False)`` holds a secret, data or bulk and is left out of both), then the
    computed properties named in ``evidence_properties``, the one hook a subclass has.
    Values become JSON-ready data: records their ``evidence()``, a ``Timing`` its
    ``started_at``, ``finished_at`` and ``elapsed_s`` (the field ``timing`` spread into the
    record's own keys), datetimes ISO 8601, tuples, lists and sets lists, mappings dicts,
    paths strings, other dataclasses their fields, texts their last ``EVIDENCE_TEXT_LIMIT``
    characters, lists of plain values their first ``EVIDENCE_ITEMS_LIMIT`` items.
    """

    __slots__ = ()

    #: Computed properties (or zero-argument methods) added to ``evidence()``, in order.
    evidence_properties: ClassVar[tuple[str, ...]] = ()
    #: The verdict's members, added last (a ``Result``'s ``ok`` and ``problems``).
    _verdict: ClassVar[tuple[str, ...]] = ()

    def evidence(self) -> dict[str, Any]:
        """A JSON-ready summary of this record, for reports and drill records."""
        found: dict[str, Any] = {}
        for item in dataclasses.fields(cast(Any, self)):
            if not item.repr:
                continue
            value = getattr(self, item.name)
            if item.name == "timing" and isinstance(value, Timing):
                found.update(jsonable(value))
            else:
                found[item.name] = jsonable(value)
        for name in (*self.evidence_properties, *self._verdict):
            value = getattr(self, name)
            found[name] = jsonable(value() if callable(value) else value)
        return found


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data, by the rules of ``Record.evidence``."""
    if isinstance(value, Record):
        return value.evidence()
    if isinstance(value, Timing):
        return {"started_at": value.started_at.isoformat(),
                "finished_at": value.finished_at.isoformat(),
                "elapsed_s": round(value.elapsed_s, 3)}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str):
        return value[-EVIDENCE_TEXT_LIMIT:]
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        value = sorted(value, key=str)
    if isinstance(value, tuple | list):
        if not any(isinstance(v, Record) for v in value):
            value = value[:EVIDENCE_ITEMS_LIMIT]
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.repr}
    return value


class Result(Record):
    """A record with a verdict: ``ok`` when it has no ``problems``.

    ``problems`` (what went wrong, one line each) is the hook: a subclass holds it as a
    field, or computes it as a property where its verdict is its own (a restored copy that
    differs, a service not healthy again in time). ``evidence()`` adds ``ok`` and
    ``problems``.
    """

    __slots__ = ()
    _verdict = ("ok", "problems")

    if TYPE_CHECKING:  # every subclass gives it, as a field or a property (checked below)
        @property
        def problems(self) -> tuple[str, ...]: ...

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__ != __name__ and not any(
                "problems" in vars(k) or "problems" in vars(k).get("__annotations__", {})
                   for k in cls.__mro__):
            raise TypeError(f"{cls.__name__} is a Result without problems: hold them as a"
                            " field or compute them as a property")

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


class TimedResult(Result):
    """A result that took time: its ``timing`` (a field of the subclass) and ``elapsed_s``."""

    __slots__ = ()

    if TYPE_CHECKING:
        timing: Timing

    @property
    def elapsed_s(self) -> float:
        """Seconds from start to end, monotonic."""
        return self.timing.elapsed_s


@dataclass(frozen=True)
class ProbeResult(TimedResult):
    """What one read-only check of one component saw.

    ``problem`` says in one line what was wrong ("" when nothing was: then ``ok``);
    ``observed`` holds the figures and facts worth keeping as evidence (never secrets).
    """

    component: str
    check: str
    target: str
    timing: Timing
    problem: str = ""
    expected: str = ""
    observed: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: The key of the runbook advice that fits a failure (``runbook.sections.NEXT_STEPS``).
    advice: str = ""

    @property
    def problems(self) -> tuple[str, ...]:
        return (self.problem,) if self.problem else ()

    def __repr__(self) -> str:
        verdict = "ok" if self.ok else f"FAILED: {self.problem}"
        return f"<{self.component} {self.check}: {verdict} in {self.timing.elapsed_ms:.0f} ms>"


@dataclass(frozen=True)
class Activity(TimedResult):
    """One state-changing (or platform) call: what ran, when, how long, how it ended
    (``error``: why it failed, "" when it succeeded).

    ``command`` and ``output`` are redacted before they are stored here.
    """

    name: str
    #: The call that really ran: a subprocess's argv, or ``("library", "<module.function>",
    #: args...)`` for a call into a library (never a command that did not run).
    command: tuple[str, ...]
    timing: Timing
    output: str = ""
    error: str = ""
    #: The runbook's own command for this step, as written there (what an operator on the
    #: real platform would type), when it differs from what ran; "" when none.
    runbook_says: str = ""

    @property
    def problems(self) -> tuple[str, ...]:
        return (self.error,) if self.error else ()


def failure(name: str, error: str) -> str:
    """``error``, or a line saying ``name`` failed when the call gave no reason: an
    ``Activity`` that failed always says why."""
    return error or f"{name} failed (no reason given)"
