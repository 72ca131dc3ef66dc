"""Records a reviewer can verify: one verdict rule for a record and its JSON, the drill
ledger, ``runbook drill verify`` and ``sign``, and the quarterly check that counts only
verified, passing drills of the target it checks.

Real files and the real command (a subprocess, or Typer's runner where many byte changes are
tried); the sandbox only for the end-to-end run of a real drill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runbook.cli import app
from runbook.config import Target
from runbook.drills import ledger, provenance, quarterly
from runbook.drills.ledger import LEDGER_FILE
from runbook.drills.record import (
    DrillRecord,
    Objective,
    Phase,
    verdict_of_json,
    write_record,
)
from runbook.drills.verify import verify
from runbook.probes import maintenance
from runbook.redact import Redactor
from runbook.timeouts import Timeouts
from tests.conftest import RunningSandbox
from tests.test_cli import CLEAN, outcomes, runbook

ROOT = Path(__file__).resolve().parent.parent
TIMEOUTS = Timeouts()
DR = "Disaster Recovery > Recovery Time Objectives"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
#: The runbook's API crash row: 5 minutes, no data.
API_CRASH = Objective(300, 0)

STAGING = Target.from_variables("staging", {
    "API_URL": "https://api.staging.example.com", "WEB_URL": "https://staging.example.com",
    "DATABASE_URL": "postgresql://lv:staging-db-pw@db.staging.example.com:5432/legacyvideo",
    "REDIS_URL": "redis://:staging-redis-pw@cache.staging.example.com:6379/0",
    "S3_BUCKET": "lv-staging", "S3_REGION": "eu-west-1"},
    source="test", environment="staging", platform="railway")
SANDBOX = Target.from_variables("sandbox", {
    "API_URL": "http://127.0.0.1:41001", "WEB_URL": "http://127.0.0.1:41002",
    "DATABASE_URL": "postgresql://lv:sandbox-db-pw@127.0.0.1:41003/legacyvideo",
    "REDIS_URL": "redis://:sandbox-redis-pw@127.0.0.1:41004/0",
    "S3_BUCKET": "lv-sandbox", "S3_REGION": "us-east-1",
    "S3_ENDPOINT_URL": "http://127.0.0.1:41005"},
    source="test", environment="sandbox", platform="sandbox")
#: Staging moved to another database: same name and environment, other endpoints.
STAGING_MOVED = Target.from_variables("staging", {
    **{"API_URL": "https://api.staging.example.com", "WEB_URL": "https://staging.example.com",
       "DATABASE_URL": "postgresql://lv:staging-db-pw@db2.staging.example.com:5432/legacyvideo",
       "REDIS_URL": "redis://:staging-redis-pw@cache.staging.example.com:6379/0",
       "S3_BUCKET": "lv-staging", "S3_REGION": "eu-west-1"}},
    source="test", environment="staging", platform="railway")


# -- one verdict rule --------------------------------------------------------------------------


def _measured(*, ok: bool = True, rto_s: float | None = 60, rpo_s: float | None = 0,
              objective: Objective = API_CRASH, completed: bool = True) -> DrillRecord:
    """A drill measured as given, at a fixed time."""
    phase = Phase("recover", T0, T0 + timedelta(seconds=5), ok)
    return DrillRecord(
        drill="api-crash", runbook_section=DR, target="t", environment="staging",
        operator="o", host="h", started_at=T0,
        finished_at=T0 + timedelta(minutes=5), objective=objective, phases=(phase,),
        fault_at=T0, recovered_at=None if rto_s is None else T0 + timedelta(seconds=rto_s),
        rpo_s=rpo_s, completed=completed)


@pytest.mark.parametrize(("record", "verdict"), [
    (_measured(), "pass"),
    (_measured(ok=False), "fail"),
    (_measured(rto_s=301), "fail"),
    (_measured(rto_s=None), "fail"),
    (_measured(rpo_s=0.5), "fail"),
    (_measured(rpo_s=None), "fail"),
    (_measured(rpo_s=None, rto_s=None, objective=Objective()), "pass"),
    (_measured(completed=False), "aborted"),
], ids=["pass", "phase failed", "rto over", "rto unmeasured", "rpo over", "rpo unmeasured",
        "no objective", "aborted"])
def test_the_record_and_its_json_give_one_verdict(record: DrillRecord, verdict: str) -> None:
    assert record.verdict == verdict
    document = record.to_json()
    assert verdict_of_json(document) == verdict
    document["verdict"] = "pass" if verdict != "pass" else "fail"
    assert verdict_of_json(document) == verdict, "recomputed, never read back"


def test_a_json_that_is_no_record_is_refused() -> None:
    document = _measured().to_json()
    del document["phases"]
    with pytest.raises(KeyError):
        verdict_of_json(document)
    document = {**_measured().to_json(), "completed": "yes"}
    with pytest.raises(TypeError):
        verdict_of_json(document)


# -- the ledger ----------------------------------------------------------------------------


def _record(target: Target, *, drill: str = "api-crash", days_ago: float = 1,
            ok: bool = True) -> DrillRecord:
    """A finished DR drill of ``target`` that met the runbook's API crash row (or not)."""
    finished = datetime.now(UTC) - timedelta(days=days_ago)
    started = finished - timedelta(minutes=3)
    fault = started + timedelta(seconds=30)
    phases = tuple(Phase(name, started, finished, ok if name == "recover" else True)
                   for name in ("steady state", "inject", "detect", "recover", "restore"))
    return DrillRecord(drill=drill, runbook_section=DR, target=target.describe(),
                       environment=target.environment.value, operator="alice", host="h",
                       started_at=started, finished_at=finished, objective=API_CRASH,
                       phases=phases, fault_at=fault, detected_at=fault + timedelta(seconds=2),
                       recovered_at=fault + timedelta(seconds=40), rpo_s=0.0, lost_canaries=0)


