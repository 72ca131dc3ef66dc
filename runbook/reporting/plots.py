"""Figures over time, as SVG: per drill its RTO, RPO and time to detect across its records
against the runbook's objectives, and per synthetic scenario its latencies across runs.

A reviewer would rather look than read: the living runbook (``runbook docs``) inlines these
SVGs and the Allure report carries them as attachments (the harness attaches them).

The inputs are frozen values built from what the runbook writes: the drill records
(``DrillRecord.to_json`` as ``write_record`` stored it) and the run history
(``history.jsonl``). Drawing is matplotlib's SVG backend, imported only here and only when a
figure is drawn (``runbook --help`` stays fast), on a ``Figure`` of its own (no pyplot
state), with text kept as text and fixed ids, so that the same inputs give the same bytes.

Each series is an SVG group with a known id under the figure's own prefix (``drill_id``,
``latency_id``; several figures share one page): ``<prefix>-rto``, ``-rpo``,
``-time_to_detect``, the objectives ``-rto-objective``/``-rpo-objective``, a latency figure
``-latency-<n>``; one marker per recorded point, and each point's value written beside it
(the latest ``LABELLED`` points): what a test or a reader checks against the records.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook.sections import slugify

#: Points whose value is written beside them (the latest ones; older ones are markers only).
LABELLED = 12

#: The drill figures, in the order their panels are drawn: (key, title).
DRILL_FIGURES: tuple[tuple[str, str], ...] = (
    ("rto", "RTO"),
    ("rpo", "RPO"),
    ("time_to_detect", "Time to detect"),
)

_RC: dict[Any, Any] = {
    "svg.fonttype": "none",  # text stays text (searchable, small)
    "text.parse_math": False,  # a "$" in a name is a dollar, not mathtext
    "font.size": 9,
    "timezone": "UTC",
}
_OK, _MISSED, _OBJECTIVE, _LATENCY = "#1f6feb", "#cf222e", "#57606a", "#8250df"


@dataclass(frozen=True)
class DrillPoint:
    """One drill record's figures (``None``: not measured in that run)."""

    at: datetime
    verdict: str
    rto_s: float | None
    rpo_s: float | None
    time_to_detect_s: float | None

    def value(self, key: str) -> float | None:
        return {"rto": self.rto_s, "rpo": self.rpo_s,
                "time_to_detect": self.time_to_detect_s}[key]


@dataclass(frozen=True)
class DrillHistory:
    """A drill's records, oldest first, and the objectives of its latest record."""

    drill: str
    section: str
    rto_objective_s: float | None
    rpo_objective_s: float | None
    points: tuple[DrillPoint, ...]

    def objective(self, key: str) -> float | None:
        return {"rto": self.rto_objective_s, "rpo": self.rpo_objective_s}.get(key)


@dataclass(frozen=True)
class LatencyPoint:
    at: datetime
    ms: float


@dataclass(frozen=True)
class LatencySeries:
    """One measured latency of a scenario (``"api health"``), oldest first."""

    name: str
    points: tuple[LatencyPoint, ...]


@dataclass(frozen=True)
class LatencyHistory:
    """A synthetic scenario's latencies across the runs of the history."""

    feature: str
    scenario: str
    series: tuple[LatencySeries, ...]


# -- from what the runbook wrote -------------------------------------------------------------


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _moment(value: object) -> datetime:
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def drill_histories(documents: Iterable[Mapping[str, Any]]) -> tuple[DrillHistory, ...]:
    """Drill records (as ``write_record`` wrote them) grouped by drill, by drill name; each
    drill's points oldest first, its objectives those of its latest record. Raises
    ``KeyError``, ``TypeError`` or ``ValueError`` for a document that is not a record."""
    by_drill: dict[str, list[tuple[DrillPoint, Mapping[str, Any]]]] = {}
    for document in documents:
        point = DrillPoint(
            at=_moment(document["started_at"]), verdict=str(document["verdict"]),
            rto_s=_number(document.get("rto_s")), rpo_s=_number(document.get("rpo_s")),
            time_to_detect_s=_number(document.get("time_to_detect_s")))
        by_drill.setdefault(str(document["drill"]), []).append((point, document))
    histories = []
    for drill, found in sorted(by_drill.items()):
        found.sort(key=lambda item: item[0].at)
        latest = found[-1][1]
        objective = latest.get("objective") or {}
        histories.append(DrillHistory(
            drill=drill, section=str(latest.get("runbook_section", "")),
            rto_objective_s=_number(objective.get("rto_s")),
            rpo_objective_s=_number(objective.get("rpo_s")),
            points=tuple(point for point, _ in found)))
    return tuple(histories)


