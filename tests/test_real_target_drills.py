"""The DR drills a real target can take, run against services the sandbox did not start: a
"staging" LegacyVideo of data services only (no API_URL, no PLATFORM) whose database is a
database on this machine's own PostgreSQL (5432), its Redis a database number of its own on
this machine's Redis (6379), and its bucket a versioned one on a moto server this test starts
as a process of its own, with objects of their own. ``runbook drill --target env
--allow-drills staging`` runs the drills it can take, refuses the others with the reason, and
leaves the target as found: per-table checksums and the object listing equal, from outside.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import boto3
import psycopg
import pytest
import yaml
from psycopg import sql

from runbook.config import TARGET_VARIABLES
from runbook.sandbox import find_postgres
from runbook.wait import wait_until
from tests.conftest import RunningSandbox

#: The repository's root (the source checkout these tests run in).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVER = "postgresql://postgres@127.0.0.1:5432"
REDIS_DB = 13
SCRATCH_SECRET = "scratch-canary-pw-5be1"
CLEAN = {k: v for k, v in os.environ.items()
         if k not in (*TARGET_VARIABLES, "PLATFORM", "RUNBOOK_ENVIRONMENT", "RUNBOOK_HOME",
                      "RUNBOOK_BACKUP_LOCATION", "RUNBOOK_SCRATCH_DATABASE_URL")}


def _machine_postgres() -> bool:
    try:
        with psycopg.connect(f"{SERVER}/postgres", connect_timeout=3):
            return True
    except psycopg.Error:
        return False


pytestmark = [
    pytest.mark.skipif(not _machine_postgres(),
                       reason="this machine runs no PostgreSQL on 5432 (trust)"),
    # One test runs the scheduled job's four drills in one command: over the default.
    pytest.mark.timeout(600),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _admin(sql_text: sql.Composable) -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(sql_text)


def table_checksums(dsn: str) -> dict[str, tuple[int, str]]:
    """Every public table, whole: row count and the md5 of its rows' text in a fixed order
    (read from outside the runbook)."""
    with psycopg.connect(dsn) as conn:
        names = [r[0] for r in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'public'"
            " and table_type = 'BASE TABLE' order by 1")]
        found = {}
        for name in names:
            row = conn.execute(sql.SQL(
                "select count(*), coalesce(md5(string_agg(t::text, E'\\n' order by t::text)),"
                " '') from {} t").format(sql.Identifier(name))).fetchone()
            assert row is not None
            found[name] = (int(row[0]), str(row[1]))
    return found


def listing(s3: object, bucket: str) -> list[tuple[str, str, str, bool, str]]:
    """Every version and delete marker of ``bucket``: key, version id, ETag, latest, kind."""
    versions = s3.list_object_versions(Bucket=bucket)  # type: ignore[attr-defined]
    return sorted([(v["Key"], v["VersionId"], v.get("ETag", ""), v["IsLatest"], "version")
                   for v in versions.get("Versions", [])]
                  + [(m["Key"], m["VersionId"], "", m["IsLatest"], "delete marker")
                     for m in versions.get("DeleteMarkers", [])])


class Staging:
    """The data-only staging target and what the test keeps to compare."""

    def __init__(self, variables: dict[str, str], dsn: str, s3: object, home: Path) -> None:
        self.variables, self.dsn, self.s3, self.home = variables, dsn, s3, home

    def env(self, **extra: str) -> dict[str, str]:
        return {**CLEAN, **self.variables, "RUNBOOK_HOME": str(self.home), **extra}


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server in a process of its own (not the sandbox's)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H",
                                 "127.0.0.1", "-p", str(port)], stdout=out, stderr=out,
                                start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def staging(sandbox: RunningSandbox, moto_endpoint: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Staging]:
    """LegacyVideo's schema and data (a dump of the sandbox's) in a database of this
    machine's PostgreSQL; a versioned bucket with objects, overwritten and deleted ones among
    them, and an unversioned bucket; a backup directory holding a pg_dump -Fc of it."""
    work = tmp_path_factory.mktemp("staging")
    name = f"runbook_staging_{secrets.token_hex(4)}"
    bindir = find_postgres().bindir
    dump = work / "seed.dump"
    box = sandbox.sandbox
    subprocess.run([str(box.bindir / "pg_dump"), "--format=custom", "--file", str(dump),
                    f"--dbname={box.superuser_dsn()}"], check=True, capture_output=True)
    _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = f"{SERVER}/{name}"
    try:
        subprocess.run([str(bindir / "pg_restore"), "--no-owner", "--no-privileges",
                        "--exit-on-error", f"--dbname={dsn}", str(dump)], check=True,
                       capture_output=True)
        backups = work / "backups"
        backups.mkdir()
        subprocess.run([str(bindir / "pg_dump"), "--format=custom", "--file",
                        str(backups / "legacyvideo-20261202.dump"), f"--dbname={dsn}"],
                       check=True, capture_output=True)
        s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id="staging-key", aws_secret_access_key="staging-secret")
        s3.create_bucket(Bucket="staging-uploads")
        s3.put_bucket_versioning(Bucket="staging-uploads",
                                 VersioningConfiguration={"Status": "Enabled"})
        for n in range(5):
            s3.put_object(Bucket="staging-uploads", Key=f"videos/u{n}/v{n}/original.mp4",
                          Body=os.urandom(2048))
        s3.put_object(Bucket="staging-uploads", Key="videos/u1/v1/original.mp4",
                      Body=b"a second version")
        s3.delete_object(Bucket="staging-uploads", Key="videos/u2/v2/original.mp4")
        s3.create_bucket(Bucket="staging-unversioned")
        s3.put_object(Bucket="staging-unversioned", Key="videos/u9/v9/original.mp4",
                      Body=b"unversioned")
        variables = {
            "RUNBOOK_ENVIRONMENT": "staging", "DATABASE_URL": dsn,
            "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}", "S3_BUCKET": "staging-uploads",
            "S3_REGION": "us-east-1", "S3_ENDPOINT_URL": moto_endpoint,
            "AWS_ACCESS_KEY_ID": "staging-key", "AWS_SECRET_ACCESS_KEY": "staging-secret",
            # A password the machine's trust authentication ignores: it must never show.
            "RUNBOOK_SCRATCH_DATABASE_URL": (f"postgresql://postgres:{SCRATCH_SECRET}"
                                             f"@127.0.0.1:5432/runbook_restore_{name[17:]}"),
            "RUNBOOK_BACKUP_LOCATION": str(backups),
        }
        yield Staging(variables, dsn, s3, work / "home")
    finally:
        _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def runbook(*args: str, cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runbook.cli", *args], cwd=cwd, env=dict(env),
                          capture_output=True, text=True, timeout=540, check=False)


def records(reports: Path) -> dict[str, dict[str, object]]:
    found = {}
    for path in sorted((reports / "drills").glob("*.json")):
        document = json.loads(path.read_text())
        if "phases" in document:
            found[str(document["drill"])] = document
    return found


def scheduled_drill_job() -> list[str]:
    """The command of the GitHub workflow's "DR drills (staging)" step."""
    workflow = yaml.safe_load((PROJECT_ROOT / ".github" / "workflows" / "runbook.yml")
                              .read_text())
    steps = [step for job in workflow["jobs"].values() for step in job.get("steps", [])]
    run = next(step["run"] for step in steps if step.get("name") == "DR drills (staging)")
    return shlex.split(run)


