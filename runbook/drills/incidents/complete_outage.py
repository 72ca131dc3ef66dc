"""Disaster Recovery > Data Loss Scenarios > Complete Infrastructure Loss: the "Complete
outage" row of the Recovery Time Objectives (4 hours, 24 hours of data).

``dr-infrastructure-lost``: ``Sandbox.destroy()``: every process, the data, the state
directory, the in-memory S3 objects (the backup storage, the off-site copies, survives).
The runbook's steps: provision new infrastructure (a new sandbox with the stored secrets),
restore the database from the backup, redeploy the API and worker, update DNS (the target
repointed to the new ports), validate data integrity. The runbook's steps never mention S3
objects: the drill restores them from its own backup copy and notes the gap. The revert is
the same rebuild (idempotent), run by the guard if the drill dies.
"""

from __future__ import annotations

from pathlib import Path

from runbook.drills import dr_storage
from runbook.drills.canaries import (
    CanaryReport,
    assess,
    audit_writer,
    put_s3_canary,
    remove_s3_canaries,
    s3_prefix,
    surviving_keys,
)
from runbook.drills.dr_procedures import (
    act,
    backup_restored,
    forget_drill,
    provision,
    redeploy,
    restore_database,
    restore_objects,
    summary,
)
from runbook.drills.engine import Evidence
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.incidents.disaster import SECTION, DisasterIncident
from runbook.drills.incidents.steps import StepLog, output
from runbook.platforms.base import chained, library_call
from runbook.probes import storage as s3_probe
from runbook.results import Activity
from runbook.sandbox import Sandbox


@fault("dr-infrastructure-lost",
       "the whole sandbox destroyed: processes, database, S3 objects, state directory")
class InfrastructureLost:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        sandbox = Sandbox(context.home)

        def body() -> tuple[bool, str, str]:
            sandbox.destroy()
            return True, f"sandbox in {sandbox.layout.root} destroyed (backup storage kept)", ""

        return act(context, "lose the infrastructure",
                   library_call("runbook.sandbox.Sandbox.destroy"), body)

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        def body() -> tuple[bool, str, str]:
            copy = dr_storage.OffsiteCopy.load(Path(str(params["storage"])))
            steps = [provision(context, copy)]
            if not steps[0].ok:
                return summary(steps)
            fresh = context.refreshed()
            steps.append(restore_database(fresh, copy.backup)[0])
            steps.append(restore_objects(fresh, copy)[0])
            steps.extend(redeploy(fresh))
            steps.append(backup_restored(fresh))
            steps.append(forget_drill(fresh, params))
            return summary(steps)

        return act(context, "rebuild the infrastructure from backup storage",
                   chained(library_call("runbook.sandbox.Sandbox.up"),
                              library_call("runbook.sandbox.backups.restore_backup")), body)


class CompleteOutage(DisasterIncident):
    name = "complete-outage"
    section = f"{SECTION} > Data Loss Scenarios > Complete Infrastructure Loss"
    scenario = "Complete outage"
    fault = "dr-infrastructure-lost"
    description = ("the whole sandbox destroyed; provisioned again, database and objects"
                   " restored from off-site copies, services redeployed, the target"
                   " repointed")
    sandbox_only = "it destroys and re-creates the whole deployment"
    #: The off-site copies ``prepare`` made (backup, objects, secrets).
    offsite: dr_storage.OffsiteCopy
    notes = ("the runbook's Complete Infrastructure Loss steps never mention S3 objects: the"
             " drill restores them from its own S3 backup copy; add that step to the runbook",)

    def prepare(self) -> tuple[str, Evidence]:
        target, timeouts = self.context.target, self.context.timeouts
        s3 = s3_probe.client(target, timeouts)
        bucket = target.require("S3_BUCKET")

        def offsite() -> None:
            assert self.backup is not None
            objects = [self.run.ledger.add(put_s3_canary(s3, bucket, self.run.drill_id,
                                                         self.run.ledger.next_seq()))
                       for _ in range(2)]
            self.run.facts["s3_canaries"] = [o.evidence() for o in objects]
            copy = dr_storage.copy_offsite(self.sandbox, target, timeouts, self.backup,
                                           self.work)
            self.offsite = copy
            self.run.params["storage"] = str(copy.directory)

        self.backup_with_canaries(audit_writer(target, timeouts, self.run.drill_id),
                                  between=offsite)
        copy = self.offsite
        return (f"off-site copies in {copy.directory}: backup {copy.backup.name},"
                f" {len(copy.objects)} S3 objects, the secrets"), [
            *self.backup_evidence(), {"offsite": copy.evidence()}]

    def runbook_steps(self) -> list[Activity]:
        copy = self.offsite
        old_api = self.context.target.api_url
        book = StepLog(self.context)
        provisioned = book.add(provision(self.context, copy), "1. provision new infrastructure",
                               runbook_says="provision new Railway project")
        if not provisioned.ok:
            return book.activities
        fresh = self.context.refreshed()
        restored, detail = restore_database(fresh, copy.backup)
        book.add(restored, "2. restore database from backup",
                 runbook_says="restore database from backup")
        if detail is not None:
            self.run.facts["restore"] = detail.evidence()
        objects, done = restore_objects(fresh, copy)
        book.add(objects, "(not in the runbook) restore the S3 objects from their backup copy")
        if done is not None:
            self.run.facts["objects_restore"] = done.evidence()
        for step in redeploy(fresh):
            book.add(step, f"3. {step.name}", runbook_says="redeploy API and Worker")
        fresh = fresh.refreshed()  # ADMIN_TOKEN was minted again
        book.add(backup_restored(fresh), "back up the restored database")

        def dns() -> tuple[bool, str, str]:
            self.run.context = fresh
            return True, output(f"target repointed: API_URL {old_api} ->"
                                f" {fresh.target.api_url} (the sandbox's stand-in for the DNS"
                                " change)"), ""

        book.step("4. update DNS to the new infrastructure",
                  library_call("runbook.drills.faults.DrillContext.refreshed"), dns,
                  runbook_says="update DNS to new infrastructure")
        return book.activities

    def integrity(self) -> tuple[bool, str, Evidence]:
        ok, detail, evidence = self.integrity_against_backup()
        objects = dr_storage.check_objects(self.context.target, self.context.timeouts,
                                           self.offsite.objects)
        intact = sum(1 for o in objects if o["intact"])
        objects_ok = intact == len(objects)
        return ok and objects_ok, (f"5. validate data integrity: {detail}; {intact} of"
                                   f" {len(objects)} S3 objects intact (SHA-256 as copied; new"
                                   " version ids)"), [*evidence, {"objects": objects}]

    def data_loss(self) -> CanaryReport | None:
        fault_at = self.run.drill.fault_at
        assert fault_at is not None
        database = [c for c in self.run.ledger.canaries if c.kind != "s3"]
        alive = surviving_keys(self.context.target, self.context.timeouts, self.run.drill_id)
        return assess(self.run.drill_id, database, alive, fault_at,
                      recovery_point=self.backup.taken_at if self.backup else None,
                      failures=self.run.ledger.failures)

    def cleanup(self) -> list[str]:
        problems = super().cleanup()
        s3 = s3_probe.client(self.context.target, self.context.timeouts)
        self.run.facts["canary_versions_removed"] = remove_s3_canaries(
            s3, self.context.target.require("S3_BUCKET"), s3_prefix(self.run.drill_id))
        if self.run.healthy_after:
            dr_storage.remove_offsite(self.work)
        else:
            problems.append(f"the off-site copies in {self.work} are kept: the sandbox was not"
                            " healthy after restoring")
        return problems
