@runbook:disaster-recovery
Feature: Disaster Recovery
  The runbook's recovery objectives, measured. The RTO clock starts when the fault's
  injection starts (its first effect), as for the game days; recovery ends at the first of
  three consecutive green end-to-end checks (health, a login that writes, the user read
  back), not when a process starts. These losses are silent to the scheduled checks (a
  deleted release, an overwritten object): each drill detects its own with a check of the
  data, and the record says so. RPO comes from canary records written at known times: some
  before a backup the drill takes, the rest after it. It is the fault's time minus the
  commit time of the newest canary that survived (before the first one lost), with the
  exact number lost; the backup's snapshot time is shown beside it. When no canary survives,
  the RPO is unmeasured and the drill fails: a bound is not a measurement. Integrity is
  checked table by table (row counts and checksums of every row) and object by object (sha256 and
  version ids).

  Each drill writes its sign-off record to reports/drills/ and attaches it here. The drills
  of the RTO table and of Database Corruption and S3 Data Loss below destroy data and run on
  the sandbox only; the fault is always reverted, whatever happens. The restore test, the
  accidental deletion and the S3 canary drill also run on a real target (staging with
  --allow-drills staging; the restore test, which only reads, also production with
  --allow-operations production): they touch only canary rows and objects and a scratch
  database they create and drop, and prove the target left as found (per-table checksums
  and the bucket's listing equal before and after).
  "Complete Infrastructure Loss" is the "Complete outage" row of the table: the whole
  sandbox destroyed, provisioned again, the database and objects restored from off-site
  copies, API and worker redeployed, the target repointed, data integrity validated.

  @synthetic @runbook:recovery-time-objectives
  Scenario: The newest database backup is younger than the database RPO of 1 hour
    Given the target has the Database
    When the on-call engineer checks the age of the newest database backup against 1 hour
    Then the newest backup is recent enough

  @drill @rto @rpo @runbook:recovery-time-objectives
  Scenario Outline: <scenario>: recovered within <rto> losing at most <rpo>
    When the on-call engineer runs the "<drill>" disaster recovery drill, allowing 30 seconds to detect it, against an RTO of <rto_s> seconds and an RPO of <rpo_s> seconds
    Then the drill's own check detected it
    And service was back within the RTO
    And the data lost is within the RPO
    And the data that survived is intact
    And the target is healthy again after the drill

    Examples:
      | scenario         | drill            | rto        | rpo          | rto_s | rpo_s |
      | API crash        | api-crash        | 5 minutes  | no data      | 300   | 0     |
      | Database failure | database-failure | 30 minutes | 1 hour       | 1800  | 3600  |
      | Complete outage  | complete-outage  | 4 hours    | 24 hours     | 14400 | 86400 |

  @drill @rpo @runbook:data-loss-scenarios
  Scenario: Database corruption: restored from the latest backup, recent transactions replayed from the audit log
    What the audit log does not record (uploads) cannot be replayed: the record names it.
    Its limits are the Database failure row of the Recovery Time Objectives.

    When the on-call engineer runs the "database-corruption" disaster recovery drill, allowing 30 seconds to detect it, against an RTO of 1800 seconds and an RPO of 3600 seconds
    Then the drill's own check detected it
    And service was back within the RTO
    And the data lost is within the RPO
    And the data that survived is intact
    And the target is healthy again after the drill

  @drill @rpo @runbook:data-loss-scenarios
  Scenario: S3 data loss: versioned objects restored, unversioned ones reported unrecoverable
    The runbook's table has no S3 row: the drill is judged against the database's (the
    Database failure row of the Recovery Time Objectives).

    When the on-call engineer runs the "s3-data-loss" disaster recovery drill, allowing 30 seconds to detect it, against an RTO of 1800 seconds and an RPO of 3600 seconds
    Then the drill's own check detected it
    And service was back within the RTO
    And the data lost is within the RPO
    And the data that survived is intact
    And the target is healthy again after the drill

  @drill @rto @rpo @read-only @runbook:recovery-time-objectives @runbook:data-loss-scenarios
  Scenario: Database restore test: the newest backup restores into a scratch database within 30 minutes, at most 1 hour old
    The primary database is declared lost and only read: its newest backup (from
    RUNBOOK_BACKUP_LOCATION, a directory or an S3 prefix, else a fresh pg_dump) is restored
    into a scratch database, validated (LegacyVideo's tables, the migrations table, per-table
    counts and checksums against the backup's own figures) and dropped. Its limits are the
    Database failure row of the Recovery Time Objectives.

    When the on-call engineer runs the "restore-test" disaster recovery drill, allowing 30 seconds to detect it, against an RTO of 1800 seconds and an RPO of 3600 seconds
    Then service was back within the RTO
    And the data lost is within the RPO
    And the data that survived is intact
    And the target is healthy again after the drill
    And the target was left as found

  @drill @rpo @runbook:data-loss-scenarios
  Scenario: Accidental deletion: deleted records restored into a new database, exported and imported back
    The runbook has no procedure of its own for a mistaken DELETE: restoring the whole
    database would undo every write since the backup. Only the drill's canary rows are ever
    deleted; those written after the backup are lost, counted exactly. Its limits are the
    Database failure row of the Recovery Time Objectives.

    When the on-call engineer runs the "accidental-deletion" disaster recovery drill, allowing 30 seconds to detect it, against an RTO of 1800 seconds and an RPO of 3600 seconds
    Then the drill's own check detected it
    And service was back within the RTO
    And the data lost is within the RPO
    And the data that survived is intact
    And the target is healthy again after the drill
    And the target was left as found

  @drill @rpo @runbook:data-loss-scenarios
  Scenario: S3 data loss on canary objects: restored from their versions in the target's own bucket
    A bucket without versioning fails the drill, naming the gap. Objects outside the canary
    prefix are never touched. Its limits are the Database failure row of the Recovery Time
    Objectives.

    When the on-call engineer runs the "s3-canary-loss" disaster recovery drill, allowing 30 seconds to detect it, against an RTO of 1800 seconds and an RPO of 3600 seconds
    Then the drill's own check detected it
    And service was back within the RTO
    And the data lost is within the RPO
    And the data that survived is intact
    And the target is healthy again after the drill
    And the target was left as found

  @drill @rto @rpo @runbook:recovery-time-objectives @runbook:data-loss-scenarios
  Scenario: Complete outage rebuilt in an isolated environment within 4 hours, losing at most 24 hours
    The whole deployment is declared lost and never touched: a fresh stack on this machine
    gets the newest database backup and the bucket's objects, the API and worker are
    redeployed, and the synthetic suite must pass against it. The rebuilt environment is
    destroyed at the end.

    When the on-call engineer runs the "isolated-rebuild" disaster recovery drill, allowing 30 seconds to detect it, against an RTO of 14400 seconds and an RPO of 86400 seconds
    Then service was back within the RTO
    And the data lost is within the RPO
    And the data that survived is intact
    And the target is healthy again after the drill
    And the target was left as found

  @drill @rto @runbook:recovery-time-objectives
  Scenario: API crash through the platform: one API instance replaced, back within 5 minutes
    On staging (--allow-drills staging) with PLATFORM railway or kubernetes: the platform
    kills and replaces one API instance its own way (Kubernetes: one pod of the Deployment
    deleted, the rollout awaited; Railway: railway redeploy --service api). The end-to-end
    check is watched from before the fault: the crash is detected at the first red check,
    recovered at the first of three consecutive greens after it. A replacement no check saw
    (another instance served meanwhile) fails detection, said so: no recovery is signed off
    from an outage nobody saw. Nothing is reverted: the platform's own recovery is the one
    measured, and the API must answer again at the end. The sandbox runs api-crash instead.

    Given a canary user for the end-to-end check
    When the on-call engineer runs the "platform-api-crash" disaster recovery drill through the platform, allowing 30 seconds to detect it, against an RTO of 300 seconds
    Then the drill's own check detected it
    And service was back within the RTO
    And the target is healthy again after the drill
