"""The figures over time, from what the runbook itself writes: drill records by the record
writer (``write_record``), the run history by ``append_history``. The SVG is parsed and the
points, values and objectives the plot was given are checked in it; then the living runbook
(``runbook docs``) shows the same figures, inline in its HTML."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

from runbook.drills.record import DrillRun, Objective, write_record
from runbook.redact import Redactor
from runbook.reporting import docs, plots
from runbook.reporting.coverage import measure
from runbook.reporting.summary import ScenarioOutcome, append_history
from runbook.sections import RUNBOOK_FILE
from tests.test_cli import CLEAN

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"
SECTION = "Incident Response > Service Down"
#: Three runs of one drill: RTO (s), RPO (s), time to detect (s); the second misses the RTO.
RUNS = ((41.0, 0.0, 2.5), (1200.0, 0.0, 3.25), (60.5, 0.0, 1.75))


def record_drills(directory: Path, runs: tuple[tuple[float, float | None, float], ...] = RUNS,
                  *, drill: str = "service-down", objective: Objective | None = None) -> None:
    """Drill records of ``drill`` written by the record writer, one per run."""
    for rto, rpo, detect in runs:
        run = DrillRun(drill, SECTION, "sandbox", "sandbox",
                       objective or Objective(rto_s=900, rpo_s=0))
        run.fault_at = run.started_at
        run.detected_at = run.started_at + timedelta(seconds=detect)
        run.recovered_at = run.started_at + timedelta(seconds=rto)
        run.rpo_s = rpo
        run.phase("recover", run.started_at, True)
        run.completed = True
        write_record(run.finish(), directory, Redactor())


def group(svg: ET.Element, gid: str) -> ET.Element:
    found = svg.find(f".//{SVG}g[@id='{gid}']")
    assert found is not None, f"no group {gid!r} in the SVG"
    return found


def vertices(line: ET.Element) -> list[tuple[float, float]]:
    """The (x, y) of a plotted line's path (its first ``<path>``)."""
    path = line.find(f"{SVG}path")
    assert path is not None
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path.attrib["d"])]
    return list(zip(numbers[::2], numbers[1::2], strict=True))


def texts(svg: ET.Element, prefix: str) -> list[str]:
    return [t.text or "" for g in svg.iter(f"{SVG}g") if g.attrib.get("id", "").startswith(
        prefix) for t in g.iter(f"{SVG}text")]


def test_a_drills_plot_holds_each_records_figures_and_the_objective(tmp_path: Path) -> None:
    record_drills(tmp_path / "drills")
    (history,) = plots.read_drill_histories(tmp_path / "drills")
    assert [p.rto_s for p in history.points] == [41.0, 1200.0, 60.5]
    svg_text = plots.drill_svg(history)
    svg = ET.fromstring(svg_text)
    prefix = "drill-service-down"
    assert "service-down: RTO, RPO and time to detect over 3 record(s)" in "".join(
        svg.itertext())
    for key, figures in (("rto", [r[0] for r in RUNS]), ("time_to_detect",
                                                          [r[2] for r in RUNS])):
        line = group(svg, f"{prefix}-{key}")
        points = vertices(line)
        assert len(points) == 3 and len(line.findall(f".//{SVG}use")) == 3, points
        # Oldest first, left to right, and the heights in proportion to the figures.
        assert [x for x, _ in points] == sorted(x for x, _ in points)
        (_, ya), (_, yb), (_, yc) = points
        va, vb, vc = figures
        assert abs((ya - yb) / (ya - yc) - (va - vb) / (va - vc)) < 1e-3, (points, figures)
        assert texts(svg, f"{prefix}-{key}-value-") == [plots.seconds(v) for v in figures]
    # The objective: a line at 900 s, between the RTOs that met it and the one that missed.
    (_, y_objective), _ = vertices(group(svg, f"{prefix}-rto-objective"))
    (_, y41), (_, y1200), (_, y60) = vertices(group(svg, f"{prefix}-rto"))
    assert y1200 < y_objective < min(y41, y60)  # SVG's y grows downwards
    assert abs((y41 - y_objective) / (y41 - y1200) - (900 - 41) / (1200 - 41)) < 1e-3
    assert texts(svg, f"{prefix}-rto-objective-label") == ["objective 900 s"]
    assert texts(svg, f"{prefix}-rpo-objective-label") == ["objective 0 s"]
    # The run that missed its RTO (its record failed) is marked, and only it.
    assert len(group(svg, f"{prefix}-rto-missed").findall(f".//{SVG}use")) == 1
    # No time to detect objective in the runbook: no line for one.
    assert svg.find(f".//{SVG}g[@id='{prefix}-time_to_detect-objective']") is None
    assert plots.drill_svg(history) == svg_text, "the same records give the same SVG"


def test_a_figure_the_drill_does_not_measure_says_so(tmp_path: Path) -> None:
    record_drills(tmp_path, ((30.0, None, 1.0),), drill="api-crash",
                  objective=Objective(rto_s=300))
    (history,) = plots.read_drill_histories(tmp_path)
    (tmp_path / "torn.json").write_text('{"drill": "api-crash", "started_')
    assert plots.read_drill_histories(tmp_path) == (history,), "a torn file is left out"
    svg = ET.fromstring(plots.drill_svg(history))
    assert texts(svg, "drill-api-crash-rpo-none") == ["not measured by this drill"]
    assert svg.find(f".//{SVG}g[@id='drill-api-crash-rpo-objective']") is None
    assert texts(svg, "drill-api-crash-rto-objective-label") == ["objective 300 s"]


