"""Disaster Recovery drills against the real sandbox, on the one drill engine: each record
shows RTO and RPO measured under the limits the Gherkin states (the runbook's table); the
API crash with sub-second resolution and RPO 0 proved by canaries; a restore from a backup
the drill takes between its canaries reports exactly the ones written after it as lost, the
RPO dated by the newest survivor, and fails a tighter RPO; when every canary is lost the RPO
is unmeasured, never a bound; an interrupted drill (SIGINT, SIGTERM) leaves the sandbox
healthy.

The destructive drills (database failure and corruption, complete outage, interruptions)
run on a sandbox of their own; the API crash and the S3 loss on the session's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runbook.config import Target
from runbook.drills import canaries, engine
from runbook.drills.canaries import Canary, CanaryLedger, CanaryWriter, assess
from runbook.drills.catalog import DISASTERS, DRILLS
from runbook.drills.dr_procedures import listens_on
from runbook.drills.faults import DrillContext
from runbook.drills.guard import Guard
from runbook.drills.incidents.disaster import DisasterIncident, DrillOptions, seeded_check
from runbook.drills.incidents.real_target import RealTargetDrill
from runbook.drills.record import DrillRecord, write_record
from runbook.errors import SafetyGateError
from runbook.features import load_features
from runbook.figures import read_figures
from runbook.platforms import platform_for
from runbook.probes.storage import client
from runbook.redact import Redactor
from runbook.sandbox import Sandbox
from runbook.sandbox.backups import latest_backup, take_backup
from runbook.targets import RunSpec
from runbook.timeouts import Timeouts
from tests.conftest import RunningSandbox

#: The repository's root (the source checkout these tests run in).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(120)
T0 = datetime(2024, 1, 17, 10, 0, tzinfo=UTC)


# -- figures table -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def figures(request: pytest.FixtureRequest) -> Iterator[list[DrillRecord]]:
    """Every drill record of this module; the table is printed at the end."""
    records: list[DrillRecord] = []
    yield records
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and records:
        reporter.write_line("")
        reporter.write_line("Disaster recovery drills (sandbox): measured vs the runbook")
        for record in records:
            reporter.write_line(
                f"{record.drill}: RTO {record.rto_s} s of {record.objective.rto_s}, RPO"
                f" {record.rpo_s} s of {record.objective.rpo_s}, lost {record.lost_canaries},"
                f" {record.verdict}")


def _context(box: Sandbox) -> DrillContext:
    target = Target.from_variables("sandbox", box.env(), source="sandbox",
                                   environment="sandbox", platform="sandbox")
    return DrillContext(target, Timeouts(), platform_for(target, allow_changes=True),
                        box.home)


#: The limits each drill's scenario states (features/disaster_recovery.feature).
LIMITS: dict[str, engine.Limits] = {
    "api-crash": engine.Limits(30, 300, 0),
    "database-failure": engine.Limits(30, 1800, 3600),
    "database-corruption": engine.Limits(30, 1800, 3600),
    "s3-data-loss": engine.Limits(30, 1800, 3600),
    "complete-outage": engine.Limits(30, 14400, 86400),
}


def _run(box: Sandbox, name: str, tmp_path: Path, figures: list[DrillRecord], *,
         limits: engine.Limits | None = None, **options: Any) -> DrillRecord:
    incident = DRILLS[name]
    if options:
        incident = type(incident.__name__, (incident,), {"options": DrillOptions(**options)})
    guard = Guard.arm(tmp_path / "guards", RunSpec.sandbox(box.home))
    seen: list[DrillRecord] = []
    try:
        record = engine.run(incident, _context(box), limits=limits or LIMITS[name],
                            guard=guard, steady=seeded_check(), on_record=seen.append,
                            evidence_dir=tmp_path / "detection")
    finally:
        guard.disarm()
    assert seen == [record]
    _no_secrets(box, record, tmp_path)
    figures.append(record)
    return record


def _no_secrets(box: Sandbox, record: DrillRecord, tmp_path: Path) -> None:
    """The record, as written for sign-off, holds no secret of the sandbox."""
    secrets = box.secrets().values()
    json_path, md_path = write_record(record, tmp_path / "drills", Redactor(secrets))
    raw = json.dumps(record.to_json())
    leaked = [s[:4] for s in secrets if s in raw]
    assert not leaked, f"secrets in the record (first characters): {leaked}"
    assert "Signed off by" in md_path.read_text()
    assert json.loads(json_path.read_text())["verdict"] == record.verdict


def _passed(record: DrillRecord) -> None:
    failing = [f"{p.name}: {p.detail}" for p in record.phases if not p.ok]
    assert record.verdict == "pass", (failing, record.notes, record.evidence.get("detection"))
    assert record.rto_s is not None and record.objective.rto_s is not None
    assert record.rto_s <= record.objective.rto_s
    assert record.rpo_s is not None and record.objective.rpo_s is not None
    assert record.rpo_s <= record.objective.rpo_s
    assert record.detected_at is not None and record.fault_at is not None
    assert record.fault_at <= record.detected_at <= record.recovered_at  # type: ignore[operator]
    assert [p.name for p in record.phases][-2:] == ["restore", "clean up"]


def _phase(record: DrillRecord, name: str) -> Any:
    return next(p for p in record.phases if p.name == name)


def test_the_recovery_resolution_falls_back_to_the_detections_red_and_says_so() -> None:
    """A recovery wait whose first check is green (the target came back while the runbook's
    steps ran) has no red of its own: the detection's red bounds the moment, named as such;
    with neither, nothing is claimed."""
    at = T0 + timedelta(seconds=10)
    green = ((T0 + timedelta(seconds=9.5), at, True, ""),)
    timeline = engine._Timeline(green)
    assert timeline.around(at) == {"sampling_s": None, "window_s": None, "last_red": None}
    fallback = timeline.around(at, earlier_red=T0 + timedelta(seconds=2))
    assert fallback["sampling_s"] == 7.5 and fallback["window_s"] == 8.0
    assert str(fallback["last_red"]).startswith("the detection")
    own = engine._Timeline(((T0 + timedelta(seconds=8), T0 + timedelta(seconds=9.2), False,
                             "down"), *green))
    mine = own.around(at, earlier_red=T0 + timedelta(seconds=2))
    assert mine["last_red"] == "the recovery wait" and mine["sampling_s"] == pytest.approx(0.3)


# -- canaries without a sandbox ---------------------------------------------------------------


def _canary(seq: int, seconds: float, kind: str = "audit") -> Canary:
    return Canary(seq, kind, f"k{seq}", T0 + timedelta(seconds=seconds))


def test_no_canary_lost_is_rpo_zero() -> None:
    written = [_canary(n, n * 0.1) for n in range(1, 6)]
    report = assess("d", written, {c.key for c in written}, T0 + timedelta(seconds=1))
    assert (report.rpo_s, report.lost_count, report.survived) == (0.0, 0, 5)


def test_a_lost_suffix_is_counted_exactly_and_dated_by_the_newest_survivor() -> None:
    written = [_canary(n, n) for n in range(1, 8)]
    late = _canary(99, 20)  # after the fault: not the disaster's to lose
    report = assess("d", [*written, late], {"k1", "k2", "k3"}, T0 + timedelta(seconds=10))
    assert report.lost_count == 4 and [c.seq for c in report.lost] == [4, 5, 6, 7]
    assert report.rpo_s == pytest.approx(7.0)  # fault (10) - canary 3 (3)
    assert report.newest_surviving_at == T0 + timedelta(seconds=3)


def test_a_loss_before_survivors_dates_the_rpo_at_the_first_gap() -> None:
    written = [_canary(n, n) for n in range(1, 6)]
    report = assess("d", written, {"k1", "k3", "k4", "k5"}, T0 + timedelta(seconds=6))
    assert report.lost_count == 1 and report.rpo_s == pytest.approx(5.0)


def test_every_canary_lost_leaves_the_rpo_unmeasured_with_the_backup_beside_it() -> None:
    written = [_canary(n, 10 + n) for n in range(1, 4)]
    fault = T0 + timedelta(seconds=20)
    shown = assess("d", written, set(), fault, recovery_point=T0)
    assert shown.lost_count == 3 and shown.rpo_s is None
    assert shown.basis.startswith("unmeasured") and T0.isoformat() in shown.basis
    assert "20.000 s before the fault" in shown.basis
    assert assess("d", written, set(), fault).rpo_s is None
    oldest_lost = assess("d", written, {"k2", "k3"}, fault)
    assert oldest_lost.rpo_s is None and oldest_lost.lost_count == 1
    assert assess("d", [], set(), fault).rpo_s is None


def test_the_writer_pauses_between_writes_and_writes_exactly_a_limit() -> None:
    ledger = CanaryLedger("d")
    busy = threading.Event()

    def write(seq: int) -> Canary:
        busy.set()
        time.sleep(0.02)
        busy.clear()
        return _canary(seq, seq)

    writer = CanaryWriter(ledger, write, interval_s=0.01).start(limit=3)
    assert writer.wait_idle(5) and len(ledger) == 3
    writer.resume()
    assert writer.wait_for(6, 5)
    assert writer.pause() and not busy.is_set()
    paused_at = len(ledger)
    time.sleep(0.1)
    assert len(ledger) == paused_at
    writer.resume(limit=2)
    assert writer.wait_idle(5) and len(ledger) == paused_at + 2
    assert writer.stop() and [c.seq for c in ledger.canaries] == list(range(1, len(ledger) + 1))


# -- refusals ------------------------------------------------------------------------------------


class _NotThere:
    name = "railway"

    def __getattr__(self, item: str) -> Any:
        raise AssertionError(f"a refused drill touched the platform ({item})")


@pytest.mark.parametrize("environment", ["production", "staging"])
@pytest.mark.parametrize("name", sorted(d.name for d in DISASTERS
                                        if issubclass(d, DisasterIncident)))
def test_every_drill_refuses_anything_but_the_sandbox(environment: str, name: str,
                                                      tmp_path: Path) -> None:
    target = Target.from_variables("remote", {"API_URL": "https://api.example.com",
                                              "PLATFORM": "railway"},
                                   source="test", environment=environment)
    context = DrillContext(target, Timeouts(), _NotThere(), tmp_path)  # type: ignore[arg-type]
    seen: list[DrillRecord] = []
    with pytest.raises(SafetyGateError, match="production" if environment == "production"
                       else "sandbox-only"):
        engine.run(DRILLS[name], context, limits=LIMITS[name],
                   guard=_NotThere(), steady=seeded_check(),  # type: ignore[arg-type]
                   on_record=seen.append, evidence_dir=tmp_path)
    assert seen == []


@pytest.mark.parametrize("environment", ["production", "staging"])
@pytest.mark.parametrize("name", sorted(d.name for d in DISASTERS
                                        if issubclass(d, RealTargetDrill)))
def test_the_real_target_drills_refuse_a_target_without_what_they_need(
        environment: str, name: str, tmp_path: Path) -> None:
    """Nothing set but the environment: each is refused in one line naming what it lacks
    (or, writing canaries, production itself), before anything is touched or recorded."""
    target = Target.from_variables("remote", {}, source="test", environment=environment)
    nowhere = _NotThere()
    nowhere.name = "none"  # type: ignore[misc]
    context = DrillContext(target, Timeouts(), nowhere, tmp_path)  # type: ignore[arg-type]
    seen: list[DrillRecord] = []
    with pytest.raises(SafetyGateError, match=rf"refused: the {name} drill (needs|.*never runs"
                                              r" against production|.*PLATFORM)") as refused:
        engine.run(DRILLS[name], context, limits=engine.Limits(30, 1800, 3600),
                   guard=_NotThere(), steady=seeded_check(),  # type: ignore[arg-type]
                   on_record=seen.append, evidence_dir=tmp_path)
    assert "\n" not in str(refused.value) and seen == []


def _seconds(text: str) -> float:
    """``5 minutes``, ``1 hour``, ``0 (no data loss)`` as seconds."""
    amount, _, unit = text.strip().partition(" ")
    scale = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600}
    if not unit or unit.startswith("("):
        return float(amount)
    return float(amount) * scale[unit.split(" ")[0]]


def test_the_process_a_crash_drill_kills_is_the_one_listening_on_the_port() -> None:
    with socket.socket() as server, socket.socket() as bound:
        server.bind(("127.0.0.1", 0))
        server.listen()
        bound.bind(("127.0.0.1", 0))  # bound, not listening
        port, idle = server.getsockname()[1], bound.getsockname()[1]
        assert listens_on(os.getpid(), port)
        assert not listens_on(os.getpid(), idle)
        assert not listens_on(os.getppid(), port)
    assert not listens_on(os.getpid(), port)  # closed


def test_the_drills_limits_are_the_runbooks_table() -> None:
    """The Gherkin's RTO and RPO (the only copy the drills use) are the runbook's table."""
    text = (PROJECT_ROOT / "docs" / "RUNBOOK.md").read_text()
    table = text[text.index("| Scenario | RTO"):].split("\n\n")[0].splitlines()[2:]
    runbook = {row.split("|")[1].strip(): (_seconds(row.split("|")[2]),
                                           _seconds(row.split("|")[3])) for row in table}
    outline = next(s for s in load_features(PROJECT_ROOT / "runbook" / "features")
                   if s.name.startswith("<scenario>"))
    stated = {row["scenario"]: (float(row["rto_s"]), float(row["rpo_s"]))
              for row in outline.examples}
    assert stated == runbook
    assert {(limits.rto_s, limits.rpo_s) for limits in LIMITS.values()} <= set(runbook.values())


# -- on the session's sandbox ------------------------------------------------------------------


def test_api_crash_recovers_within_300_s_measured_to_the_subsecond_with_rpo_zero(
        healthy_sandbox: RunningSandbox, tmp_path: Path, figures: list[DrillRecord]) -> None:
    box = healthy_sandbox.sandbox
    pid = box.status().components["api"].pid
    record = _run(box, "api-crash", tmp_path, figures)
    _passed(record)
    assert record.lost_canaries == 0 and record.rpo_s == 0.0
    report = record.evidence["canaries"]
    assert report["committed_before_fault"] >= 5 and report["survived"] == \
        report["committed_before_fault"]
    resolution = record.evidence["recovery_resolution"]
    # sampled to a fraction of a second: the last red verdict to the first green check's
    # start; the green check's own length (a bcrypt login) is part of the RTO by definition.
    # When the API was back before the wait's first check (the supervisor restarts it; on a
    # loaded machine the runbook's steps can outlast that), the last red is the detection's
    # and the gap is the steps' length, said as such.
    assert resolution["sampling_s"] is not None, resolution
    if resolution["last_red"] == "the recovery wait":
        assert resolution["sampling_s"] < 0.5, resolution
    else:
        follow = _phase(record, "follow the runbook")
        assert resolution["last_red"].startswith("the detection"), resolution
        assert resolution["sampling_s"] <= follow.elapsed_s + 1.0, (resolution, follow)
    assert record.rto_s is not None and record.rto_s > 0
    assert box.status().components["api"].pid != pid
    assert "SIGKILL sent to the API" in _phase(record, "inject").evidence[0]["output"]
    assert _phase(record, "validate data integrity").ok
    print(f"API crash: RTO {record.rto_s:.3f} s (sampled every"
          f" {resolution['sampling_s']:.3f} s, verdict window {resolution['window_s']:.3f} s),"
          f" detected after {record.time_to_detect_s:.3f} s, RPO {record.rpo_s} s")


def test_s3_data_loss_restores_previous_versions_and_reports_the_unversioned_loss(
        healthy_sandbox: RunningSandbox, tmp_path: Path, figures: list[DrillRecord]) -> None:
    box = healthy_sandbox.sandbox
    record = _run(box, "s3-data-loss", tmp_path, figures)
    _passed(record)
    assert record.lost_canaries == 0
    integrity = _phase(record, "validate data integrity").evidence[0]
    actions = {r["action"] for r in integrity["restorations"]}
    assert actions == {"delete marker removed", "previous version copied over"}
    for restored in integrity["restorations"]:
        assert restored["intact"] and restored["restored_sha256"] == restored["sha256"]
        if restored["action"] == "delete marker removed":
            assert restored["restored_version_id"] == restored["original_version_id"]
        else:
            assert restored["restored_version_id"] != restored["original_version_id"]
    unrecoverable = integrity["unrecoverable"]
    assert len(unrecoverable) == 1 and "runbook-canary-unversioned-" in unrecoverable[0]
    assert integrity["unversioned"]["versioning"] == "never enabled"
    assert any("no S3 row" in note for note in record.notes)
    s3 = client(_context(box).target, Timeouts())
    buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert not [b for b in buckets if b.startswith("runbook-canary-")]
    left = s3.list_object_versions(Bucket="legacyvideo-uploads",
                                   Prefix=canaries.s3_prefix(record.evidence["drill_id"]))
    assert not left.get("Versions") and not left.get("DeleteMarkers")


# -- on a sandbox of their own -----------------------------------------------------------------


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox the destructive drills may destroy."""
    box = Sandbox(tmp_path_factory.mktemp("disaster"))
    box.up(timeout=90)
    try:
        yield box
    finally:
        box.destroy()


