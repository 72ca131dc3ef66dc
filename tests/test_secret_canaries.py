"""Secret canaries: twenty planted secrets, one per setting and form, found nowhere a run
with failing scenarios writes or prints, and found once redaction is switched off.

The planted values are wrong on purpose (passwords, keys, tokens the sandbox does not
accept), so the scenarios that use them fail and their failure messages, tracebacks and
evidence are what gets scanned. The runs stress every path: pytest's ``-l`` (locals in
tracebacks) and ``--log-level=DEBUG`` (client libraries log request headers) reach the
scenarios through ``PYTEST_ADDOPTS``, which ``runbook check`` hands to its pytest process
with the rest of the environment. One run goes through ``runbook check`` (its stdout is
streamed through the CLI's redactor); one runs the bound scenarios with pytest directly, as
``runbook check`` does, so pytest's own terminal output is checked without that safety net,
and it includes a drill whose traceback goes through the drill machinery.

The proof that the test can fail is a pytest plugin, loaded with ``-p`` into the same run,
that makes ``Redactor`` a no-op: then canaries are found. No switch in the product does it.
"""

from __future__ import annotations

import base64
import html
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from runbook.cli import SCENARIOS, allure_cli
from runbook.config import META_VARIABLES, TARGET_VARIABLES, Target
from runbook.redact import Redactor
from runbook.reporting.publish import Delivery
from runbook.sandbox.services.tokens import issue_user_token
from tests.conftest import RunningSandbox

#: The repository's root (the source checkout these tests run in).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The planted values: wrong for the sandbox, and spelled so that every encoding differs
#: from the raw value (``"`` and ``\\`` for JSON, ``/ + @ : =`` for URLs).
DB_PASSWORD = 'Cnry-db:p@ss/w"0rd+1'
REDIS_PASSWORD = "Cnry-rd/p@ss=w+rd~2"
AWS_KEY_ID = "AKIACNRYCANARY000001"
AWS_SECRET = "Cnry/AwsSecret+Key/0123456789abcdefghijk"
RESEND_KEY = "re_CnryResendKey_0123456789abcdef"
API_SECRET = 'Cnry-api"secret\\with/quote&more-32-bytes!'
WEBHOOK_TOKEN = "CnryWebhookToken0123456789abcdef"
PUSHGATEWAY_USER = "runbook"
PUSHGATEWAY_PASSWORD = "Cnry-pg:push@gw/pw"
#: The seeded admin's id: the planted ADMIN_TOKEN looks like the real one, but its
#: signature is the planted API_SECRET's.
ADMIN_ID = "00000000-0000-4000-8000-000000000001"
#: Passed to every run: locals in tracebacks, and client libraries' DEBUG logs captured.
STRESS = "-l --log-level=DEBUG"
#: The scenarios the direct pytest run selects: a drill (steady state red: the API is
#: unreachable, so nothing is injected) and the checks whose clients log credentials.
DIRECT_SELECTION = "api-crash or s3_access or presigned or resend_accepts"
#: Leaves out the info-tier scenarios that read Redis, so the info tier passes while the
#: critical and warning tiers fail.
CHECK_SELECTION = "not counted_the_way"
RUN_TIMEOUT_S = 150
NO_REDACTION_PLUGIN = '''\
"""Loaded with -p by tests/test_secret_canaries.py only: every Redactor passes text
through unchanged, to prove that redaction is what keeps the canaries out."""
from runbook.redact import Redactor

Redactor.__call__ = lambda self, text: text
'''


@dataclass(frozen=True)
class Canary:
    """One planted secret in one form: ``needle`` must appear nowhere; ``context`` is a line
    it would naturally sit in."""

    setting: str
    form: str
    needle: str
    context: str

    @property
    def id(self) -> str:
        return f"{self.setting}:{self.form}"

    def spellings(self) -> set[str]:
        """The needle as text and as XML/HTML escapes it (junit.xml, the HTML report)."""
        return {self.needle, html.escape(self.needle), html.escape(self.needle, quote=False)}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _json(text: str) -> str:
    return json.dumps(text)[1:-1]


def _url(text: str) -> str:
    return quote(text, safe="")


def _with_password(url: str, password: str, user: str | None = None) -> str:
    parts = urlsplit(url)
    name = parts.username if user is None else user
    netloc = f"{name or ''}:{_url(password)}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class Planted:
    """The variables of a run with every secret-bearing setting replaced by a canary."""

    env: Mapping[str, str]
    canaries: tuple[Canary, ...]


