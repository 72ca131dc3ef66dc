@runbook:common-operations
Feature: Common Operations
  The runbook's everyday operations, done the way it says on the platform the target runs
  on, and verified by their effect. Operations change state reversibly and clean up after
  themselves, also when they fail; they run on the sandbox and on staging, and never on
  production unless the operator passes --allow-operations production.

  Commands not executed as written, and why:
  - Prisma Studio and "railway run --service api sh" are interactive: what the runbook does
    with them (create an admin, write a password hash) is done the way they would do it, a
    row written to the database, and then proved through the API.
  - Run Migration deploys the schema, which is the release pipeline's job: the suite checks
    its result, read-only (every migration applied, none failed or edited).
  - Rollback Migration is an incident decision, and Prisma cannot run here: what its
    "prisma migrate resolve --rolled-back" really does (it undoes nothing) is a documented
    finding in runbook/defects.py, citing Prisma's documentation; no scenario asserts it.
  - "--tail" and "--follow" stream logs forever: the logs of the last hour are read instead.

  # not quoted: 60 seconds (how long a restarted service may take to answer: the runbook gives
  # no limit)
  @operation @runbook:restart-services
  Scenario Outline: Restarting the <service> brings it back healthy
    When the on-call engineer restarts the <service> as the runbook says
    Then the <service> is healthy again within 60 seconds
    And the restart's downtime is recorded

    Examples:
      | service |
      | api     |
      | worker  |
      | web     |

  @synthetic @runbook:view-logs
  Scenario Outline: The <service>'s logs of the last hour can be read
    When the on-call engineer reads the <service>'s logs since 1h
    Then the logs are retrieved and their error lines counted

    Examples:
      | service |
      | api     |
      | worker  |
      | web     |

  @synthetic @runbook:database-operations
  Scenario: Every migration is applied and none failed
    The runbook's Run Migration deploys pending migrations; this checks, read-only, that
    there are none, that none failed (a failed one blocks every deploy) and that no applied
    migration was edited afterwards.

    Given the target has the Database
    When the on-call engineer checks the migration status
    Then every expected migration is applied and none failed or was modified

  @operation @runbook:database-operations
  Scenario: A backup exported and imported into a scratch database is identical
    The runbook's Database Backup: the export (pg_dump) and the import, into a scratch
    database, never the target's own; every table compared by row count and checksum in
    primary-key order; the scratch database dropped whatever happens.

    Given the target has the Database
    When the on-call engineer exports a backup and imports it into a scratch database
    Then every table has the same rows and checksums in both
    And the scratch database is gone

  @operation @runbook:user-management
  Scenario: An admin created as the runbook describes can use the admin API
    When the on-call engineer creates an admin user as the runbook describes
    Then the new admin's token is accepted by the admin API
    When the on-call engineer removes the canary admin
    Then the canary admin is gone

  @operation @runbook:user-management
  Scenario: A locked account cannot log in until it is unlocked
    Given a canary admin
    And a canary user
    When the admin locks the user's account with the runbook's request, then unlocks it
    Then the user could not log in while locked and can log in again

  @operation @runbook:user-management
  Scenario: The lock request is refused without an admin's token
    Given a canary admin
    And a canary user
    When the lock request is sent without a token and with a non-admin's token
    Then it is refused with 401 and 403 and the user stays unlocked

  @operation @runbook:user-management
  Scenario: A reset password works and the old one no longer does
    Given a canary user
    When the on-call engineer resets the user's password with a cost 12 bcrypt hash
    Then the new password logs in and the old one does not

  @synthetic @runbook:queue-management
  Scenario Outline: The <queue> queue's status is read through BullMQ
    The runbook lists keys and counts with LLEN; BullMQ's own counts are read and checked
    against type-aware commands (LLEN for lists, ZCARD for sorted sets).

    Given the target has the Redis
    When the on-call engineer counts the <queue> queue's jobs
    Then the counts agree with the type-aware commands

    Examples:
      | queue           |
      | email           |
      | release-process |

  @operation @runbook-defect @runbook:queue-management
  Scenario: The runbook's LLEN on the failed jobs answers WRONGTYPE
    Runbook defect: "LLEN bull:email:failed" fails, because BullMQ keeps failed jobs in a
    sorted set. The runbook should say: ZCARD bull:email:failed, or the queue's job counts
    from BullMQ.

    Given 2 failed canary jobs on the email queue
    When the on-call engineer counts the failed jobs with the runbook's LLEN
    Then Redis answers WRONGTYPE while BullMQ counts the failed jobs

  # not quoted: the canary queue (made for the scenario, never one of the runbook's)
  @operation @runbook-defect @runbook:queue-management
  Scenario: Deleting the failed set leaves the failed jobs' data behind
    Runbook defect: "DEL bull:email:failed" only drops the index; every failed job's hash
    stays in Redis, unreferenced. The runbook should say: clean the failed jobs with BullMQ
    (Queue.clean with grace 0 and type "failed"). Shown on a canary queue, never on a real
    one.

    When the on-call engineer runs the runbook's DEL on a canary queue with 3 failed jobs
    Then BullMQ counts no failed jobs but 3 job hashes are left behind
    And once cleaned the canary queue leaves nothing behind

  @operation @runbook:queue-management
  Scenario: Failed jobs are cleared the BullMQ way, leaving nothing behind
    Given 2 failed canary jobs on the email queue
    When the on-call engineer clears them the BullMQ way
    Then they are gone and no key names them

  @operation @runbook:queue-management
  Scenario: Failed jobs are retried the BullMQ way
    Given 2 failed canary jobs on the email queue
    When the on-call engineer retries them the BullMQ way
    Then they leave the failed set

  @operation @runbook-defect @runbook:queue-management
  Scenario: Restarting the worker does not retry failed jobs
    Runbook defect: "Restart worker (will retry failed jobs automatically)". A restarted
    BullMQ worker takes back stalled active jobs only; failed jobs stay failed. The runbook
    should say: retry failed jobs with BullMQ (Job.retry or Queue.retryJobs).

    Given 2 failed canary jobs on the email queue
    When the on-call engineer restarts the worker as the runbook says to retry them
    Then the restarted worker processes new jobs but the failed jobs stay failed
