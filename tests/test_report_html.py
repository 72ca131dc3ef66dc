"""The HTML report as a reader sees it: real results from ``runbook check`` against the
session's sandbox, rendered by ``runbook report`` (the Allure 3 CLI), served over real HTTP on
loopback and opened in headless Chromium, driven over the DevTools protocol; what the pages
show once their scripts ran is what is asserted."""

from __future__ import annotations

import fcntl
import functools
import itertools
import json
import os
import select
import shutil
import socket
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runbook.cli import allure_cli
from runbook.drills.record import DrillRun, Objective, write_record
from runbook.redact import Redactor
from runbook.reporting import allure3, plots
from runbook.sections import RUNBOOK_FILE, parse_headings
from tests.conftest import RunningSandbox
from tests.test_cli import outcomes, runbook

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"

#: Fast scenarios, one per component the faults below break, and one that stays green.
FAST = "api_reports_status or web_front_end or database_answers or redis_answers_pong"

#: With the API, the database and Redis unreachable: the incident each failure belongs to,
#: the first runbook section its message names.
INCIDENT_OF = {
    "The API reports status ok with a current timestamp": "Service Down",
    "The database answers": "Database Connection Errors",
    "Redis answers PONG": "Worker Not Processing Jobs",
}

#: Run in the page: wait until its text holds still (the report loads its data with fetch),
#: optionally open every group of the results tree as a reader would (a click on each closed
#: group's arrow, level by level), then return the text and, per category of the categories
#: view, the text under it. ``%s`` is ``true`` or ``false``: expand the tree, whose groups
#: start closed when all their scenarios passed.
READ_PAGE = """
(async (expand) => {
  const pause = () => new Promise((done) => setTimeout(done, 100));
  const settled = async () => {
    let last = null;
    for (let i = 0, same = 0; i < 150 && same < 5; i++) {
      await pause();
      const now = document.body ? document.body.innerText : "";
      same = now && now === last ? same + 1 : 0;
      last = now;
    }
  };
  await settled();
  const opened = new Set();
  for (let round = 0; expand && round < 10; round++) {
    const closed = [...document.querySelectorAll('[data-testid="tree-section"]')]
      .filter((section) => !opened.has(section.id));
    if (!closed.length) break;
    for (const section of closed) {
      opened.add(section.id);
      section.querySelector('[data-testid="tree-arrow"]').click();
    }
    await settled();
  }
  // The results tree as a reader sees it: each group's title and how deep it sits, by its
  // indentation (0: the top level, the least indented).
  const groups = [...document.querySelectorAll('[data-testid="tree-section"]')]
    .filter((section) => !section.id.startsWith("cat:"))
    .map((section) => section.querySelector('[data-testid="tree-section-title"]'))
    .filter((title) => title)
    .map((title) => [Math.round(title.getBoundingClientRect().left), title.innerText.trim()]);
  const indents = [...new Set(groups.map(([left]) => left))].sort((a, b) => a - b);
  const tree = groups.map(([left, title]) => [indents.indexOf(left), title]);
  const categories = {};
  for (const node of document.querySelectorAll('[id^="cat:"]')) {
    const title = node.querySelector('[data-testid="tree-section-title"]');
    categories[title ? title.innerText.trim() : node.id] = node.innerText;
  }
  return {text: document.body.innerText, categories, tree};
})(%s)
"""