def read_drill_histories(directory: Path) -> tuple[DrillHistory, ...]:
    """``drill_histories`` of the records under ``directory`` (``reports/drills``); a file
    that does not parse as a record (torn by a killed run) is left out."""
    documents = []
    for path in sorted(directory.glob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            drill_histories([document])  # a record, or left out
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
        documents.append(document)
    return drill_histories(documents)


def latency_histories(entries: Iterable[Mapping[str, Any]], *, tag: str = "synthetic"
                      ) -> tuple[LatencyHistory, ...]:
    """Per scenario tagged ``tag`` (history entries: ``history.jsonl``), each latency it
    measured (figures named ``"<what> ms"``) across the runs, oldest first. Entries with no
    time or no latency are left out."""
    found: dict[tuple[str, str], dict[str, list[LatencyPoint]]] = {}
    for entry in entries:
        if tag not in (entry.get("tags") or ()) or not entry.get("finished_at"):
            continue
        figures = entry.get("figures")
        if not isinstance(figures, Mapping):
            continue
        try:
            at = _moment(entry["finished_at"])
        except ValueError:
            continue
        key = (str(entry.get("feature", "")), str(entry.get("name", "")))
        for name, value in figures.items():
            ms = _number(value)
            if str(name).endswith(" ms") and ms is not None:
                found.setdefault(key, {}).setdefault(str(name)[:-3], []).append(
                    LatencyPoint(at, ms))
    return tuple(
        LatencyHistory(feature, scenario, tuple(
            LatencySeries(name, tuple(sorted(points, key=lambda p: p.at)))
            for name, points in sorted(series.items())))
        for (feature, scenario), series in sorted(found.items()))


# -- drawing ---------------------------------------------------------------------------------


def drill_id(history: DrillHistory) -> str:
    """The prefix of the ids in a drill's figure: ``drill-<slug>``."""
    return f"drill-{slugify(history.drill)}"


def latency_id(history: LatencyHistory) -> str:
    """The prefix of the ids in a scenario's latency figure."""
    return f"latency-{slugify(history.feature)}-{slugify(history.scenario)}"


def seconds(value: float) -> str:
    """A figure as the plots write it: ``0.412 s``, ``12.3 s``, ``900 s``."""
    return f"{value:.3g} s" if value < 100 else f"{value:.0f} s"


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # the element alone: a file, or inline in HTML


def _figure(height: float, panels: int) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, height), layout="constrained")
    axes = figure.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    return figure, list(axes)


def _time_axis(axes: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=2, maxticks=6)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def drill_svg(history: DrillHistory) -> str:
    """The drill's RTO, RPO and time to detect, one panel each, over its records; a dashed
    line at the objective where the runbook sets one, a red marker where the figure missed
    it (or the record's verdict was not ``pass``)."""
    import matplotlib

    prefix = drill_id(history)
    # Ids fixed by the figure's own salt: the same inputs give the same SVG, and two figures
    # on one page share no id.
    with matplotlib.rc_context({**_RC, "svg.hashsalt": prefix}):
        figure, panels = _figure(1.0 + 1.6 * len(DRILL_FIGURES), len(DRILL_FIGURES))
        figure.suptitle(f"{history.drill}: RTO, RPO and time to detect over"
                        f" {len(history.points)} record(s)")
        for axes, (key, title) in zip(panels, DRILL_FIGURES, strict=True):
            _drill_panel(axes, history, key, title, f"{prefix}-{key}")
        _time_axis(panels[-1])
        return _svg(figure)