def test_database_failure_restores_the_backup_within_1800_s_losing_what_came_after_it(
        own: Sandbox, tmp_path: Path, figures: list[DrillRecord]) -> None:
    record = _run(own, "database-failure", tmp_path, figures, canaries_before_backup=2,
                  canaries=4)
    _passed(record)
    # the canaries written after the drill's backup are lost, counted exactly; the RPO is
    # dated by the newest survivor, the backup's time shown beside it
    assert record.lost_canaries == 4
    report = record.evidence["canaries"]
    newest = datetime.fromisoformat(report["newest_surviving_at"])
    assert record.fault_at is not None and record.rpo_s == pytest.approx(
        (record.fault_at - newest).total_seconds())
    assert report["recovery_point"] is not None and "shown beside" in report["rpo_basis"]
    assert "deleted" in _phase(record, "inject").evidence[0]["output"]
    steps = [a["name"] for a in _phase(record, "follow the runbook").evidence]
    assert steps[:2] == ["start the database service", "1. restore from the latest backup"]
    assert "match its figures" in _phase(record, "validate data integrity").detail


@pytest.mark.parametrize("rpo_target, verdict", [(0.05, "fail"), (3600.0, "pass")])
def test_a_backup_lacking_the_last_n_canaries_loses_exactly_n_and_judges_the_rpo(
        own: Sandbox, tmp_path: Path, figures: list[DrillRecord], rpo_target: float,
        verdict: str) -> None:
    lost = 3
    record = _run(own, "database-failure", tmp_path, figures, canaries_before_backup=2,
                  canaries=lost, limits=engine.Limits(30, 1800.0, rpo_target))
    assert record.lost_canaries == lost
    report = record.evidence["canaries"]
    assert report["committed_before_fault"] == 2 + lost and report["survived"] == 2
    assert [c["seq"] for c in report["lost_canaries"]] == [3, 4, 5]
    newest = datetime.fromisoformat(report["newest_surviving_at"])
    assert record.fault_at is not None and record.rpo_s == pytest.approx(
        (record.fault_at - newest).total_seconds())
    assert record.rpo_s is not None and record.rpo_s > 0.05  # the backup alone takes longer
    assert record.verdict == verdict, [(p.name, p.detail) for p in record.phases]
    assert all(p.ok for p in record.phases)  # a fail here is the RPO's alone
    newest_backup = latest_backup(own)  # the drill's own backup (it holds canaries) is gone
    assert newest_backup is not None
    assert newest_backup.reason != f"drill {record.evidence['drill_id']}"