def chromium() -> str:
    """The headless browser: ``$CHROMIUM``, else Debian's ``chromium`` on PATH."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if not found:
        pytest.fail("headless Chromium is missing: ./scripts/test installs Debian's chromium"
                    " (ensure_chromium in scripts/_venv.sh) where it runs as root with apt;"
                    " else install it or set CHROMIUM=/path/to/chromium", pytrace=False)
    return found


class Chromium:
    """One headless Chromium, driven over the DevTools protocol on the pipe it reads on fd 3
    and writes on fd 4 (``--remote-debugging-pipe``): JSON messages ending in NUL."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser, self._out = os.pipe()
        self._in, from_browser = os.pipe()
        # Above 9 first, so that putting them on 3 and 4 cannot overwrite one another.
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser, from_browser)]
        for fd in (to_browser, from_browser):
            os.close(fd)
        script = f'exec "$0" "$@" 3<&{ends[0]} 4>&{ends[1]} {ends[0]}<&- {ends[1]}>&-'
        self.process = subprocess.Popen(
            ["bash", "-c", script, binary, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", f"--user-data-dir={profile}",
             # Loopback only: the report's page also asks for an analytics script online.
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             "--remote-debugging-pipe", "about:blank"],
            pass_fds=ends, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for fd in ends:
            os.close(fd)
        self._ids = itertools.count(1)
        self._buffer = b""
        self._events: list[dict[str, Any]] = []

    def read(self, url: str, *, expand: bool = False) -> dict[str, Any]:
        """Open ``url`` in a new tab, wait for its load event, return what READ_PAGE sees."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Page.enable", session)
        self.send("Page.navigate", session, url=url)
        self.event("Page.loadEventFired", session)
        seen = self.send("Runtime.evaluate", session, awaitPromise=True, returnByValue=True,
                         expression=READ_PAGE % ("true" if expand else "false"))
        self.send("Target.closeTarget", targetId=target)
        assert "exceptionDetails" not in seen, f"reading {url}: {seen['exceptionDetails']}"
        page: dict[str, Any] = seen["result"]["value"]
        return page

    def send(self, method: str, session: str | None = None, **params: object
             ) -> dict[str, Any]:
        number = next(self._ids)
        message: dict[str, object] = {"id": number, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._message(method)
            if reply.get("id") == number:
                assert "error" not in reply, f"Chromium refused {method}: {reply['error']}"
                result: dict[str, Any] = reply["result"]
                return result
            self._events.append(reply)

    def event(self, method: str, session: str) -> None:
        while not any(e.get("method") == method and e.get("sessionId") == session
                      for e in self._events):
            self._events.append(self._message(method))

    def _message(self, waiting_for: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise AssertionError(f"Chromium sent no {waiting_for} within {timeout:g} s")
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                stderr = self.process.stderr.read() if self.process.stderr else b""
                raise AssertionError(f"Chromium exited (waiting for {waiting_for}): "
                                     f"{stderr.decode(errors='replace')[-2000:]}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (AssertionError, OSError):
            self.process.kill()
        os.close(self._out)
        os.close(self._in)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Chromium]:
    """A fresh headless Chromium (its own profile: no cache from another report). Checked
    first, with the Allure CLI, so that a missing one fails before any run."""
    binary = chromium()
    if allure_cli() is None:
        pytest.fail("the Allure 3 CLI is missing: ./scripts/test installs it with npm"
                    " (ensure_allure in scripts/_venv.sh); install Node.js first", pytrace=False)
    started = Chromium(binary, tmp_path / "chromium-profile")
    yield started
    started.close()


@contextmanager
def served(directory: Path) -> Iterator[str]:
    """``directory`` on a loopback HTTP server; yields its base URL."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def report(reports: Path, cwd: Path) -> Path:
    """``runbook report`` for ``reports``; returns the HTML report's directory."""
    made = runbook("report", "--reports", str(reports), cwd=cwd)
    assert made.returncode == 0, made.stdout + made.stderr
    return reports / "allure-report"


def report_ids(html_dir: Path) -> dict[str, str]:
    """Scenario name -> the report's id for it (its page is ``index.html#<id>``)."""
    return {json.loads(p.read_text())["name"]: p.stem
            for p in (html_dir / "data" / "test-results").glob("*.json")}


def labels(reports: Path) -> list[dict[str, str]]:
    """Each result's labels by name (``epic``, ``story`` ...), from the raw results."""
    return [{label["name"]: label["value"] for label in json.loads(p.read_text())["labels"]}
            for p in (reports / "allure-results").glob("*-result.json")]


def assert_tree_by_runbook_section(reports: Path, tree: list[list[Any]]) -> None:
    """The results tree's top level is the runbook's parts (the level-2 headings) the
    results carry, and the groups under each are its subsections (level 3)."""
    headings = parse_headings((ROOT / RUNBOOK_FILE).read_text())
    parts = {h.title for h in headings if h.level == 2}
    subsections = {h.title: h.part for h in headings if h.level == 3}
    carried = labels(reports)
    top = [title for depth, title in tree if depth == 0]
    assert top and sorted(top) == sorted({label["epic"] for label in carried}), tree
    assert set(top) <= parts and "features" not in top, f"not the runbook's parts: {top}"
    below = [title for depth, title in tree if depth == 1]
    assert sorted(below) == sorted({label["story"] for label in carried if "story" in label})
    assert all(subsections.get(title) in top for title in below), tree


def assert_latencies_attached(reports: Path, html_dir: Path, ids: dict[str, str]) -> None:
    """Each synthetic scenario's result in the report carries its latencies over the two
    runs, the values drawn those of the run history."""
    measured: dict[str, list[float]] = {}
    for line in (reports / "history.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if "synthetic" in entry["tags"]:
            measured.setdefault(entry["name"], []).extend(
                v for k, v in sorted(entry["figures"].items()) if k.endswith(" ms"))
    assert measured and all(len(values) >= 2 for values in measured.values()), measured
    for name, values in measured.items():
        result = json.loads((html_dir / "data" / "test-results" / f"{ids[name]}.json"
                             ).read_text())
        (source,) = [a["link"]["id"] + a["link"]["ext"] for a in result["attachments"]
                     if a["link"]["name"] == allure3.LATENCY_ATTACHMENT]
        document = (html_dir / "data" / "attachments" / source).read_text()
        svg = ET.fromstring(document[document.index("<svg"):document.index("</svg>") + 6])
        drawn = sorted(t.text or "" for t in svg.iter(f"{SVG}text")
                       if (t.text or "").endswith(" ms") and t.text != "ms")
        assert drawn == sorted(f"{v:g} ms" for v in values), (name, drawn, values)


def test_the_report_shows_the_scenarios_environment_and_history_in_a_browser(
    sandbox: RunningSandbox, tmp_path: Path, browser: Chromium
) -> None:
    reports = tmp_path / "reports"
    for _ in range(2):  # two runs, each reported: the first report is the second's history
        checked = runbook("check", "--target", "sandbox", "--reports", str(reports), "-k",
                          FAST, cwd=tmp_path, env={"RUNBOOK_HOME": str(sandbox.home)})
        assert checked.returncode == 0, checked.stdout + checked.stderr
        html_dir = report(reports, tmp_path)
    names = sorted(outcomes(reports))
    assert len(names) == 4, names
    ids = report_ids(html_dir)
    with served(html_dir) as url:
        shown = browser.read(url, expand=True)
        overview = shown["text"]
        charts = browser.read(f"{url}#charts")["text"]
        pages = {name: browser.read(f"{url}#{ids[name]}")["text"] for name in names}
    assert_latencies_attached(reports, html_dir, ids)
    missing = [name for name in names if name not in overview]
    assert not missing, f"scenarios missing from the results tree: {missing}\n{overview}"
    assert_tree_by_runbook_section(reports, shown["tree"])
    environment = (reports / "allure-results" / "environment.properties").read_text()
    for key, value in (line.split("=", 1) for line in environment.splitlines() if line):
        assert f"{key}\n{value}" in overview, f"environment {key}={value} not shown: {overview}"
    for name, page in pages.items():
        assert name in page and "History\n1" in page, f"{name!r} has no earlier run: {page}"
    assert "Status dynamics" in charts and "No history information" not in charts, charts
    history = (reports / "allure-history.jsonl").read_text().splitlines()
    assert len(history) == 2 and not (html_dir / "allure-history.jsonl").exists()


def test_failures_sit_under_their_runbook_incident_in_a_browser(
    sandbox: RunningSandbox, tmp_path: Path, browser: Chromium
) -> None:
    with socket.socket() as dead:  # bound, never listening: connections are refused
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
        env = {**sandbox.env, "API_URL": f"http://127.0.0.1:{port}",
               "DATABASE_URL": f"postgresql://lv:pw@127.0.0.1:{port}/lv",
               "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
        reports = tmp_path / "reports"
        checked = runbook("check", "--target", "env", "--reports", str(reports), "-k", FAST,
                          cwd=tmp_path, env=env)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    failed = {name for name, outcome in outcomes(reports).items() if outcome == "failed"}
    assert failed == set(INCIDENT_OF), failed
    html_dir = report(reports, tmp_path)
    with served(html_dir) as url:
        categories = browser.read(f"{url}#categories")["categories"]
    assert set(categories) == set(INCIDENT_OF.values()), categories
    for name, incident in INCIDENT_OF.items():
        under = [title for title, text in categories.items() if name in text]
        assert under == [incident], f"{name!r} shows under {under}, not {incident!r}"


@pytest.mark.timeout(600)
def test_a_drill_shows_under_its_runbook_section_with_its_record_and_figures(
    healthy_sandbox: RunningSandbox, tmp_path: Path, browser: Chromium
) -> None:
    """A real drill against the sandbox, after an earlier record of it (written by the record
    writer): the report shows it under its runbook section, its record as HTML, and its RTO,
    RPO and time to detect across both records against the objective."""
    reports = tmp_path / "reports"
    earlier = DrillRun("api-crash", "Disaster Recovery > Recovery Objectives", "sandbox",
                       "sandbox", Objective(rto_s=300, rpo_s=0))
    earlier.fault_at = earlier.started_at - timedelta(days=1)
    earlier.detected_at = earlier.fault_at + timedelta(seconds=4.5)
    earlier.recovered_at = earlier.fault_at + timedelta(seconds=123)
    earlier.rpo_s = 0.0
    earlier.completed = True
    write_record(replace(earlier.finish(), started_at=earlier.fault_at), reports / "drills",
                 Redactor())
    drilled = runbook("drill", "api-crash", "--reports", str(reports), cwd=tmp_path,
                      env={"RUNBOOK_HOME": str(healthy_sandbox.home)}, timeout=420)
    assert drilled.returncode == 0, drilled.stdout + drilled.stderr
    first, real = sorted((reports / "drills").glob("*.json"))  # named by their start
    record = json.loads(real.read_text())
    assert json.loads(first.read_text())["rto_s"] == 123
    html_dir = report(reports, tmp_path)
    ((name, report_id),) = report_ids(html_dir).items()
    with served(html_dir) as url:
        shown = browser.read(url, expand=True)
        page = browser.read(f"{url}#{report_id}")["text"]
    assert_tree_by_runbook_section(reports, shown["tree"])
    assert [title for depth, title in shown["tree"] if depth == 0] == ["Disaster Recovery"]
    assert name in page
    # The attachments of the scenario's page (under the step that ran the drill).
    result = (html_dir / "data" / "test-results" / f"{report_id}.json").read_text()
    for attachment in ("drill record: api-crash", "drill record (JSON): api-crash",
                       "RTO, RPO and time to detect over time: api-crash"):
        assert f'"{attachment}"' in result, f"{attachment!r} not attached: {result}"
    attached = {p.read_text(errors="replace") for p in
                (html_dir / "data" / "attachments").glob("*.html")}
    (document,) = [a for a in attached if a.startswith("<!DOCTYPE html>") and "<svg" in a]
    svg = ET.fromstring(document[document.index("<svg"):document.index("</svg>") + 6])
    rto = svg.find(f".//{SVG}g[@id='drill-api-crash-rto']")
    assert rto is not None and len(rto.findall(f".//{SVG}use")) == 2, document
    values = [t.text for g in svg.iter(f"{SVG}g") if g.attrib.get("id", "").startswith(
        "drill-api-crash-rto-value-") for t in g.iter(f"{SVG}text")]
    assert values == ["123 s", plots.seconds(record["rto_s"])], values
    objective = plots.seconds(record["objective"]["rto_s"])
    assert f">objective {objective}<" in document, document
    (readable,) = [a for a in attached if "<h1>Drill: api-crash</h1>" in a]
    assert f"<strong>Verdict: {record['verdict'].upper()}</strong>" in readable, readable