def plant(sandbox_env: Mapping[str, str], receiver_url: str) -> Planted:
    """The sandbox's variables with the twenty canaries planted, and the canaries."""
    database = _with_password(sandbox_env["DATABASE_URL"], DB_PASSWORD)
    redis = _with_password(sandbox_env["REDIS_URL"], REDIS_PASSWORD)
    admin_token = issue_user_token(API_SECRET, ADMIN_ID, "ADMIN", 0, ttl_s=3600)
    webhook = f"{receiver_url}/services/T0CNRY01/B0CNRY01/{WEBHOOK_TOKEN}"
    pushgateway = _with_password(receiver_url, PUSHGATEWAY_PASSWORD, user=PUSHGATEWAY_USER)
    basic = _b64(f"{PUSHGATEWAY_USER}:{PUSHGATEWAY_PASSWORD}")
    env = {**sandbox_env, "DATABASE_URL": database, "REDIS_URL": redis,
           "AWS_ACCESS_KEY_ID": AWS_KEY_ID, "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
           "RESEND_API_KEY": RESEND_KEY, "ADMIN_TOKEN": admin_token, "API_SECRET": API_SECRET,
           "RUNBOOK_WEBHOOK_URL": webhook, "RUNBOOK_PUSHGATEWAY_URL": pushgateway}
    canaries = (
        Canary("DATABASE_URL", "raw", DB_PASSWORD, f"password was {DB_PASSWORD} then"),
        Canary("DATABASE_URL", "url-encoded", _url(DB_PASSWORD), f"pw={_url(DB_PASSWORD)}&x"),
        Canary("DATABASE_URL", "json-escaped", _json(DB_PASSWORD),
               json.dumps({"conninfo": DB_PASSWORD})),
        Canary("DATABASE_URL", "dsn", database, f"cannot connect to {database}: refused"),
        Canary("REDIS_URL", "raw", REDIS_PASSWORD, f"AUTH {REDIS_PASSWORD} failed"),
        Canary("REDIS_URL", "base64", _b64(REDIS_PASSWORD), f"secret: {_b64(REDIS_PASSWORD)}"),
        Canary("REDIS_URL", "dsn", redis, f"Error connecting to {redis}."),
        Canary("AWS_ACCESS_KEY_ID", "raw", AWS_KEY_ID,
               f"Credential={AWS_KEY_ID}/20260101/us-east-1/s3/aws4_request"),
        Canary("AWS_ACCESS_KEY_ID", "base64", _b64(AWS_KEY_ID), f"id: {_b64(AWS_KEY_ID)}"),
        Canary("AWS_SECRET_ACCESS_KEY", "raw", AWS_SECRET, f"aws_secret={AWS_SECRET}"),
        Canary("AWS_SECRET_ACCESS_KEY", "url-encoded", _url(AWS_SECRET),
               f"?secret={_url(AWS_SECRET)}"),
        Canary("RESEND_API_KEY", "raw", RESEND_KEY, f"key {RESEND_KEY} rejected"),
        Canary("RESEND_API_KEY", "bearer", f"Bearer {RESEND_KEY}",
               f"{{'Authorization': 'Bearer {RESEND_KEY}'}}"),
        Canary("ADMIN_TOKEN", "jwt", admin_token, f"token {admin_token} refused"),
        Canary("ADMIN_TOKEN", "bearer", f"Bearer {admin_token}",
               f"authorization: Bearer {admin_token}"),
        Canary("API_SECRET", "raw", API_SECRET, f"signed with {API_SECRET} today"),
        Canary("API_SECRET", "json-escaped", _json(API_SECRET),
               json.dumps({"API_SECRET": API_SECRET})),
        Canary("RUNBOOK_WEBHOOK_URL", "token", WEBHOOK_TOKEN, f"posted to {webhook}"),
        Canary("RUNBOOK_PUSHGATEWAY_URL", "raw", PUSHGATEWAY_PASSWORD,
               f"pushgateway password {PUSHGATEWAY_PASSWORD}"),
        Canary("RUNBOOK_PUSHGATEWAY_URL", "basic", basic, f"Authorization: Basic {basic}"),
    )
    return Planted(env, canaries)


# -- local receivers for the webhook and the Pushgateway -----------------------------------


@dataclass
class Receiver:
    """A loopback HTTP server that takes every request (200) and keeps each body: the
    webhook messages and the pushed metrics are outputs too."""

    url: str
    bodies: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    received = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def _take(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received.bodies.append(self.rfile.read(length).decode("utf-8", "replace"))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = _take

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the request line holds the webhook's secret path, by design."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


# -- running the runbook -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _environment(planted: Planted, records: Path, addopts: str,
                 pythonpath: Path | None = None, **overrides: str) -> dict[str, str]:
    """The process environment of a run: nothing of the caller's target or pytest options,
    the planted target, and ``addopts`` for the scenarios' pytest."""
    drop = {*TARGET_VARIABLES, *META_VARIABLES, "PYTEST_ADDOPTS", "PYTHONPATH"}
    env = {k: v for k, v in os.environ.items()
           if k not in drop and not k.startswith("RUNBOOK_")}
    env.update(planted.env, RUNBOOK_RECORDS=str(records), PYTEST_ADDOPTS=addopts,
               NO_COLOR="1", **overrides)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def _run(command: Sequence[str], env: Mapping[str, str], cwd: Path
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), cwd=cwd, env=dict(env), capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S, check=False)