def test_database_corruption_restores_then_replays_the_audit_log(
        own: Sandbox, tmp_path: Path, figures: list[DrillRecord]) -> None:
    record = _run(own, "database-corruption", tmp_path, figures, canaries_before_backup=2,
                  canaries=3)
    _passed(record)
    assert "releases deleted" in _phase(record, "inject").evidence[0]["output"]
    assert _phase(record, "detect").detail.startswith(
        "detected by the drill's own check (database data integrity)")
    assert "public.Release" in _phase(record, "detect").detail
    integrity = _phase(record, "validate data integrity")
    replayed = integrity.evidence[1]["replay"]
    assert replayed["reinserted"] >= 3 and replayed["audit_row_only"]["runbook.canary"] == 3
    assert any("upload-url" in line for line in replayed["cannot_be_replayed"])
    # the one unaudited write (a video through the API) is the only loss
    assert record.lost_canaries == 1
    lost = record.evidence["canaries"]["lost_canaries"]
    assert [c["kind"] for c in lost] == ["api-video"]
    assert "cannot replay: public.Video" in integrity.detail


def test_complete_outage_rebuilds_everything_from_off_site_copies(
        own: Sandbox, tmp_path: Path, figures: list[DrillRecord]) -> None:
    old_api = own.env()["API_URL"]
    record = _run(own, "complete-outage", tmp_path, figures, canaries_before_backup=2,
                  canaries=3)
    _passed(record)
    assert (record.objective.rto_s, record.objective.rpo_s) == (14400, 86400)
    steps = [a["name"] for a in _phase(record, "follow the runbook").evidence]
    assert steps == ["1. provision new infrastructure", "2. restore database from backup",
                     "(not in the runbook) restore the S3 objects from their backup copy",
                     "3. redeploy api", "3. redeploy worker", "3. mint ADMIN_TOKEN",
                     "back up the restored database",
                     "4. update DNS to the new infrastructure"]
    dns = _phase(record, "follow the runbook").evidence[-1]["output"]
    assert f"API_URL {old_api} -> {own.env()['API_URL']}" in dns
    objects = _phase(record, "validate data integrity").evidence[-1]["objects"]
    assert objects and all(o["intact"] for o in objects)
    assert record.lost_canaries == 3
    assert latest_backup(own).reason == "after restore"  # type: ignore[union-attr]
    assert not list((own.home / "backup-storage").glob("*"))  # copies removed once healthy