def _write(directory: Path, target: Target, **options: object) -> Path:
    json_path, _ = write_record(_record(target, **options),  # type: ignore[arg-type]
                                directory, Redactor(target.secret_values()), target=target)
    return json_path


def _verify(directory: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["drill", "verify", str(directory)])
    return result.exit_code, result.output


def _flip(path: Path, position: int) -> bytes:
    """Change the byte at ``position`` (negative: from the end); returns the original."""
    data = bytearray(path.read_bytes())
    original = bytes(data)
    data[position] ^= 0x01
    path.write_bytes(bytes(data))
    return original


@pytest.fixture
def drills(tmp_path: Path) -> Path:
    """Three records as drills write them: two of staging (one failed), one of the sandbox,
    the passing staging one signed off."""
    directory = tmp_path / "reports" / "drills"
    signed = _write(directory, STAGING)
    _write(directory, STAGING, drill="database-failure", ok=False)
    _write(directory, SANDBOX, drill="complete-outage")
    result = CliRunner().invoke(app, ["drill", "sign", str(signed), "--by", "bob",
                                      "--evidence", "https://tickets.example.com/DR-7"])
    assert result.exit_code == 0, result.output
    return directory


def test_records_stay_apart_when_a_drill_is_recorded_twice_in_one_second(
        tmp_path: Path) -> None:
    record = _record(STAGING)
    first, _ = write_record(record, tmp_path, Redactor(), target=STAGING)
    second, _ = write_record(replace(record, operator="bob"), tmp_path, Redactor(),
                             target=STAGING)
    assert first != second and second.name.endswith("-api-crash-2.json")
    assert json.loads(first.read_text())["operator"] == "alice"
    assert verify(tmp_path).ok