def scratch_left() -> list[str]:
    with psycopg.connect(f"{SERVER}/postgres") as conn:
        return [r[0] for r in conn.execute(
            "select datname from pg_database where datname like 'runbook\\_restore\\_%'")]


def test_the_drills_a_data_only_staging_target_can_take_pass_and_leave_it_as_found(
        staging: Staging, tmp_path: Path) -> None:
    before_tables = table_checksums(staging.dsn)
    before_objects = listing(staging.s3, "staging-uploads")
    scratch_before = scratch_left()
    # Exactly what the scheduled staging DR job runs (its reports directory moved here).
    argv = scheduled_drill_job()
    assert argv[:2] == ["runbook", "drill"] and argv[-2:] == ["--reports", "reports"], argv
    result = runbook(*argv[1:-1], str(tmp_path / "reports"), cwd=tmp_path, env=staging.env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    found = records(tmp_path / "reports")
    assert set(found) == {"restore-test", "accidental-deletion", "s3-canary-loss",
                          "isolated-rebuild"}, output
    for drill, document in found.items():
        assert document["verdict"] == "pass", (drill, document["phases"])
        assert document["environment"] == "staging"
        left = [p for p in document["phases"] if p["name"] == "left as found"]
        assert left and left[0]["ok"], (drill, left)
    # The restore test: which backup, from where, its age and the restore time.
    restore = found["restore-test"]
    backup = restore["evidence"]["backup"]
    assert backup["origin"].endswith("/backups/legacyvideo-20261202.dump")
    assert backup["taken_at_basis"].startswith("the archive's header")
    assert restore["rpo_s"] is not None and 0 < restore["rpo_s"] < 3600
    assert restore["rto_s"] is not None and restore["rto_s"] < 1800
    assert restore["evidence"]["restore_test"]["restore_s"] > 0
    # The accidental deletion: exactly the canaries written after the backup are lost.
    deletion = found["accidental-deletion"]
    assert deletion["lost_canaries"] == 3
    # The isolated rebuild: the synthetic suite passed on the rebuilt stack, whose objects
    # are the target's.
    rebuild = found["isolated-rebuild"]
    assert rebuild["rto_s"] is not None and rebuild["rpo_s"] is not None
    integrity = next(p for p in rebuild["phases"] if p["name"] == "validate data integrity")
    assert "synthetic suite passed" in integrity["detail"]
    copied = integrity["evidence"][1]
    assert copied["copied"] == 4 and not copied["mismatched"]  # 5 keys, one deleted
    # The others are refused with their reason, not run, not passed.
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    skipped = [s for s in summary["scenarios"] if s["outcome"] == "skipped"]
    assert skipped and all("refused" in s["message"] for s in skipped), skipped
    assert any("sandbox-only" in s["message"] or "can only be injected on sandbox"
               in s["message"] for s in skipped)
    # Left as found, seen from outside: tables, objects, no scratch database left behind.
    assert table_checksums(staging.dsn) == before_tables
    assert listing(staging.s3, "staging-uploads") == before_objects
    assert scratch_left() == scratch_before
    # The scratch database's password: in no output and no report.
    assert SCRATCH_SECRET not in output
    for path in (tmp_path / "reports").rglob("*"):
        if path.is_file():
            assert SCRATCH_SECRET not in path.read_text(errors="replace"), path


def test_an_unversioned_bucket_fails_the_s3_drill_naming_the_gap_and_is_untouched(
        staging: Staging, tmp_path: Path) -> None:
    before = listing(staging.s3, "staging-unversioned")
    result = runbook("drill", "s3-canary-loss", "--target", "env", "--allow-drills",
                     "staging", "--reports", str(tmp_path / "reports"), cwd=tmp_path,
                     env=staging.env(S3_BUCKET="staging-unversioned"))
    assert result.returncode == 1, result.stdout[-3000:]
    record = records(tmp_path / "reports")["s3-canary-loss"]
    assert record["verdict"] == "fail"
    failed = [p for p in record["phases"] if not p["ok"]]
    assert failed[0]["name"] == "prepare" and "has no versioning" in failed[0]["detail"]
    assert "has no versioning" in result.stdout
    assert listing(staging.s3, "staging-unversioned") == before


def test_the_restore_test_reads_the_newest_backup_from_an_s3_prefix(
        staging: Staging, tmp_path: Path) -> None:
    """The runbook's off-site copies: the newest archive under s3://bucket/prefix."""
    dump = next(Path(staging.variables["RUNBOOK_BACKUP_LOCATION"]).glob("*.dump"))
    staging.s3.upload_file(str(dump), "staging-unversioned",  # type: ignore[attr-defined]
                           "offsite/legacyvideo-20261202.dump")
    before = table_checksums(staging.dsn)
    result = runbook("drill", "restore-test", "--target", "env", "--allow-drills", "staging",
                     "--reports", str(tmp_path / "reports"), cwd=tmp_path,
                     env=staging.env(RUNBOOK_BACKUP_LOCATION="s3://staging-unversioned/offsite"))
    assert result.returncode == 0, result.stdout[-3000:]
    record = records(tmp_path / "reports")["restore-test"]
    assert record["verdict"] == "pass"
    assert record["evidence"]["backup"]["origin"] == (
        "s3://staging-unversioned/offsite/legacyvideo-20261202.dump")
    assert table_checksums(staging.dsn) == before


def test_the_restore_test_runs_on_production_only_with_allow_operations(
        staging: Staging, tmp_path: Path) -> None:
    """Read-only: production takes it with --allow-operations production; no other drill."""
    production = staging.env(RUNBOOK_ENVIRONMENT="production")
    refused = runbook("drill", "restore-test", "--target", "env", "--reports",
                      str(tmp_path / "refused"), cwd=tmp_path, env=production)
    assert refused.returncode == 3, refused.stdout[-2000:]
    assert "--allow-operations production" in refused.stdout + refused.stderr
    before = table_checksums(staging.dsn)
    allowed = runbook("drill", "restore-test", "--target", "env", "--allow-operations",
                      "production", "--reports", str(tmp_path / "allowed"), cwd=tmp_path,
                      env=production)
    assert allowed.returncode == 0, allowed.stdout[-3000:]
    assert records(tmp_path / "allowed")["restore-test"]["environment"] == "production"
    assert table_checksums(staging.dsn) == before
    other = runbook("drill", "accidental-deletion", "--target", "env", "--allow-operations",
                    "production", "--reports", str(tmp_path / "other"), cwd=tmp_path,
                    env=production)
    assert other.returncode == 3, other.stdout[-2000:]
    assert not (tmp_path / "other" / "drills").exists() or not records(tmp_path / "other")


KILLED = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from runbook.drills import catalog  # registers every fault
    from runbook.drills.canaries import CanaryLedger, CanaryWriter, audit_writer
    from runbook.drills.context import context_for
    from runbook.drills.faults import get
    from runbook.drills.guard import Guard
    from runbook.targets import RunSpec

    ledgers = Path(sys.argv[1])
    spec = RunSpec.choose("env", home=Path(sys.argv[2]))
    guard = Guard.arm(ledgers, spec)
    context = context_for(spec)
    params = {"drill_id": "killedmidway"}
    writer = CanaryWriter(CanaryLedger("killedmidway"),
                          audit_writer(context.target, context.timeouts, "killedmidway"), 0.01)
    writer.start(limit=3)
    assert writer.wait_idle(30)
    writer.pause()
    guard.record("dr-canary-rows-deleted", params)
    get("dr-canary-rows-deleted", context.platform.name).inject(context, params)
    writer.resume(limit=2)   # canaries written after the fault: what a crash would leave
    assert writer.wait_idle(30)
    print("injected", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)   # dies before any finally could clean up
""")


def test_a_drill_killed_on_a_real_target_leaves_it_as_found_through_its_guard(
        staging: Staging, tmp_path: Path) -> None:
    """SIGKILL after the canaries were written and deleted: the guard, a process of its own,
    removes what the drill left in the staging database."""
    before = table_checksums(staging.dsn)
    drill = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path), str(staging.home)],
                           env=staging.env(), capture_output=True, text=True, timeout=120,
                           check=False)
    assert drill.returncode == -signal.SIGKILL, drill.stderr
    assert "injected" in drill.stdout
    assert wait_until(lambda: table_checksums(staging.dsn) == before, timeout=30,
                      interval=0.2).ok
    assert wait_until(lambda: not list(tmp_path.glob("*.json")), timeout=10).ok
    log = next(tmp_path.glob("*.log")).read_text()
    assert "reverted dr-canary-rows-deleted: ok" in log, log
