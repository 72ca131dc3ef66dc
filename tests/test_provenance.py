"""Provenance of a drill record: the suite's version and commit, the runbook's sha256, the
target's endpoint fingerprint (never a credential) and the tools' versions."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

import pytest

from runbook.config import Target
from runbook.drills import provenance
from runbook.drills.record import DrillRecord, DrillRun, Objective, Phase, write_record
from runbook.redact import Redactor
from runbook.sections import RUNBOOK_FILE

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

BASE = {
    "API_URL": "https://api.staging.example.com",
    "WEB_URL": "https://staging.example.com",
    "DATABASE_URL": "postgresql://lv_app:db-Pa55word-1@db.staging.example.com:5432/legacyvideo",
    "REDIS_URL": "redis://:redis-Pa55word-2@cache.staging.example.com:6379/0",
    "S3_BUCKET": "lv-staging-media",
    "S3_REGION": "eu-west-1",
    "S3_ENDPOINT_URL": "https://s3.eu-west-1.amazonaws.com",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY000001",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value-000000000000000000000001",
    "RESEND_API_KEY": "re_resendkey0000000001",
    "ADMIN_TOKEN": "admin-token-0000000001",
    "API_SECRET": "api-secret-0000000001",
}
SECRETS = ("db-Pa55word-1", "redis-Pa55word-2", "lv_app", "AKIAEXAMPLEKEY000001",
           "aws-secret-value-000000000000000000000001", "re_resendkey0000000001",
           "admin-token-0000000001", "api-secret-0000000001")


def _target(name: str = "staging", environment: str = "staging", **changes: str) -> Target:
    return Target.from_variables(name, {**BASE, **changes}, source="test",
                                 environment=environment, platform="railway")


# -- the fingerprint ---------------------------------------------------------------------------


def test_the_endpoints_are_normalised_as_documented() -> None:
    target = _target(API_URL="HTTPS://API.Staging.example.com/", WEB_URL="http://web.example.com",
                     REDIS_URL="rediss://:pw@Cache.example.com/3",
                     DATABASE_URL="postgres://u:pw@DB.example.com/lv")
    assert provenance.endpoints(target) == {
        "api_url": "https://api.staging.example.com:443",
        "web_url": "http://web.example.com:80",
        "database": {"host": "db.example.com", "port": 5432, "dbname": "lv"},
        "redis": {"host": "cache.example.com", "port": 6379, "db": 3},
        "s3": {"bucket": "lv-staging-media", "region": "eu-west-1",
               "endpoint": "https://s3.eu-west-1.amazonaws.com:443"},
    }
    bare = Target.from_variables("bare", {}, source="test", environment="staging")
    assert provenance.endpoints(bare) == {"api_url": None, "web_url": None, "database": None,
                                          "redis": None, "s3": None}
    assert provenance.fingerprint(target) == hashlib.sha256(
        json.dumps(provenance.endpoints(target), sort_keys=True,
                   separators=(",", ":")).encode()).hexdigest()


def test_credentials_never_reach_the_fingerprint() -> None:
    rotated = {
        "DATABASE_URL": "postgresql://other_user:another-pw@db.staging.example.com:5432/legacyvideo",
        "REDIS_URL": "redis://:another-redis-pw@cache.staging.example.com:6379/0",
        "AWS_ACCESS_KEY_ID": "AKIAOTHERKEY00000002", "AWS_SECRET_ACCESS_KEY": "other" * 8,
        "RESEND_API_KEY": "re_otherkey00000002", "ADMIN_TOKEN": "other-admin-token",
        "API_SECRET": "other-api-secret",
    }
    target = _target()
    assert provenance.fingerprint(target) == provenance.fingerprint(_target(**rotated))
    hashed = provenance.canonical(provenance.endpoints(target)).decode()
    assert not [secret for secret in SECRETS if secret in hashed]


@pytest.mark.parametrize(("variable", "value"), [
    ("API_URL", "https://api2.staging.example.com"),
    ("API_URL", "https://api.staging.example.com:8443"),
    ("API_URL", "http://api.staging.example.com"),
    ("WEB_URL", "https://www.staging.example.com"),
    ("DATABASE_URL", "postgresql://lv_app:db-Pa55word-1@db2.staging.example.com:5432/legacyvideo"),
    ("DATABASE_URL", "postgresql://lv_app:db-Pa55word-1@db.staging.example.com:6432/legacyvideo"),
    ("DATABASE_URL", "postgresql://lv_app:db-Pa55word-1@db.staging.example.com:5432/scratch"),
    ("REDIS_URL", "redis://:redis-Pa55word-2@cache2.staging.example.com:6379/0"),
    ("REDIS_URL", "redis://:redis-Pa55word-2@cache.staging.example.com:6380/0"),
    ("REDIS_URL", "redis://:redis-Pa55word-2@cache.staging.example.com:6379/1"),
    ("S3_BUCKET", "lv-production-media"),
    ("S3_REGION", "us-east-1"),
    ("S3_ENDPOINT_URL", "https://minio.staging.example.com"),
])
def test_every_endpoint_changes_the_fingerprint(variable: str, value: str) -> None:
    assert provenance.fingerprint(_target(**{variable: value})) != provenance.fingerprint(
        _target())


# -- the suite ---------------------------------------------------------------------------------


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True,
                          timeout=30, env={**os.environ, "GIT_AUTHOR_NAME": "t",
                                           "GIT_AUTHOR_EMAIL": "t@example.com",
                                           "GIT_COMMITTER_NAME": "t",
                                           "GIT_COMMITTER_EMAIL": "t@example.com"}).stdout


def test_the_suite_is_its_version_its_commit_and_whether_tracked_files_changed(
        tmp_path: Path) -> None:
    version = metadata.version("legacyvideo-runbook")
    assert provenance.suite(tmp_path) == provenance.Suite(version)  # not a git checkout
    _git(tmp_path, "init", "-q")
    (tmp_path / "tracked.py").write_text("x = 1\n")
    _git(tmp_path, "add", "tracked.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = _git(tmp_path, "rev-parse", "HEAD").strip()
    assert provenance.suite(tmp_path) == provenance.Suite(version, head, False)
    (tmp_path / "untracked.txt").write_text("notes\n")
    assert provenance.suite(tmp_path).dirty is False  # as git describe --dirty
    (tmp_path / "tracked.py").write_text("x = 2\n")
    assert provenance.suite(tmp_path) == provenance.Suite(version, head, True)
    inner = tmp_path / "vendored"
    inner.mkdir()
    assert provenance.suite(inner).commit is None, "another repository's commit is not ours"


def test_the_project_checkout_is_described_by_its_own_commit() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("the project is not a git checkout here")
    head = _git(ROOT, "rev-parse", "HEAD").strip()
    assert provenance.suite().commit == head


def test_a_git_that_hangs_is_given_up_on_after_the_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\nsleep 30\n")
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(provenance, "GIT_TIMEOUT_S", 0.5)
    started = time.monotonic()
    found = provenance.suite(ROOT)
    assert time.monotonic() - started < 5
    assert found.commit is None and found.dirty is None


def test_the_tools_are_named_with_their_versions() -> None:
    tools = provenance.tools()
    assert list(tools) == ["python", "pytest", "pytest-bdd", "psycopg", "redis-py", "boto3",
                           "bullmq"]
    assert tools["pytest-bdd"] == metadata.version("pytest-bdd")
    assert tools["redis-py"] == metadata.version("redis")


# -- in the record -----------------------------------------------------------------------------


def test_a_record_carries_its_provenance_in_json_and_markdown_and_no_secret(
        tmp_path: Path) -> None:
    target = _target()
    drill = DrillRun("api-crash", "Disaster Recovery > Recovery Time Objectives",
                     target.describe(), "staging", Objective(300, 0))
    drill.completed = True
    record = drill.finish()
    assert record.provenance is not None and record.provenance.target is None
    runbook_sha = hashlib.sha256((ROOT / RUNBOOK_FILE).read_bytes()).hexdigest()
    assert record.provenance.runbook_sha256 == runbook_sha
    json_path, md_path = write_record(record, tmp_path, Redactor(target.secret_values()),
                                      target=target)
    written = json.loads(json_path.read_text())["provenance"]
    assert written["suite"]["version"] == metadata.version("legacyvideo-runbook")
    assert written["runbook_sha256"] == runbook_sha
    assert written["target"] == {"name": "staging", "environment": "staging",
                                 "fingerprint": provenance.fingerprint(target)}
    assert written["tools"]["bullmq"] == metadata.version("bullmq")
    markdown = md_path.read_text()
    assert "## Provenance" in markdown
    assert f"endpoints fingerprint {provenance.fingerprint(target)}" in markdown
    assert f"sha256 {runbook_sha}" in markdown
    everything = "".join(p.read_text() for p in tmp_path.iterdir())
    assert not [secret for secret in SECRETS if secret in everything]


def test_a_record_written_without_its_target_says_so(tmp_path: Path) -> None:
    """Built directly (as tests do) and written with no target: it still gets the suite,
    runbook and tools, and says that it names no target, so it counts for none."""
    record = DrillRecord(
        drill="api-crash", runbook_section="Disaster Recovery > Recovery Time Objectives",
        target="t", environment="staging", operator="o", host="h", started_at=T0,
        finished_at=T0 + timedelta(minutes=5), objective=Objective(300, 0),
        phases=(Phase("recover", T0, T0 + timedelta(seconds=5), True),))
    assert record.provenance is None
    json_path, md_path = write_record(record, tmp_path, Redactor())
    written = json.loads(json_path.read_text())["provenance"]
    assert written["target"] is None
    assert written["suite"]["version"] == metadata.version("legacyvideo-runbook")
    assert "- Target: not recorded" in md_path.read_text()
    [entry] = [json.loads(line) for line in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    assert entry["fingerprint"] is None and entry["environment"] == "staging"