def test_the_ledger_is_appended_with_one_write_and_fsync(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    calls: list[str] = []
    real_write, real_fsync = os.write, os.fsync

    def write(fd: int, data: bytes) -> int:
        lines = data.count(b"\n")
        calls.append(f"write {lines} line")
        return real_write(fd, data)

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(ledger.os, "write", write)
    monkeypatch.setattr(ledger.os, "fsync", fsync)
    ledger.append(tmp_path / LEDGER_FILE, {"kind": "signed", "record": "r.json",
                                           "record_sha256": "0" * 64, "at": "now"})
    assert calls == ["write 1 line", "fsync"]


# -- verify --------------------------------------------------------------------------------


def test_verify_passes_on_records_as_written(drills: Path) -> None:
    result = runbook("drill", "verify", str(drills), cwd=drills.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    names = sorted(p.name for p in drills.glob("*.json"))
    assert [line.split()[1].rstrip(":") for line in lines[:3]] == names
    assert all(line.startswith("ok ") for line in lines[:3]), lines
    assert any("api-crash.json: pass (staging); signed by bob at" in line for line in lines)
    assert any("database-failure.json: fail (staging); not signed yet" in line
               for line in lines)
    assert lines[-1].startswith("verified 3 records and the ledger")


@pytest.mark.parametrize("position", [0, 1, 100, 0.5, 0.9, -2, -1],
                         ids=["first", "second", "byte 100", "middle", "near the end",
                              "last brace", "last"])
@pytest.mark.parametrize("which", ["api-crash.json", "database-failure.json",
                                   "complete-outage.json", "api-crash.md"])
def test_any_byte_changed_in_a_record_fails_verify_naming_it(
        drills: Path, which: str, position: float) -> None:
    [path] = drills.glob(f"*-{which}")
    size = path.stat().st_size
    at = int(size * position) if isinstance(position, float) else position
    original = _flip(path, at)
    code, output = _verify(drills)
    assert code == 1, output
    record = path.with_suffix(".json").name
    [line] = [line for line in output.splitlines() if record in line and "FAIL" in line]
    assert line.startswith(f"FAIL {record}: "), line
    assert "edited after it was written" in line or "not JSON" in line, line
    path.write_bytes(original)
    assert _verify(drills)[0] == 0, "the same bytes back verify again"


def test_a_stored_verdict_that_its_phases_do_not_give_fails_even_with_a_resealed_ledger(
        drills: Path) -> None:
    """Someone edits a failed drill to say pass and rewrites the ledger to match: the
    verdict is recomputed from the phases and figures, so it is still caught."""
    [path] = drills.glob("*-database-failure.json")
    document = json.loads(path.read_text())
    document["verdict"] = "pass"
    forged = json.dumps(document, indent=2).encode()
    path.write_bytes(forged)
    book = drills / LEDGER_FILE
    lines = [json.loads(line) for line in book.read_text().splitlines()]
    book.unlink()
    for entry in lines:
        if entry["record"] == path.name and entry["kind"] == "recorded":
            entry = {**entry, "record_sha256": ledger.sha256_hex(forged), "verdict": "pass"}
        ledger.append(book, {k: v for k, v in entry.items() if k not in ("prev", "sha256")})
    code, output = _verify(drills)
    assert code == 1, output
    assert f"FAIL {path.name}: its stored verdict is 'pass' but its phases and figures give" \
           " 'fail'" in output


@pytest.mark.parametrize(("line", "position"), [
    (1, 0), (1, 2), (1, 0.5), (1, -1), (2, 30), (2, -5), (4, 0.3), (4, -1)],
    ids=["1 first", "1 key", "1 middle", "1 newline", "2 early", "2 its sha256",
         "4 (signed) middle", "4 (signed) newline, the last byte"])
def test_any_byte_changed_in_a_ledger_entry_fails_verify_naming_the_line(
        drills: Path, line: int, position: float) -> None:
    book = drills / LEDGER_FILE
    data = book.read_bytes()
    starts = [0] + [i + 1 for i, byte in enumerate(data) if byte == ord("\n")]
    start, end = starts[line - 1], starts[line] - 1  # end: the line's newline
    if isinstance(position, float):
        at = start + int((end - start) * position)
    else:
        at = start + position if position >= 0 else end + 1 + position
    original = _flip(book, at)
    code, output = _verify(drills)
    assert code == 1, output
    assert f"ledger.jsonl line {line}" in output, output
    book.write_bytes(original)
    assert _verify(drills)[0] == 0


def test_a_removed_or_inserted_entry_breaks_the_chain(drills: Path) -> None:
    book = drills / LEDGER_FILE
    original = book.read_bytes()
    lines = original.splitlines(keepends=True)
    book.write_bytes(b"".join(lines[:1] + lines[2:]))
    code, output = _verify(drills)
    assert code == 1 and "ledger.jsonl line 2 does not chain to the entry before it" in output
    book.write_bytes(b"".join(lines[:2] + lines[1:2] + lines[2:]))
    assert "ledger.jsonl line 3 does not chain" in _verify(drills)[1]


def test_a_record_not_in_the_ledger_or_removed_from_the_directory_fails(drills: Path) -> None:
    [kept] = drills.glob("*-complete-outage.json")
    (drills / "20260101T000000Z-api-crash.json").write_bytes(kept.read_bytes())
    code, output = _verify(drills)
    assert code == 1
    assert "FAIL 20260101T000000Z-api-crash.json: not in the ledger" in output
    (drills / "20260101T000000Z-api-crash.json").unlink()
    kept.unlink()
    code, output = _verify(drills)
    assert code == 1 and f"records {kept.name}, which is missing" in output


def test_a_torn_last_line_is_reported_and_deleting_it_is_the_repair(drills: Path) -> None:
    """A line cut short is reported; a record written meanwhile is still entered (after it,
    chained to the entry before it), sign refuses while it is there, and deleting it makes
    the ledger whole again."""
    book = drills / LEDGER_FILE
    intact = book.read_bytes()
    torn = b'{"at":"2026-'
    book.write_bytes(intact + torn)
    code, output = _verify(drills)
    assert code == 1 and "FAIL ledger.jsonl line 5 is torn" in output
    later = _write(drills, STAGING, drill="s3-data-loss")
    assert book.read_bytes().startswith(intact + torn + b"\n"), "appended, the fragment kept"
    code, output = _verify(drills)
    assert code == 1 and "FAIL ledger.jsonl line 5 is not a JSON entry" in output
    assert f"ok   {later.name}: pass (staging)" in output
    [signed] = drills.glob("*-api-crash.json")
    before = book.read_bytes()
    refused = runbook("drill", "sign", str(signed), "--by", "carol", cwd=drills)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "the drill ledger does not verify (ledger.jsonl line 5 is not a JSON" \
           in refused.stderr
    assert book.read_bytes() == before
    book.write_bytes(before.replace(torn + b"\n", b""))
    code, output = _verify(drills)
    assert code == 0, output


def test_verify_of_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = runbook("drill", "verify", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"runbook: {tmp_path / 'nowhere'}: no such directory of drill records (the reports'"
        " drills/, e.g. reports/drills)"]
    (tmp_path / "drills" / LEDGER_FILE).mkdir(parents=True)
    unreadable = runbook("drill", "verify", str(tmp_path / "drills"), cwd=tmp_path)
    assert unreadable.returncode == 2
    assert len(unreadable.stderr.strip().splitlines()) == 1
    assert "cannot read the drill ledger" in unreadable.stderr
    default = runbook("drill", "verify", cwd=tmp_path)  # reports/drills
    assert default.returncode == 2 and "reports/drills: no such directory" in default.stderr


# -- sign ----------------------------------------------------------------------------------


def test_sign_appends_an_entry_chained_to_the_last(drills: Path) -> None:
    [path] = drills.glob("*-database-failure.json")
    book = drills / LEDGER_FILE
    before = book.read_text().splitlines()
    result = runbook("drill", "sign", str(path.with_suffix(".md")), "--by", "carol",
                     "--evidence", "https://carol:hunter22@wiki.example.com/review",
                     cwd=drills)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"signed {path.name} by carol" in result.stdout
    after = book.read_text().splitlines()
    assert after[:-1] == before, "appended, nothing rewritten"
    entry = json.loads(after[-1])
    assert entry["kind"] == "signed" and entry["by"] == "carol"
    assert entry["prev"] == json.loads(before[-1])["sha256"]
    assert entry["record"] == path.name
    assert entry["record_sha256"] == ledger.sha256_hex(path.read_bytes())
    assert entry["evidence"] == "https://carol:***@wiki.example.com/review"
    assert "hunter22" not in book.read_text() + result.stdout + result.stderr
    code, output = _verify(drills)
    assert code == 0 and f"{path.name}: fail (staging); signed by carol at" in output


def test_sign_refuses_an_edited_record_and_bad_input(drills: Path) -> None:
    [path] = drills.glob("*-database-failure.json")
    book = drills / LEDGER_FILE
    before = book.read_bytes()
    _flip(path, 10)
    refused = runbook("drill", "sign", str(path), "--by", "carol", cwd=drills)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"runbook: refused: {path.name} does not verify: its"
                                     " bytes differ")
    assert book.read_bytes() == before
    missing = runbook("drill", "sign", str(drills / "nope.json"), "--by", "carol", cwd=drills)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    nobody = CliRunner().invoke(app, ["drill", "sign", str(path), "--by", "  "])
    assert nobody.exit_code == 2 and "--by: name who signs" in nobody.output
    assert book.read_bytes() == before


def test_drill_help_lists_run_sign_and_verify() -> None:
    result = CliRunner().invoke(app, ["drill", "--help"])
    assert result.exit_code == 0
    commands = result.output.split("Commands:")[1].split()
    assert {"run", "sign", "verify"} <= set(commands)


# -- the quarterly check -------------------------------------------------------------------


def test_a_sandbox_drill_never_stands_for_staging(tmp_path: Path) -> None:
    sandbox = _write(tmp_path, SANDBOX)
    result = quarterly.dr_drill_passed(STAGING, TIMEOUTS, tmp_path, within_days=92)
    assert not result.ok
    assert result.problem.startswith("no disaster recovery drill of this target (staging,")
    assert f"not counted: {sandbox.name} (a drill of sandbox, not staging)" in result.problem
    assert result.advice == maintenance.DR_DRILL_ADVICE
    assert quarterly.dr_drill_passed(SANDBOX, TIMEOUTS, tmp_path, within_days=92).ok
    moved = quarterly.dr_drill_passed(STAGING_MOVED, TIMEOUTS, tmp_path, within_days=92)
    assert not moved.ok
    _write(tmp_path, STAGING)
    assert quarterly.dr_drill_passed(STAGING, TIMEOUTS, tmp_path, within_days=92).ok
    moved = quarterly.dr_drill_passed(STAGING_MOVED, TIMEOUTS, tmp_path, within_days=92)
    assert not moved.ok and "a drill of other endpoints" in moved.problem


def test_an_edited_record_does_not_count_and_the_check_says_why(tmp_path: Path) -> None:
    path = _write(tmp_path, STAGING)
    assert quarterly.dr_drill_passed(STAGING, TIMEOUTS, tmp_path, within_days=92).ok
    path.write_text(path.read_text().replace('"operator": "alice"', '"operator": "alicf"'))
    result = quarterly.dr_drill_passed(STAGING, TIMEOUTS, tmp_path, within_days=92)
    assert not result.ok
    assert f"not counted: {path.name} (its bytes differ from those the ledger recorded" \
           " (line 1): edited after it was written)" in result.problem
    assert result.observed["not_counted"][0]["file"] == path.name


def test_a_damaged_ledger_counts_no_record(tmp_path: Path) -> None:
    path = _write(tmp_path, STAGING)
    _flip(tmp_path / LEDGER_FILE, 40)
    result = quarterly.dr_drill_passed(STAGING, TIMEOUTS, tmp_path, within_days=92)
    assert not result.ok and path.name in result.problem
    assert "ledger.jsonl line 1" in result.problem


def test_a_record_without_its_target_counts_for_none(tmp_path: Path) -> None:
    write_record(_record(STAGING), tmp_path, Redactor())
    result = quarterly.dr_drill_passed(STAGING, TIMEOUTS, tmp_path, within_days=92)
    assert not result.ok and "written without its target's fingerprint" in result.problem


def test_only_a_passing_drill_within_the_quarter_counts(tmp_path: Path) -> None:
    _write(tmp_path, STAGING, days_ago=100)
    _write(tmp_path, STAGING, drill="database-failure", ok=False)
    result = quarterly.dr_drill_passed(STAGING, TIMEOUTS, tmp_path, within_days=92)
    assert not result.ok
    assert "the last passing disaster recovery drill of this target (api-crash) finished" \
           " 100 days ago" in result.problem
    _write(tmp_path, STAGING, days_ago=91)
    assert quarterly.dr_drill_passed(STAGING, TIMEOUTS, tmp_path, within_days=92).ok


# -- end to end: a real drill on the sandbox -------------------------------------------------


@pytest.mark.timeout(600)
def test_a_real_drill_records_verify_and_count_for_its_own_target_only(
        sandbox: RunningSandbox, tmp_path: Path) -> None:
    """The API crash DR drill through the scenarios (the record_drill fixture writes its
    record with the target), then verify, then the quarterly check: passed on the sandbox,
    not on a staging target reading the same records."""
    reports = tmp_path / "reports"
    env = {**CLEAN, "RUNBOOK_HOME": str(sandbox.home)}
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "runbook/steps/test_runbook.py", "-m", "drill",
         "-k", "recovered_within_rto and crash", "--target", "sandbox",
         "--runbook-reports", str(reports), "-p", "no:cacheprovider", "--color", "no", "-q"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=540, check=False)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    [path] = (reports / "drills").glob("*-api-crash.json")
    written = json.loads(path.read_text())
    box = Target.from_variables("sandbox", sandbox.env, source="sandbox",
                                environment="sandbox", platform="sandbox")
    assert written["verdict"] == "pass"
    assert written["provenance"]["target"] == {
        "name": "sandbox", "environment": "sandbox", "fingerprint": provenance.fingerprint(box)}
    checked = runbook("drill", "verify", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"ok   {path.name}: pass (sandbox); not signed yet" in checked.stdout

    quarterly = ("check", "--cadence", "quarterly", "-k", "disaster_recovery_drill")
    own = runbook(*quarterly, cwd=tmp_path, env={"RUNBOOK_HOME": str(sandbox.home)})
    assert own.returncode == 0, own.stdout + own.stderr
    assert outcomes(reports) == {"A disaster recovery drill passed within the quarter": "passed"}
    staging = runbook(*quarterly, "--target", "env", cwd=tmp_path, env={
        "RUNBOOK_ENVIRONMENT": "staging", "API_URL": "https://api.staging.example.com",
        "RUNBOOK_HOME": str(tmp_path / "home")})
    assert staging.returncode == 4, staging.stdout + staging.stderr  # @warning
    assert f"not counted: {path.name} (a drill of sandbox, not staging)" in staging.stdout
    assert "Maintenance Tasks > Quarterly: disaster recovery drill" in staging.stdout
