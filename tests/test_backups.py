"""Sandbox backups: one at every start and then on a schedule, private files with their
SHA-256 and the figures of the dump's own snapshot, pruned to the newest N; a restore
proved identical to the backup; a damaged backup refused; the backup freshness check.

The schedule and restore tests use their own sandbox (a 1.5 s schedule keeping 3), so the
session's sandbox keeps its data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from runbook.config import Target
from runbook.drills.faults import DrillContext
from runbook.drills.incidents.disaster import seeded_check
from runbook.errors import SandboxError
from runbook.figures import ORDERED_MD5, ROW_HASH_SUMS, Figures, TableFigure, compare, read_figures
from runbook.platforms import platform_for
from runbook.probes.backups import backup_freshness
from runbook.sandbox import Sandbox, backups
from runbook.sandbox.backups import (
    DEFAULT_INTERVAL_S,
    DEFAULT_KEEP,
    INTERVAL_VARIABLE,
    KEEP_VARIABLE,
    BackupInfo,
    backups_dir,
    describe,
    latest_backup,
    list_backups,
    restore_backup,
    sandbox_backups,
    schedule_from_env,
    take_backup,
)
from runbook.timeouts import Timeouts
from tests.conftest import RunningSandbox

pytestmark = pytest.mark.timeout(120)
INTERVAL_S = 1.5
KEEP = 3


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """An own sandbox whose supervisor backs up every 1.5 s and keeps 3."""
    box = Sandbox(tmp_path_factory.mktemp("backups"))
    patch = pytest.MonkeyPatch()
    patch.setenv(INTERVAL_VARIABLE, str(INTERVAL_S))
    patch.setenv(KEEP_VARIABLE, str(KEEP))
    try:
        box.up(timeout=90)
    finally:
        patch.undo()
    try:
        yield box
    finally:
        box.destroy()


@pytest.fixture(scope="module")
def unscheduled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """An own sandbox on the default backup schedule: a test that takes backups, edits
    them and restores them several times keeps them (every 1.5 s, ``scheduled`` prunes
    all but the newest 3, which can be a backup a test is still restoring)."""
    box = Sandbox(tmp_path_factory.mktemp("restores"))
    box.up(timeout=90)
    try:
        yield box
    finally:
        box.destroy()


def _target(box: Sandbox) -> Target:
    return Target.from_variables("sandbox", box.env(), source="sandbox",
                                 environment="sandbox", platform="sandbox")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_started_sandbox_has_a_backup_taken_once_seeded(sandbox: RunningSandbox) -> None:
    found = sandbox_backups(sandbox.sandbox)
    assert found, "the sandbox took no backup at start"
    at_up = [b for b in found if b.reason == "up"]
    assert at_up, [b.reason for b in found]
    first = at_up[-1]
    assert first.verify() == ""
    assert first.figures.tables["public.User"].rows >= 3  # seeded before the backup
    assert first.path.name.endswith("Z.dump")
    assert _mode(first.path) == 0o600 and _mode(first.metadata_path) == 0o600
    assert _mode(backups_dir(sandbox.home)) == 0o700


def test_take_backup_records_time_size_digest_and_figures(sandbox: RunningSandbox) -> None:
    before = time.time()
    info = take_backup(sandbox.sandbox, keep=None)
    assert info.taken_at.timestamp() >= before - 1
    assert info.size_bytes == info.path.stat().st_size > 0
    assert info.verify() == ""
    assert _mode(info.path) == 0o600 and _mode(info.metadata_path) == 0o600
    assert latest_backup(sandbox.sandbox) == info
    assert BackupInfo.load(info.metadata_path) == info
    assert set(info.figures.tables) >= {"public.User", "public.Video", "public.Release",
                                        "public.AuditLog", "public._prisma_migrations"}
    line = describe(info)
    assert info.sha256[:12] in line and str(info.path) in line
    secrets = sandbox.sandbox.secrets().values()
    metadata = info.metadata_path.read_text()
    assert not [s for s in secrets if s in metadata or s in line]
    print(line)


def test_backups_are_listed_newest_first_and_pruned_to_keep(sandbox: RunningSandbox) -> None:
    taken = [take_backup(sandbox.sandbox, keep=None) for _ in range(3)]
    kept = take_backup(sandbox.sandbox, keep=2)
    listed = sandbox_backups(sandbox.sandbox)
    assert [b.path for b in listed] == [kept.path, taken[-1].path]
    assert not taken[0].path.exists() and not taken[0].metadata_path.exists()


def test_the_schedule_comes_from_the_environment() -> None:
    assert schedule_from_env({}) == (DEFAULT_INTERVAL_S, DEFAULT_KEEP, [])
    assert schedule_from_env({INTERVAL_VARIABLE: "60", KEEP_VARIABLE: "4"})[:2] == (60.0, 4)
    interval, keep, problems = schedule_from_env({INTERVAL_VARIABLE: "soon",
                                                  KEEP_VARIABLE: "0"})
    assert (interval, keep) == (DEFAULT_INTERVAL_S, DEFAULT_KEEP)
    assert len(problems) == 2 and INTERVAL_VARIABLE in problems[0]


def test_the_supervisor_backs_up_on_its_schedule_and_keeps_the_newest(
        scheduled: Sandbox) -> None:
    # Until KEEP scheduled backups are kept and more than KEEP were taken: the schedule has
    # then pruned one. The moment the KEEPth is kept, none need have been pruned yet.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        log = scheduled.logs("postgres", lines=400)
        taken = log.count(".dump taken")
        found = sandbox_backups(scheduled)
        if sum(1 for b in found if b.reason == "schedule") >= KEEP and taken > KEEP:
            break
        time.sleep(0.2)
    assert sum(1 for b in found if b.reason == "schedule") >= KEEP, log[-2000:]
    assert len(found) <= KEEP + 1, [b.name for b in found]  # one may be mid-prune
    assert taken > KEEP, "no backup was pruned yet"
    gaps = [(a.taken_at - b.taken_at).total_seconds() for a, b in itertools.pairwise(found)]
    assert all(INTERVAL_S * 0.5 < gap < INTERVAL_S * 4 for gap in gaps), gaps
    print(f"{taken} backups logged, {len(found)} kept, {gaps} s apart")


def test_a_restore_brings_back_exactly_the_backup_and_the_api_serves_it(
        scheduled: Sandbox) -> None:
    target = _target(scheduled)
    dsn = target.require("DATABASE_URL")
    backup = take_backup(scheduled, keep=None)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        releases = conn.execute('SELECT count(*) FROM "Release"').fetchone()
        conn.execute('DELETE FROM "Release"')
        conn.execute('UPDATE "Video" SET "title" = \'lost\'')
    restored = restore_backup(scheduled, backup)
    assert restored.ok, restored.problem
    assert restored.integrity is not None and restored.integrity.matches
    assert [a.name for a in restored.activities] == [
        "create the role if missing", "drop and create the database", "pg_restore",
        "compare with the backup's figures"]
    # Every table read by row hash sums up to the cut-off was read as its rows landed, while
    # pg_restore built the indexes; the rest (here _prisma_migrations, compared whole) after.
    early = sum(t.filtered and t.method == ROW_HASH_SUMS for t in backup.figures.tables.values())
    assert 0 < early < len(backup.figures.tables)
    assert restored.activities[-1].output.endswith(
        f"({early} of them read as their data landed, during pg_restore)"), \
        restored.activities[-1].output
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        assert conn.execute('SELECT count(*) FROM "Release"').fetchone() == releases
        assert conn.execute('SELECT count(*) FROM "Video" WHERE "title" = \'lost\''
                            ).fetchone() == (0,)
    context = DrillContext(target, Timeouts(), platform_for(target, allow_changes=True),
                           scheduled.home)
    assert seeded_check()(context).ok  # no restart: the API connects per request
    secrets = scheduled.secrets().values()
    shown = json.dumps(restored.evidence())
    assert not [s for s in secrets if s in shown]
    print(f"restored {backup.name} in {restored.elapsed_s:.2f} s")


_OLD_ROW = "test-integrity-old-row"

#: Each a way the restored data can differ from what the figures were recorded of: a changed
#: value, a missing row, an extra row (created before the cut-off, so it counts), and a
#: changed value in a table without "createdAt" (compared whole).
TAMPERING = {
    "changed value": ('UPDATE "User" SET "name" = "name" || \'!\''
                      ' WHERE "email" = \'user@legacyvideo.test\'',
                      "public.User: same"),
    "missing row": (f'DELETE FROM "AuditLog" WHERE "id" = \'{_OLD_ROW}\'',
                    "public.AuditLog:"),
    "extra row": ('INSERT INTO "AuditLog" ("id", "action", "createdAt") VALUES'
                  ' (\'test-integrity-extra\', \'runbook.test\', \'2001-01-01\')',
                  "public.AuditLog:"),
    "changed value, unfiltered table": (
        'UPDATE "_prisma_migrations" SET "logs" = \'tampered\''
        ' WHERE "id" = (SELECT min("id") FROM "_prisma_migrations")',
        "public._prisma_migrations: same"),
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_a_restore_whose_data_differs_from_the_figures_fails_naming_the_table(
        unscheduled: Sandbox, how: str) -> None:
    statement, named = TAMPERING[how]
    dsn = _target(unscheduled).require("DATABASE_URL")
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute('INSERT INTO "AuditLog" ("id", "action", "createdAt") VALUES (%s, %s,'
                     " '2000-01-01') ON CONFLICT DO NOTHING", (_OLD_ROW, "runbook.test"))
    recorded = take_backup(unscheduled, keep=None)
    assert all(t.method == ROW_HASH_SUMS for t in recorded.figures.tables.values())
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        assert conn.execute(statement).rowcount == 1
    tampered = take_backup(unscheduled, keep=None)
    # The tampered dump restored, judged against the figures of the untouched data.
    mixed = dataclasses.replace(tampered, figures=recorded.figures)
    try:
        restored = restore_backup(unscheduled, mixed)
        assert not restored.ok
        assert restored.problem.startswith("the restored tables differ from the backup's"
                                           " figures: " + named), restored.problem
        assert restored.integrity is not None
        assert [t.table for t in restored.integrity.tables if not t.ok] == \
            [named.split(":")[0]], restored.problem
        again = restore_backup(unscheduled, recorded)
        assert again.ok, again.problem
    finally:
        restore_backup(unscheduled, recorded)


def test_an_older_backup_with_ordered_md5_figures_is_compared_by_that_method(
        unscheduled: Sandbox) -> None:
    backup = take_backup(unscheduled, keep=None)
    dsn = _target(unscheduled).require("DATABASE_URL")
    # Figures as they were recorded before methods were: ordered md5s, no "method" key.
    ordered = Figures(backup.figures.database, backup.figures.taken_at, backup.figures.cutoff,
                      {n: dataclasses.replace(t, method=ORDERED_MD5)
                       for n, t in backup.figures.tables.items()})
    old = read_figures(dsn, Timeouts(), like=ordered)
    assert compare(backup.figures, old).tables[0].problem().endswith(
        "read the after side with read_figures(like=before)")  # never compared across
    document = json.loads(backup.metadata_path.read_text())
    document["figures"] = old.to_json()
    for table in document["figures"]["tables"].values():
        del table["method"]
    backup.metadata_path.write_text(json.dumps(document))
    loaded = BackupInfo.load(backup.metadata_path)
    assert {t.method for t in loaded.figures.tables.values()} == {ORDERED_MD5}
    assert loaded.figures.tables == old.tables
    restored = restore_backup(unscheduled, loaded)
    assert restored.ok, restored.problem
    assert restored.activities[-1].command[1].endswith(f"({ORDERED_MD5})")
    # Ordered md5s need the primary key's order: none is read before pg_restore has ended.
    assert restored.activities[-1].output.endswith("(0 of them read as their data landed,"
                                                   " during pg_restore)")
    # ... and still catches a difference by that method.
    name = "public.Video"
    wrong = dataclasses.replace(loaded, figures=dataclasses.replace(loaded.figures, tables={
        **loaded.figures.tables,
        name: TableFigure(loaded.figures.tables[name].rows, "0" * 32, True,
                          method=ORDERED_MD5)}))
    failed = restore_backup(unscheduled, wrong)
    assert not failed.ok and f"{name}: same" in failed.problem, failed.problem


def test_figures_with_an_unknown_method_are_refused(tmp_path: Path) -> None:
    document = {"database": "d", "taken_at": "2026-12-02T00:00:00+00:00",
                "cutoff": "2026-12-02T00:00:00+00:00",
                "tables": {"public.T": {"rows": 1, "checksum": "x", "method": "crc8"}}}
    with pytest.raises(ValueError, match="unknown checksum method 'crc8'"):
        Figures.from_json(document)
    del document["tables"]["public.T"]["method"]  # type: ignore[attr-defined]
    assert Figures.from_json(document).tables["public.T"].method == ORDERED_MD5


def test_a_damaged_backup_is_refused_before_anything_is_touched(
        scheduled: Sandbox, tmp_path: Path) -> None:
    backup = take_backup(scheduled, keep=None)
    copy = tmp_path / backup.path.name
    shutil.copy(backup.path, copy)
    raw = bytearray(copy.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    copy.write_bytes(bytes(raw))
    damaged = dataclasses.replace(backup, path=copy)
    dsn = _target(scheduled).require("DATABASE_URL")
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute('INSERT INTO "AuditLog" ("id", "action") VALUES (%s, %s)',
                     ("test-damaged-backup", "runbook.test"))
    try:
        with pytest.raises(SandboxError, match="damaged: sha256"):
            restore_backup(scheduled, damaged)
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            assert conn.execute('SELECT count(*) FROM "AuditLog" WHERE "id" = %s',
                                ("test-damaged-backup",)).fetchone() == (1,)
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute('DELETE FROM "AuditLog" WHERE "id" = %s', ("test-damaged-backup",))


def test_a_dump_pg_restore_cannot_read_fails_the_restore_in_one_line(
        unscheduled: Sandbox, tmp_path: Path) -> None:
    """A dump cut short after it was recorded (its size and SHA-256 recorded of the cut
    file, so the check before touching anything passes): pg_restore fails, and the problem
    is its own error line, not the last of its --verbose progress."""
    good = take_backup(unscheduled, keep=None)
    cut = tmp_path / good.path.name
    raw = good.path.read_bytes()
    cut.write_bytes(raw[: len(raw) * 2 // 3])
    short = dataclasses.replace(good, path=cut, size_bytes=cut.stat().st_size,
                                sha256=hashlib.sha256(cut.read_bytes()).hexdigest())
    assert short.verify() == ""
    try:
        failed = restore_backup(unscheduled, short)
        assert not failed.ok
        assert failed.problem.startswith("pg_restore failed (exit 1): pg_restore: error: "), \
            failed.problem
        assert "\n" not in failed.problem
        assert failed.integrity is None  # nothing compared after a failed restore
        secrets = unscheduled.secrets().values()
        shown = json.dumps(failed.evidence())
        assert not [s for s in secrets if s in shown]
    finally:
        again = restore_backup(unscheduled, good)
    assert again.ok, again.problem


def test_a_restore_past_its_time_limit_is_stopped_and_says_so(
        unscheduled: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """pg_restore is bounded like every other command of the drill: past the limit it is
    killed, the restore fails saying so and compares nothing; a restore after it works."""
    good = take_backup(unscheduled, keep=None)
    monkeypatch.setattr(backups, "COMMAND_TIMEOUT_S", 0.01)
    try:
        stopped = restore_backup(unscheduled, good)
        assert not stopped.ok
        assert "timed out after 0.01 seconds" in stopped.problem, stopped.problem
        assert stopped.integrity is None
        assert [a.name for a in stopped.activities if a.error] == ["pg_restore"]
    finally:
        monkeypatch.undo()
        again = restore_backup(unscheduled, good)
    assert again.ok, again.problem


# -- the freshness check -------------------------------------------------------------------


def _copied_home(tmp_path: Path, backup: BackupInfo) -> Path:
    directory = backups_dir(tmp_path)
    directory.mkdir(parents=True)
    shutil.copy(backup.path, directory / backup.path.name)
    shutil.copy(backup.metadata_path, directory / backup.metadata_path.name)
    return tmp_path


def _home_target(home: Path) -> Target:
    return Target.from_variables("copy", {"PLATFORM": "sandbox", "RUNBOOK_HOME": str(home)},
                                 source="test", environment="sandbox")


def test_freshness_passes_for_a_young_intact_backup(sandbox: RunningSandbox) -> None:
    target = _target(sandbox.sandbox)
    result = backup_freshness(target, Timeouts(), max_age_s=3600)
    assert result.ok, result.problem
    assert result.observed["intact"] is True and result.observed["age_s"] < 3600
    print(result.observed)


def test_freshness_fails_for_an_old_damaged_or_missing_backup(
        sandbox: RunningSandbox, tmp_path: Path) -> None:
    backup = take_backup(sandbox.sandbox, keep=None)
    home = _copied_home(tmp_path / "old", backup)
    time.sleep(0.05)
    old = backup_freshness(_home_target(home), Timeouts(), max_age_s=0.01)
    assert not old.ok and "older than the 0.01 s RPO target" in old.problem
    copy = backups_dir(home) / backup.path.name
    copy.write_bytes(copy.read_bytes()[:-10] + b"0123456789")
    damaged = backup_freshness(_home_target(home), Timeouts(), max_age_s=3600)
    assert not damaged.ok and "damaged" in damaged.problem
    empty = backup_freshness(_home_target(tmp_path / "none"), Timeouts(), max_age_s=3600)
    assert not empty.ok and "no backup at all" in empty.problem
    assert list_backups(tmp_path / "nowhere") == []


def test_freshness_is_unavailable_where_backups_cannot_be_read() -> None:
    railway = Target.from_variables("staging", {"API_URL": "https://api.example.com",
                                                "PLATFORM": "railway"},
                                    source="test", environment="staging")
    result = backup_freshness(railway, Timeouts(), max_age_s=3600)
    assert not result.ok and result.observed["unavailable"] is True
    assert "dashboard" in result.problem and "railway CLI" in result.problem