def runbook(*args: str, env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The ``runbook`` command, as a user runs it."""
    return _run([sys.executable, "-m", "runbook.cli", *args], env, cwd)


def scenarios_directly(reports: Path, results: Path, env: Mapping[str, str]
                       ) -> subprocess.CompletedProcess[str]:
    """The bound scenarios in pytest, the way ``runbook check`` starts them, but with no CLI
    in between: what pytest itself prints is the output. Its DEBUG log file is an output
    too; its Allure results join ``results`` so that one HTML report shows both runs."""
    return _run([
        sys.executable, "-m", "pytest", str(SCENARIOS), "-m", "synthetic or drill",
        "-k", DIRECT_SELECTION, "--target", "env",
        "--alluredir", str(results), "--junitxml", str(reports / "junit.xml"),
        "--runbook-reports", str(reports), "-o", "junit_family=xunit2", "--color", "no", "-rN",
        "--timeout", "120", "--log-file", str(reports / "pytest.log"),
        "--log-file-level", "DEBUG",
    ], env, PROJECT_ROOT)


@dataclass
class Evidence:
    """Everything a run printed and wrote: texts by where they came from."""

    texts: dict[str, str] = field(default_factory=dict)

    def add_output(self, name: str, done: subprocess.CompletedProcess[str]) -> None:
        self.texts[f"{name} stdout"] = done.stdout
        self.texts[f"{name} stderr"] = done.stderr

    def add_tree(self, root: Path) -> None:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            self.texts[str(path)] = path.read_bytes().decode("utf-8", "replace")

    def found(self, canaries: Sequence[Canary]) -> list[str]:
        """``<canary> in <where>`` for every canary spelling found."""
        return [f"{canary.id} in {where}" for canary in canaries
                for where, text in self.texts.items()
                if any(spelling in text for spelling in canary.spellings())]


def _sandbox_logs(sandbox: RunningSandbox) -> list[Path]:
    return sorted((sandbox.home / "sandbox" / "logs").glob("*.log"))


def run_everything(sandbox: RunningSandbox, planted: Planted, receiver: Receiver, root: Path,
                   *, addopts: str, pythonpath: Path | None = None, direct: bool = True,
                   render: bool = True) -> tuple[Evidence, dict[str, int]]:
    """``runbook check`` with failing and passing tiers, then (``direct``) the drill and the
    credential-logging checks through pytest directly, then (``render``) ``runbook
    report`` and ``runbook docs``; returns what was printed and written, and exit codes."""
    evidence, codes = Evidence(), {}
    records = root / "records"
    records.mkdir(parents=True, exist_ok=True)
    env = _environment(planted, records, addopts, pythonpath)
    check = runbook("check", "--target", "env", "--reports", str(root / "reports"),
                    "--match", CHECK_SELECTION, env=env, cwd=root)
    evidence.add_output("runbook check", check)
    codes["check"] = check.returncode
    if direct:
        dead_api = f"http://127.0.0.1:{_free_port()}"
        direct_env = _environment(planted, records, addopts, pythonpath, API_URL=dead_api,
                                  RUNBOOK_RUN_ID="canaries-direct")
        done = scenarios_directly(root / "direct", root / "reports" / "allure-results",
                                  direct_env)
        evidence.add_output("pytest", done)
        codes["direct"] = done.returncode
    if render:
        if allure_cli() is not None:
            done = runbook("report", "--reports", str(root / "reports"), env=env, cwd=root)
            evidence.add_output("runbook report", done)
            codes["report"] = done.returncode
        done = runbook("docs", "--reports", str(root / "reports"), env=env, cwd=root)
        evidence.add_output("runbook docs", done)
        codes["docs"] = done.returncode
    evidence.add_tree(root)
    for log in _sandbox_logs(sandbox):
        evidence.texts[str(log)] = log.read_text(encoding="utf-8", errors="replace")
    for index, body in enumerate(receiver.bodies):
        evidence.texts[f"webhook/Pushgateway body {index}"] = body
    return evidence, codes


@dataclass(frozen=True)
class CleanRun:
    planted: Planted
    evidence: Evidence
    codes: dict[str, int]
    root: Path
    received: int


@pytest.fixture(scope="module")
def clean_run(sandbox: RunningSandbox, receiver: Receiver,
              tmp_path_factory: pytest.TempPathFactory) -> CleanRun:
    """One full set of runs with the canaries planted and redaction as shipped."""
    planted = plant(sandbox.env, receiver.url)
    root = tmp_path_factory.mktemp("canaries")
    receiver.bodies.clear()
    evidence, codes = run_everything(sandbox, planted, receiver, root, addopts=STRESS)
    return CleanRun(planted, evidence, codes, root, len(receiver.bodies))


# -- the tests -----------------------------------------------------------------------------


def test_the_runs_fail_where_the_canaries_are_used_and_pass_elsewhere(
    clean_run: CleanRun,
) -> None:
    """The scan means something only if the canaries were used and failures were reported:
    critical and warning tiers fail, the info tier passes, the drill recorded its failure."""
    assert clean_run.codes["check"] == 1, clean_run.evidence.texts["runbook check stdout"]
    summary = json.loads((clean_run.root / "reports" / "summary.json").read_text())
    by_tier: dict[str, set[str]] = {}
    for scenario in summary["scenarios"]:
        by_tier.setdefault(str(scenario["tier"]), set()).add(scenario["outcome"])
    assert "failed" in by_tier["critical"] and "failed" in by_tier["warning"], by_tier
    assert by_tier["info"] == {"passed"}, by_tier
    direct = json.loads((clean_run.root / "direct" / "summary.json").read_text())
    outcomes = {s["name"]: s["outcome"] for s in direct["scenarios"]}
    assert outcomes and set(outcomes.values()) == {"failed"}, outcomes
    assert "SteadyStateRed" in clean_run.evidence.texts["pytest stdout"], "the drill's traceback"
    assert list((clean_run.root / "direct" / "drills").glob("*-api-crash.json"))
    assert clean_run.received >= 2, "the webhook message and the metrics push were received"
    rendered = {k: v for k, v in clean_run.codes.items() if k.startswith(("report", "docs"))}
    assert rendered and set(rendered.values()) == {0}, rendered


def test_no_canary_appears_in_reports_output_or_logs(clean_run: CleanRun) -> None:
    texts = clean_run.evidence.texts
    scanned = [where for where in texts if "allure-results" in where]
    assert scanned and any(w.endswith("junit.xml") for w in texts), "nothing was scanned"
    assert any(w.endswith("history.jsonl") for w in texts)
    assert any("/drills/" in w for w in texts)
    assert any(w.endswith("metrics.prom") for w in texts)
    assert any(w.endswith("pytest.log") for w in texts), "the direct run's DEBUG log file"
    assert any("/sandbox/logs/" in w for w in texts), "the sandbox's logs"
    if allure_cli() is not None:
        assert any("allure-report" in w and w.endswith(".html") for w in texts)
    assert clean_run.evidence.found(clean_run.planted.canaries) == []


def test_with_redaction_switched_off_the_canaries_are_found(
    sandbox: RunningSandbox, receiver: Receiver, tmp_path: Path,
) -> None:
    """The same check, with a plugin that makes the Redactor a no-op in the scenarios'
    pytest: canaries reach the reports, so the clean scan above can fail."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "canary_no_redaction.py").write_text(NO_REDACTION_PLUGIN)
    planted = plant(sandbox.env, receiver.url)
    evidence, codes = run_everything(
        sandbox, planted, receiver, tmp_path / "run", addopts=f"{STRESS} -p canary_no_redaction",
        pythonpath=plugins, direct=False, render=False)
    assert codes["check"] == 1, evidence.texts["runbook check stdout"]
    assert evidence.found(planted.canaries) != []


def _redactor_as_the_cli_builds_it(planted: Planted) -> Redactor:
    target = Target.from_variables("env", planted.env, source="environment variables")
    webhook = planted.env["RUNBOOK_WEBHOOK_URL"]
    pushgateway = planted.env["RUNBOOK_PUSHGATEWAY_URL"]
    redact = Redactor(target.secret_values())
    redact.add(Delivery(pushgateway=pushgateway, webhook=webhook).secrets())
    return redact


#: The canaries planted in a target on made-up addresses, for the redactor on its own.
SAMPLE = plant({"DATABASE_URL": "postgresql://legacyvideo:x@127.0.0.1:5432/legacyvideo",
                "REDIS_URL": "redis://:x@127.0.0.1:6379/0", "API_URL": "http://127.0.0.1:1"},
               "http://127.0.0.1:2")


@pytest.mark.parametrize("canary", SAMPLE.canaries, ids=lambda canary: canary.id)
def test_the_redactor_masks_each_canary_in_the_line_it_would_sit_in(canary: Canary) -> None:
    """Each canary through the redactor the CLI builds (the target's secrets and the
    delivery URLs): the known-secret layer, not only the credential-shaped patterns."""
    redact = _redactor_as_the_cli_builds_it(SAMPLE)
    assert canary.needle not in redact(canary.context)
    assert canary.needle not in redact(f"seen: {canary.needle} (end)")
