@runbook:maintenance-tasks
Feature: Maintenance Tasks
  The runbook's maintenance checklists, each item a check run at its cadence: "runbook check
  --cadence weekly" runs the weekly checks and lists the weekly manual items (daily, monthly
  and quarterly likewise); the every-few-minutes synthetic run leaves them out. The checks are
  read-only. One that fails names the item that is due and what to do; one whose last pass is
  older than its cadence is reported as expired. Items only a person can do are manual: a
  person records doing them (runbook manual record "<scenario>" --by ... --evidence ...) and
  the record stands for the item's cadence; unrecorded or older, the item shows as expired
  (due), which does not change the exit code.

  Where the figures come from. Error rates: the platform's logs of the last day, the share of
  request lines answered 5xx. E-mail delivery: BullMQ's own sets of finished e-mail jobs,
  counted by when each finished (Resend's dashboard shows bounces the runbook cannot read).
  Audit log: read-only queries of the AuditLog table; failed logins against the runbook's own
  canary accounts (runbook-canary-<hex>@...) are not counted, they are the runbook proving a
  lock or a rotation works, and the data breach game day removes the attack it plants (from
  the documentation address 203.0.113.66) when it restores. Secret ages: a variable per
  secret, RUNBOOK_<NAME>_ROTATED_AT=YYYY-MM-DD (e.g. RUNBOOK_API_SECRET_ROTATED_AT), set in
  the scheduler's environment when the secret is rotated; on the sandbox, its own record of
  when it generated each secret; no secret value is ever read. Table maintenance: the
  database's statistics (pg_stat_user_tables) against autovacuum's own thresholds, so tables
  with little change pass. DR drills: the drill records in the reports' drills/ directory,
  verified against their ledger.

  Dependency updates are manual, weekly for security updates and monthly for the rest. The
  manifest and lockfile live in LegacyVideo's repository, not in the deployed target the
  runbook checks, and which updates matter is known from an advisory database on the network
  (Dependabot or Renovate, pnpm audit in that repository's CI): a check here would read
  nothing, or make every scheduled run depend on a third-party service. The person who
  reviews the advisories and merges the updates records the pull request as evidence.

  @synthetic @daily @warning @runbook:daily
  Scenario: Error rates in the API's logs of the last day stay under 1 percent
    "Check error rates in logs", against the warning threshold of the recommended alerts.
    Logs that hold no request line have no rate to measure: the check is skipped, saying so.

    When the on-call engineer reads the error rate in the api's logs of the last day
    Then at most 1 percent of the requests in them were answered 5xx

  @synthetic @daily @warning @runbook:daily
  Scenario: E-mail jobs of the last day were delivered, at most 10 percent of them failed
    "Verify email delivery (Resend dashboard)", against the warning threshold of the
    Recommended Alerts for failed email delivery. A day without e-mail has nothing failed.

    Given the target has the Redis
    When the on-call engineer counts the e-mail jobs finished in the last day
    Then at most 10 percent of them failed

  # not quoted: 80 percent (the runbook's Daily item gives no limit and its Recommended Alerts page
  # at 90 percent: the daily check warns before that, at the memory warning's 80)
  @synthetic @daily @warning @runbook:daily
  Scenario: Disk usage stays under 80 percent
    "Monitor disk usage (Railway dashboard)": read where the platform exposes it (the
    sandbox's host); on Railway and Kubernetes the check is skipped, naming the dashboard.

    Given the target's platform exposes disk usage
    When the on-call engineer reads the platform's disk usage
    Then disk usage is at most 80 percent

  # not quoted: 7 days (Weekly, as days), 10 minutes (the suite's own burst window: the runbook
  # gives none)
  @synthetic @weekly @critical @runbook:weekly
  Scenario: No address made a burst of failed logins in the last week
    "Review audit logs for anomalies": many failed logins from one address in a short time
    is password guessing, the first sign of the runbook's Data Breach incident.

    Given the target has the Database
    When the on-call engineer reviews the audit log of the last 7 days for 10 failed logins from one address within 10 minutes
    Then no address made such a burst

  # not quoted: 7 days (Weekly, as days)
  @synthetic @weekly @warning @runbook:weekly
  Scenario: Admin actions of the last week came from known addresses
    "Review audit logs for anomalies": an admin action (locking users, revoking tokens,
    anything an admin did) from an address with no entry but failed logins in the audit log
    before the week is one to explain. Without entries from before the week there is nothing
    to compare with, and the check says so.

    Given the target has the Database
    When the on-call engineer reviews the admin actions of the last 7 days against the addresses seen before
    Then every admin action came from a known address

  @synthetic @weekly @warning @runbook:weekly
  Scenario Outline: Failed jobs on the <queue> queue are reviewed: at most <limit> kept
    "Check failed job queues". BullMQ keeps failed jobs, in a sorted set, until someone
    retries or removes them; a worker restart does not.

    Given the target has the Redis
    When the on-call engineer reviews the <queue> queue's failed jobs
    Then at most <limit> failed jobs are kept on it

    Examples:
      | queue           | limit |
      | email           | 10    |
      | release-process | 10    |

  @synthetic @weekly @critical @runbook:weekly
  Scenario: The database backup status: the newest backup is younger than 1 hour and intact
    "Review database backup status", against the database RPO of the Recovery Time
    Objectives. Where the platform keeps backups out of the runbook's reach (Railway's
    dashboard), the check is skipped, naming where to look.

    Given the target has the Database
    When the on-call engineer checks the age of the newest database backup against 1 hour
    Then the newest backup is recent enough

  @manual @weekly @warning @runbook:weekly
  Scenario: Security updates of the dependencies are applied
    Given the runbook step "Update dependencies (if security updates)" that only a person can take
    Then a person has recorded doing it, with who, when and the evidence

  # not quoted: 31 days (Monthly, as days)
  @synthetic @monthly @warning @runbook:monthly
  Scenario Outline: <secret> was rotated within the last 31 days
    "Rotate secrets (API_SECRET, etc.)". For DATABASE_URL and REDIS_URL, the password in
    them.

    When the on-call engineer checks the age of <secret> against 31 days
    Then it was rotated recently enough

    Examples:
      | secret                |
      | API_SECRET            |
      | ADMIN_TOKEN           |
      | RESEND_API_KEY        |
      | AWS_SECRET_ACCESS_KEY |
      | DATABASE_URL          |
      | REDIS_URL             |

  # not quoted: 90 days (the suite's default retention: the runbook gives none)
  @synthetic @monthly @warning @runbook:monthly
  Scenario: No audit log entry is older than the retention period
    "Review and archive old audit logs": entries older than the retention period should have
    been exported to the archive and removed. The period is 90 days unless
    RUNBOOK_AUDIT_RETENTION_DAYS says otherwise.

    Given the target has the Database
    When the on-call engineer looks for audit log entries older than 90 days
    Then there are none left to archive

  @synthetic @monthly @info @runbook:monthly
  Scenario: Tables that changed were vacuumed and analyzed within the last month
    "Database optimization (VACUUM, ANALYZE)", by hand or by autovacuum.

    Given the target has the Database
    When the on-call engineer reads when each table was last vacuumed and analyzed, allowing 31 days
    Then every table that changed was vacuumed and analyzed in time

  @synthetic @monthly @warning @runbook:monthly @runbook:runbook-updates
  Scenario: The runbook's Next Review date has not passed
    "Review and update documentation": the runbook states when it is due for review.

    When the on-call engineer reads the runbook's Next Review date
    Then the review is not overdue

  @manual @monthly @info @runbook:monthly
  Scenario: Dependency updates are checked
    Given the runbook step "Check for dependency updates" that only a person can take
    Then a person has recorded doing it, with who, when and the evidence

  # not quoted: 92 days (Quarterly, as days)
  @synthetic @quarterly @warning @runbook:quarterly
  Scenario: A disaster recovery drill passed within the quarter
    "Disaster recovery drill": a drill of the runbook's Disaster Recovery section, of this
    very target, passed in the last 92 days. Of this target: the same environment, and the
    same endpoints (the fingerprint of its API and web URLs, its database's and Redis's host,
    port and database, its S3 bucket, region and endpoint; no credential), so a sandbox drill
    never stands for staging or production. Passed: its verdict, recomputed from its phases,
    RTO and RPO against the runbook's objectives, is pass. And its record is the one the drill
    wrote: its bytes match the drill ledger's entry and the ledger's chain is intact. A record
    edited afterwards does not count, and the check names it and says why.

    When the on-call engineer reads the drill records of the last 92 days
    Then a disaster recovery drill passed among them

  @manual @quarterly @warning @runbook:quarterly
  Scenario: Security audit
    Given the runbook step "Security audit" that only a person can take
    Then a person has recorded doing it, with who, when and the evidence

  @manual @quarterly @warning @runbook:quarterly
  Scenario: Penetration testing
    Given the runbook step "Penetration testing" that only a person can take
    Then a person has recorded doing it, with who, when and the evidence

  @manual @quarterly @info @runbook:quarterly
  Scenario: The threat model is reviewed and updated
    Given the runbook step "Review and update threat model" that only a person can take
    Then a person has recorded doing it, with who, when and the evidence

  @manual @quarterly @warning @runbook:quarterly
  Scenario: MASTER_ENCRYPTION_KEY is rotated, with its data migrated
    Given the runbook step "Rotate MASTER_ENCRYPTION_KEY (with data migration)" that only a person can take
    Then a person has recorded doing it, with who, when and the evidence