def _drill_panel(axes: Any, history: DrillHistory, key: str, title: str, gid: str) -> None:
    axes.set_ylabel(f"{title} (s)")
    axes.set_title(title, loc="left", fontsize=9)
    axes.grid(True, color="#d0d7de", linewidth=0.5)
    measured = [(p.at, v, p.verdict) for p in history.points
                if (v := p.value(key)) is not None]
    objective = history.objective(key)
    if objective is not None:
        line = axes.axhline(objective, color=_OBJECTIVE, linestyle="--", linewidth=1,
                            label=f"objective {seconds(objective)}")
        line.set_gid(f"{gid}-objective")
        axes.text(0.995, objective, f"objective {seconds(objective)}", color=_OBJECTIVE,
                  ha="right", va="bottom", transform=axes.get_yaxis_transform(),
                  gid=f"{gid}-objective-label")
    if not measured:
        axes.text(0.5, 0.5, "not measured by this drill", ha="center", va="center",
                  transform=axes.transAxes, color=_OBJECTIVE, gid=f"{gid}-none")
        axes.set_yticks([])
        return
    times = [at for at, _, _ in measured]
    values = [value for _, value, _ in measured]
    (line,) = axes.plot(times, values, color=_OK, marker="o", markersize=4, linewidth=1.2)
    line.set_gid(gid)
    missed = [(at, value) for at, value, verdict in measured
              if verdict != "pass" or (objective is not None and value > objective)]
    if missed:
        dots = axes.scatter([at for at, _ in missed], [v for _, v in missed], color=_MISSED,
                            s=22, zorder=3, label="missed or failed")
        dots.set_gid(f"{gid}-missed")
    for index, (at, value, _) in enumerate(measured[-LABELLED:]):
        axes.annotate(seconds(value), (at, value), textcoords="offset points", xytext=(0, 5),
                      ha="center", fontsize=7, gid=f"{gid}-value-{index}")
    top = max([*values, objective or 0.0])
    axes.set_ylim(0, top * 1.25 if top > 0 else 1)


def latency_svg(history: LatencyHistory) -> str:
    """The scenario's latencies (ms), one line per measured figure, over the runs."""
    import matplotlib

    prefix = latency_id(history)
    with matplotlib.rc_context({**_RC, "svg.hashsalt": prefix}):
        figure, (axes,) = _figure(2.8, 1)
        runs = max((len(s.points) for s in history.series), default=0)
        axes.set_title(f"{history.scenario}: latency over {runs} run(s)", loc="left",
                       fontsize=9)
        axes.set_ylabel("ms")
        axes.grid(True, color="#d0d7de", linewidth=0.5)
        top = 0.0
        for index, series in enumerate(history.series):
            times = [p.at for p in series.points]
            values = [p.ms for p in series.points]
            (line,) = axes.plot(times, values, marker="o", markersize=3, linewidth=1.1,
                                label=series.name,
                                color=_LATENCY if len(history.series) == 1 else None)
            line.set_gid(f"{prefix}-latency-{index}")
            for number, point in enumerate(series.points[-LABELLED:]):
                axes.annotate(f"{point.ms:g} ms", (point.at, point.ms), fontsize=7,
                              textcoords="offset points", xytext=(0, 4), ha="center",
                              gid=f"{prefix}-latency-{index}-value-{number}")
            top = max([top, *values])
        if history.series:
            axes.legend(loc="upper left", fontsize=7, frameon=False)
        axes.set_ylim(0, top * 1.3 if top > 0 else 1)
        _time_axis(axes)
        return _svg(figure)


def html_page(title: str, svgs: Iterable[str], caption: str = "") -> str:
    """The figures as one self-contained HTML page (what the report attaches): the title
    and caption escaped, each SVG inline, no script and no external asset."""
    figures = "".join(f"<figure style=\"margin:0 0 1rem\">{svg}</figure>" for svg in svgs)
    words = f"<p>{html.escape(caption)}</p>" if caption else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title></head>\n<body style=\"font-family:"
            f" system-ui, sans-serif\">\n<h1 style=\"font-size:1.1rem\">{html.escape(title)}"
            f"</h1>\n{words}{figures}\n</body>\n</html>\n")
