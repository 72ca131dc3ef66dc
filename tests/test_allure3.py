"""The Allure 3 configuration ``runbook report`` gives the CLI: the categories the run wrote
(harness/allure_labels.py) carried over, with the same meaning in JavaScript (run in Node,
as Allure 3 runs them) as in Python, and the history file outside the report."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from runbook.errors import CheckFailed, ConfigError
from runbook.harness import allure_labels
from runbook.reporting import allure3
from runbook.sections import NEXT_STEPS

#: A component's failure, as its check renders it -> the incident it belongs to.
EXPECTED = {"api": "Service Down", "database": "Database Connection Errors",
            "redis": "Worker Not Processing Jobs", "s3": "Upload Failures"}

#: First category whose pattern Allure 3 would match, for each message on stdin (JSON).
FIRST_MATCH_JS = """
const {rules, messages} = JSON.parse(require("fs").readFileSync(0, "utf8"));
console.log(JSON.stringify(messages.map((m) => {
  const hit = rules.find((r) => (r.matchedStatuses ?? ["failed"]).includes("failed")
                               && new RegExp(r.messageRegex).test(m));
  return hit ? hit.name : null;
})));
"""


def failure(component: str) -> str:
    advice = [line for step in NEXT_STEPS[component] for line in step.lines()]
    message = CheckFailed(component, "env (staging, https://api.example.com)",
                          "ConnectionError: connection refused", "an answer", advice)
    return f"runbook.errors.CheckFailed: {message}"


def python_first_match(categories: list[dict[str, str]], message: str) -> str | None:
    return next((c["name"] for c in categories if re.fullmatch(c["messageRegex"], message)),
                None)


def test_each_failure_sits_under_the_first_incident_its_message_names_in_both_languages(
    tmp_path: Path
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is missing: Allure 3 runs on it (./scripts/test installs the"
                    " Allure CLI where Node is present)", pytrace=False)
    allure_labels.write_extras(tmp_path, {"target": "env"})
    written = json.loads((tmp_path / "categories.json").read_text())
    rules = allure3.config(tmp_path, history=tmp_path / "h.jsonl")["categories"]
    assert isinstance(rules, list)
    messages = [failure(component) for component in EXPECTED]
    done = subprocess.run([node, "-e", FIRST_MATCH_JS], capture_output=True, text=True,
                          input=json.dumps({"rules": rules, "messages": messages}),
                          timeout=30, check=True)
    in_javascript = json.loads(done.stdout)
    in_python = [python_first_match(written, message) for message in messages]
    assert in_javascript == in_python == list(EXPECTED.values())


def test_the_configuration_keeps_the_history_outside_and_the_categories_open(
    tmp_path: Path
) -> None:
    allure_labels.write_extras(tmp_path, {"target": "env"})
    history = tmp_path / "allure-history.jsonl"
    rc = allure3.write_config(tmp_path / "allurerc.json", tmp_path, history=history,
                              history_limit=7)
    document = json.loads(rc.read_text())
    assert (document["historyPath"], document["historyLimit"]) == (str(history), 7)
    names = [rule["name"] for rule in document["categories"]]
    assert names == [name for name, _ in allure_labels.CATEGORIES] + ["Runbook defect"]
    assert all(rule["expand"] and rule["messageRegex"].startswith("^(?:")
               for rule in document["categories"])


def test_results_without_categories_leave_allures_defaults(tmp_path: Path) -> None:
    assert "categories" not in allure3.config(tmp_path, history=tmp_path / "h.jsonl")


@pytest.mark.parametrize("content, says", [
    ('[{"name": "Timeout", "messageRegex": "(?s).*timed out.*"}]',
     "category 'Timeout': messageRegex '(?s).*timed out.*' uses an inline flag"),
    ("{not json", "not readable JSON"),
    ('[{"messageRegex": "x"}]', "category 1 has no name"),
])
def test_unusable_categories_are_one_line_naming_the_file(
    tmp_path: Path, content: str, says: str
) -> None:
    (tmp_path / "categories.json").write_text(content)
    with pytest.raises(ConfigError) as raised:
        allure3.config(tmp_path, history=tmp_path / "h.jsonl")
    message = str(raised.value)
    assert says in message and str(tmp_path / "categories.json") in message
    assert "\n" not in message