# -- interruptions -------------------------------------------------------------------------------

DRILL = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from runbook.config import Target
    from runbook.drills import engine
    from runbook.drills.catalog import DRILLS
    from runbook.drills.faults import DrillContext
    from runbook.drills.guard import DrillInterrupted, Guard
    from runbook.drills.incidents.disaster import seeded_check
    from runbook.platforms import platform_for
    from runbook.sandbox import Sandbox
    from runbook.targets import RunSpec
    from runbook.timeouts import Timeouts

    home, guards, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    box = Sandbox(home)
    target = Target.from_variables("sandbox", box.env(), source="sandbox",
                                   environment="sandbox", platform="sandbox")
    context = DrillContext(target, Timeouts(), platform_for(target, allow_changes=True), home)
    guard = Guard.arm(guards, RunSpec.sandbox(home))

    def phase(name):
        print("phase", name, flush=True)
        if name == "detect":
            time.sleep(60)   # the signal arrives here, with the fault in

    def record(rec):
        print("record", json.dumps({"verdict": rec.verdict, "notes": list(rec.notes),
              "phases": [[p.name, p.ok, p.detail] for p in rec.phases]}), flush=True)

    try:
        engine.run(DRILLS[name], context, limits=engine.Limits(30, 1800, 3600), guard=guard,
                   steady=seeded_check(), on_record=record, on_phase=phase,
                   evidence_dir=guards / "detection")
    except (KeyboardInterrupt, DrillInterrupted) as exc:
        print("interrupted", type(exc).__name__, flush=True)
    finally:
        guard.disarm()
