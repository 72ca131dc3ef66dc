"""The Allure 3 CLI's configuration for ``runbook report``: history kept across runs, and
the failure categories the results carry.

Allure 3's HTML report (its default "awesome" plugin) reads ``environment.properties`` from
the results but ignores ``categories.json``: only its Allure 2 compatible plugins read that
file; the new report takes categories from the ``categories`` field of the configuration
file (``allure generate --config``). So the categories the run wrote into its results
(harness/allure_labels.py, the one source) are copied into the configuration here. Allure 3
accepts Allure 2's keys there but compiles the patterns as JavaScript and searches with them,
where Allure 2 (Java) matches whole messages: each pattern is anchored, and inline flags
such as ``(?s)``, which JavaScript rejects, are refused with the reason.

History is a JSON-lines file outside the regenerated report directory (``historyPath``):
each ``allure generate`` appends the run, which gives the report its trend and each
scenario its history tab.

The results tree follows the runbook: the awesome plugin groups by the labels named in its
``groupBy`` option (without one, by the suite labels, else each result's title path, which
for pytest-bdd is the one ``features`` folder); the results carry the runbook part as
``epic`` and the subsection as ``story`` (harness/allure_labels.py), so the tree's top level
is the runbook's parts, each holding its subsections.

Each synthetic scenario's result is given its latencies across the runs (``history.jsonl``,
``runbook.reporting.plots``) as an HTML attachment, in a copy of the results made for the
report: the run's own results stay as the run wrote them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from runbook.errors import ConfigError, RunbookError
from runbook.reporting import plots
from runbook.reporting.summary import read_history

#: Runs kept in the history file (Allure drops the oldest beyond it).
HISTORY_LIMIT = 100

#: The results tree's levels: the runbook part (``epic``), then its subsection (``story``).
TREE_LABELS = ("epic", "story")

_INLINE_FLAG = re.compile(r"(?<!\\)\(\?[A-Za-z]")
_KEYS = ("name", "matchedStatuses", "flaky")


def generate(cli: str, results: Path, output: Path, *, history: Path, name: str,
             history_limit: int = HISTORY_LIMIT, timeout: float = 300.0,
             runs: Path | None = None) -> None:
    """Render ``results`` as HTML into ``output`` (replaced whole), appending this run to
    ``history``; with ``runs`` (``history.jsonl``), each synthetic scenario's latencies
    across the runs attached to its result (``with_latencies``).

    The report is generated into a fresh directory beside ``output`` and then moved in:
    Allure 3 moves its plugin's files to the top of the output directory only when that
    directory was empty, so regenerating in place would leave the old index.html.
    Raises ConfigError for unusable categories, RunbookError when the CLI fails."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".allure-", dir=output.parent) as scratch:
        rc = write_config(Path(scratch) / "allurerc.json", results, history=history,
                          history_limit=history_limit)
        fresh = Path(scratch) / "report"
        if runs is not None:
            results = with_latencies(results, Path(scratch) / "results", runs)
        try:
            done = subprocess.run(
                [cli, "generate", str(results), "--config", str(rc), "--output", str(fresh),
                 "--report-name", name],
                capture_output=True, text=True, timeout=timeout, check=False, cwd=scratch,
                env=dict(os.environ, NO_COLOR="1"),
            )
        except subprocess.TimeoutExpired:
            raise RunbookError(f"the Allure CLI did not finish within {timeout:g} s") from None
        # A plugin's error leaves exit code 0 (Allure 3.18): read what it said too.
        said = (done.stderr + done.stdout).strip().splitlines()
        errors = [line for line in said if line.startswith("plugin ") and " error" in line]
        if done.returncode != 0 or errors or not (fresh / "index.html").exists():
            first = (errors or said[-1:] or ["no output"])[0]
            raise RunbookError(f"the Allure CLI failed (exit {done.returncode}): {first}")
        shutil.rmtree(output, ignore_errors=True)
        fresh.rename(output)


#: The name of a synthetic scenario's latency attachment.
LATENCY_ATTACHMENT = "latency over the runs"


