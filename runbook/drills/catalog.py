"""Every drill the runbook rehearses, by name: the game days (one per incident the runbook
describes) and the disaster recovery drills (its data loss scenarios and RTO table), each
from the module of its runbook section, which holds its fault, the runbook's steps and its
verification. Importing this module registers every fault (``faults.REGISTRY``), which is
what the restoration guard needs to revert one by name.
"""

from __future__ import annotations

from runbook.drills import component_down, service_variables
from runbook.drills.engine import IncidentType
from runbook.drills.incidents import (
    accidental_deletion,
    api_500,
    api_crash,
    complete_outage,
    data_breach,
    database_connection_errors,
    database_corruption,
    email_not_sending,
    high_usage,
    invalid_token,
    isolated_rebuild,
    platform_crash,
    restore_test,
    s3_canaries,
    s3_data_loss,
    service_down,
    slow_query,
    upload_failures,
    worker_not_processing,
)

#: The shared faults (a component held down, a service's stored variable) register here;
#: each incident module registers its own.
SHARED_FAULTS = (component_down, service_variables)

GAME_DAYS: tuple[IncidentType, ...] = (
    service_down.ServiceDown,
    database_connection_errors.DatabaseDown,
    database_connection_errors.ConnectionLimit,
    high_usage.HighCpu,
    upload_failures.WrongCredentials,
    upload_failures.BucketPolicy,
    upload_failures.Cors,
    email_not_sending.InvalidKey,
    email_not_sending.UnverifiedSender,
    data_breach.Breach,
    api_500.MissingVariable,
    api_500.LostDatabase,
    worker_not_processing.WorkerDown,
    invalid_token.SecretMismatch,
    slow_query.SlowQueryIncident,
)
DISASTERS: tuple[IncidentType, ...] = (
    api_crash.ApiCrash,
    database_corruption.DatabaseFailure,
    database_corruption.DatabaseCorruption,
    s3_data_loss.S3DataLoss,
    complete_outage.CompleteOutage,
    restore_test.RestoreTest,
    accidental_deletion.AccidentalDeletion,
    s3_canaries.S3CanaryLoss,
    isolated_rebuild.IsolatedRebuild,
    platform_crash.PlatformApiCrash,
)
#: Every drill by name (``runbook drill``'s Gherkin names them).
DRILLS: dict[str, IncidentType] = {d.name: d for d in (*GAME_DAYS, *DISASTERS)}