def outcome(name: str, tags: tuple[str, ...], figures: dict[str, float], at: datetime
            ) -> ScenarioOutcome:
    return ScenarioOutcome(nodeid=name, name=name, feature="Health Checks", sections=(),
                           tier=None, outcome="passed", duration_s=0.1, tags=tags,
                           figures=figures, finished_at=at.isoformat())


def write_history(path: Path) -> datetime:
    start = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    for hour, ms in enumerate((12.5, 30.0, 18.25)):
        at = start + timedelta(hours=hour)
        append_history(path, [
            outcome("The API answers", ("synthetic", "critical"),
                    {"api health ms": ms, "rto_s": 1.0}, at),
            outcome("A drill", ("drill",), {"api health ms": 99.0}, at),
        ], run_id=f"run-{hour}", target="sandbox", environment="sandbox")
    return start


def test_a_synthetic_scenarios_latency_over_the_runs(tmp_path: Path) -> None:
    write_history(tmp_path / "history.jsonl")
    from runbook.reporting.summary import read_history

    (history,) = plots.latency_histories(read_history(tmp_path / "history.jsonl"))
    assert (history.scenario, [s.name for s in history.series]) == ("The API answers",
                                                                    ["api health"])
    svg = ET.fromstring(plots.latency_svg(history))
    prefix = plots.latency_id(history)
    points = vertices(group(svg, f"{prefix}-latency-0"))
    assert len(points) == 3
    (_, ya), (_, yb), (_, yc) = points
    assert abs((ya - yb) / (ya - yc) - (12.5 - 30.0) / (12.5 - 18.25)) < 1e-3
    assert texts(svg, f"{prefix}-latency-0-value-") == ["12.5 ms", "30 ms", "18.25 ms"]
    assert "The API answers: latency over 3 run(s)" in "".join(svg.itertext())


def test_the_living_runbook_shows_the_figures_inline(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    record_drills(reports / "drills")
    write_history(reports / "history.jsonl")
    coverage = measure(ROOT / RUNBOOK_FILE, ROOT / "runbook" / "features")
    written = docs.write(docs.gather(coverage, reports, tmp_path / "manual.jsonl"),
                         tmp_path / "out", Redactor())
    page = written.markdown.read_text()
    section = page.split("## Figures over time", 1)[1].split("\n## ", 1)[0]
    assert "![RTO, RPO and time to detect of service-down](living-runbook-figures/" \
           "drill-service-down.svg)" in section, section
    assert "3 record(s) of Incident Response > Service Down." in section
    figures = tmp_path / "out" / docs.FIGURES_DIR
    assert sorted(p.name for p in figures.glob("*.svg")) == [
        "drill-service-down.svg", "latency-001-the-api-answers.svg"]
    drawn = ET.fromstring((figures / "drill-service-down.svg").read_text())
    assert texts(drawn, "drill-service-down-rto-value-") == ["41 s", "1200 s", "60.5 s"]
    html = written.html.read_text()
    body = html.split("<body>", 1)[1]
    assert "<img" not in body and body.count("<svg") == 2, "figures inline, no file needed"
    assert 'id="drill-service-down-rto-objective"' in body and ">objective 900 s<" in body
    assert ">30 ms<" in body and ">1200 s<" in body


def test_runbook_docs_writes_the_figures_and_help_does_not_load_the_plotting(
        tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    record_drills(reports / "drills", RUNS[:2])
    write_history(reports / "history.jsonl")
    env = {**CLEAN, "RUNBOOK_RECORDS": str(tmp_path / "records")}
    done = subprocess.run([sys.executable, "-m", "runbook.cli", "docs", "--reports",
                           str(reports)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    html = (reports / docs.HTML_FILE).read_text()
    assert html.count("<svg") == 2 and ">1200 s<" in html and ">18.25 ms<" in html
    assert (reports / docs.FIGURES_DIR / "drill-service-down.svg").exists()
    loaded = subprocess.run([sys.executable, "-c", "import sys, runbook.cli;"
                             " print(sorted(m for m in sys.modules if 'matplotlib' in m))"],
                            cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60, check=True)
    assert loaded.stdout.strip() == "[]", "matplotlib is imported only to draw"


def test_with_nothing_recorded_the_section_says_how_to_get_figures(tmp_path: Path) -> None:
    coverage = measure(ROOT / RUNBOOK_FILE, ROOT / "runbook" / "features")
    written = docs.write(docs.gather(coverage, tmp_path / "reports", tmp_path / "m.jsonl"),
                         tmp_path / "out", Redactor())
    section = written.markdown.read_text().split("## Figures over time", 1)[1]
    assert section.split("\n## ", 1)[0].strip().splitlines()[-1].startswith(
        "Nothing recorded yet: `runbook check`")
    assert not (tmp_path / "out" / docs.FIGURES_DIR).exists()