def with_latencies(results: Path, into: Path, runs: Path) -> Path:
    """A copy of ``results`` at ``into`` where the result of each synthetic scenario with
    latencies in ``runs`` (``history.jsonl``: matched by feature and name) carries them,
    drawn over the runs, as an HTML attachment; ``results`` itself when there is none."""
    histories = {(h.feature, h.scenario): h
                 for h in plots.latency_histories(read_history(runs))}
    if not histories:
        return results
    shutil.copytree(results, into)
    for path in sorted(into.glob("*-result.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            labels = {label["name"]: label["value"] for label in document.get("labels", ())}
        except (OSError, ValueError, TypeError, KeyError):
            continue  # Allure reports a result it cannot read; not this step's to judge
        found = histories.get((str(labels.get("feature", "")), str(document.get("name"))))
        if found is None:
            continue
        source = f"{uuid.uuid4()}-attachment.html"
        (into / source).write_text(plots.html_page(
            f"{found.scenario}: latency over the runs", [plots.latency_svg(found)],
            "What the scenario measured (ms) in each run of the history, oldest first."),
            encoding="utf-8")
        document["attachments"] = [*document.get("attachments", ()), {
            "name": LATENCY_ATTACHMENT, "source": source, "type": "text/html"}]
        path.write_text(json.dumps(document), encoding="utf-8")
    return into


def config(results: Path, *, history: Path, history_limit: int = HISTORY_LIMIT
           ) -> dict[str, object]:
    """The configuration: ``historyPath`` and ``historyLimit``, the awesome report's tree
    by runbook section (``TREE_LABELS``), and ``categories`` from the results'
    ``categories.json`` when there is one (else Allure's defaults)."""
    document: dict[str, object] = {
        "historyPath": str(history), "historyLimit": history_limit,
        "plugins": {"awesome": {"options": {"groupBy": list(TREE_LABELS)}}},
    }
    categories = results / "categories.json"
    if categories.exists():
        document["categories"] = categories_of(categories)
    return document


def write_config(path: Path, results: Path, *, history: Path,
                 history_limit: int = HISTORY_LIMIT) -> Path:
    """Write :func:`config` as JSON to ``path`` (an ``allurerc.json``) and return it."""
    path.write_text(json.dumps(config(results, history=history, history_limit=history_limit),
                               indent=2), encoding="utf-8")
    return path


def categories_of(path: Path) -> list[dict[str, object]]:
    """Allure 2 ``categories.json`` rules as Allure 3 category rules, in the same order.

    Raises ConfigError naming the file and the category when a rule cannot be carried over."""
    try:
        rules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc}); run runbook check again to"
                          " rewrite it") from None
    if not isinstance(rules, list):
        raise ConfigError(f"{path}: expected a JSON list of categories")
    return [_rule(path, index, rule) for index, rule in enumerate(rules)]


def _rule(path: Path, index: int, rule: object) -> dict[str, object]:
    if not isinstance(rule, dict) or not isinstance(rule.get("name"), str):
        raise ConfigError(f"{path}: category {index + 1} has no name")
    # Shown open: the on-call engineer sees each incident's failures without a click.
    converted = {key: rule[key] for key in _KEYS if key in rule} | {"expand": True}
    for key in ("messageRegex", "traceRegex"):
        if rule.get(key):
            converted[key] = _javascript(path, rule["name"], key, str(rule[key]))
    return converted


def _javascript(path: Path, name: str, key: str, pattern: str) -> str:
    """The Allure 2 (whole-message) ``pattern`` as a JavaScript one that Allure 3 searches
    with: anchored at both ends."""
    if _INLINE_FLAG.search(pattern):
        raise ConfigError(
            f"{path}: category {name!r}: {key} {pattern!r} uses an inline flag or a Python"
            " group, which Allure 3 (JavaScript) cannot compile; write [\\s\\S] for any"
            " character, or run runbook check again to rewrite the file")
    return f"^(?:{pattern})$"