""")


def _interrupt(own: Sandbox, tmp_path: Path, sig: signal.Signals, name: str
               ) -> tuple[subprocess.Popen[str], list[str]]:
    """Run drill ``name`` in a child process and send it ``sig`` once the fault is in."""
    child = subprocess.Popen([sys.executable, "-c", DRILL, str(own.home), str(tmp_path), name],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    assert child.stdout is not None
    for line in child.stdout:
        lines.append(line.rstrip())
        if line.startswith("phase detect"):
            child.send_signal(sig)
            break
    rest, _ = child.communicate(timeout=100)
    lines += rest.splitlines()
    return child, lines


def _healthy_as_backed_up(own: Sandbox, backup: Any) -> None:
    context = _context(own)
    assert seeded_check()(context).ok
    after = read_figures(context.target.require("DATABASE_URL"), Timeouts(),
                         like=backup.figures)
    assert {t: f.rows for t, f in after.tables.items()} == \
        {t: f.rows for t, f in backup.figures.tables.items()}


@pytest.mark.parametrize("sig, name", [(signal.SIGINT, "database-failure"),
                                       (signal.SIGTERM, "database-corruption")])
def test_an_interrupted_drill_leaves_the_sandbox_healthy(
        own: Sandbox, tmp_path: Path, sig: signal.Signals, name: str) -> None:
    backup = take_backup(own, reason="before the interrupted drill")  # the figures to hold
    child, lines = _interrupt(own, tmp_path, sig, name)
    assert child.returncode == 0, "\n".join(lines)
    assert f"interrupted {'KeyboardInterrupt' if sig == signal.SIGINT else 'DrillInterrupted'}" \
        in lines, "\n".join(lines)
    record = json.loads(next(line for line in lines if line.startswith("record "))[7:])
    assert record["verdict"] == "aborted"
    restore = next(p for p in record["phases"] if p[0] == "restore")
    assert restore[1] and restore[2] == "the fault reverted; healthy", restore
    _healthy_as_backed_up(own, backup)
    assert not list(tmp_path.glob("guard-*.json"))  # nothing left for the guard to do


def test_a_killed_drill_is_restored_by_its_guard(own: Sandbox, tmp_path: Path) -> None:
    backup = take_backup(own, reason="before the killed drill")  # the figures to hold
    child, lines = _interrupt(own, tmp_path, signal.SIGKILL, "database-failure")
    assert child.returncode == -signal.SIGKILL, "\n".join(lines)
    assert not [line for line in lines if line.startswith("record ")]  # no finally ran
    deadline = time.monotonic() + 90
    while list(tmp_path.glob("guard-*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    log = "\n".join(p.read_text() for p in tmp_path.glob("guard-*.log"))
    assert "died with faults pending: dr-database-destroyed" in log, log
    assert "reverted dr-database-destroyed: ok" in log, log
    _healthy_as_backed_up(own, backup)

