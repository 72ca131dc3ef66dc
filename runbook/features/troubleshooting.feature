@runbook:troubleshooting
Feature: Troubleshooting
  The runbook's troubleshooting entries: first the scheduled checks that show their
  symptoms, then a game day per entry, as in Incident Response: the fault where the real one
  lives, detected by the scheduled checks naming this entry, the entry's commands followed
  and nothing else, service restored within the stated limit (measured from the fault), or
  the game day fails with what the runbook should add. Every fault is reverted and the target
  verified healthy afterwards, whatever happens.

  @synthetic @critical @runbook:api-returns-500-error
  Scenario: A user can log in and be read back
    The smallest round trip that needs the API, its database and its token signing at once:
    a canary user (made as the runbook makes users) logs in and is read back with its token.
    The API answering a request with a 5xx is this entry's symptom; the canary is removed.

    Given the target has the API and its database
    When the on-call engineer logs in as a canary user and reads it back
    Then the login and the read-back succeed

  @synthetic @warning @runbook:invalid-or-expired-token-errors @runbook:worker-not-processing-jobs
  Scenario: A requested release is processed by the worker
    "Release requests" are among the business metrics of the runbook's Key Metrics to
    Monitor, and the path crosses both services: the API enqueues the release and the
    worker, calling back with a token signed with its own API_SECRET, processes it. A job
    failed with "Invalid or expired token" is the services disagreeing on API_SECRET.
    Everything made is removed afterwards. The worker sends the release's e-mail through
    the e-mail provider, so with the provider not answering no release is requested: its
    e-mail would hang in the worker and fail on the target.

    Given the target has the API, its database and the worker
    When the on-call engineer requests a canary release through the API, allowing 8 seconds
    Then the worker processes the release

  # not quoted: 500 milliseconds (the API's own slow-query logging threshold), 1 second (how long
  # the database is watched)
  @synthetic @warning @runbook:slow-query-performance
  Scenario: No query runs over 500 milliseconds and none waits on a lock
    The runbook finds slow queries in the API's log lines ("query took"), after the fact;
    the database shows them while they run (pg_stat_activity: how long each statement has
    run, and which sessions have waited on a lock as long and on whom; a shorter wait is two
    writers meeting on a row). 500 milliseconds is the API's own slow-query logging
    threshold. A statement is over it only late in its run, so the database is looked at
    several times over a second.

    Given the target has the Database
    When the on-call engineer looks for queries running over 500 milliseconds, watching for 1 second
    Then no query ran over it and none waited on a lock

  @drill @runbook:api-returns-500-error
  Scenario: Game day: the API lost an environment variable
    Service is restored within the API crash row of the Recovery Time Objectives.

    Given a canary user for the end-to-end check
    When the on-call engineer runs the "api-500-missing-variable" game day, allowing 60 seconds to detect it and 300 seconds to restore service
    Then the scheduled checks detected it, naming the runbook's "Troubleshooting > API Returns 500 Error"
    And following the runbook's steps restored service within that time
    And the target is healthy again after the drill

  @drill @runbook:api-returns-500-error
  Scenario: Game day: the API lost its database
    Service is restored within the Database failure row of the Recovery Time Objectives.

    Given a canary user for the end-to-end check
    When the on-call engineer runs the "api-500-lost-database" game day, allowing 60 seconds to detect it and 1800 seconds to restore service
    Then the scheduled checks detected it, naming the runbook's "Troubleshooting > API Returns 500 Error"
    And following the runbook's steps restored service within that time
    And the target is healthy again after the drill

  # not quoted: 120 seconds (no row of the Recovery Time Objectives is this
  # incident's: the game day's own limit)
  @drill @runbook:worker-not-processing-jobs
  Scenario: Game day: the worker is stopped while jobs arrive
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "worker-not-processing" game day, allowing 60 seconds to detect it and 120 seconds to restore service
    Then the scheduled checks detected it, naming the runbook's "Troubleshooting > Worker Not Processing Jobs"
    And following the runbook's steps restored service within that time
    And the target is healthy again after the drill

  # not quoted: 120 seconds (no row of the Recovery Time Objectives is this
  # incident's: the game day's own limit)
  @drill @runbook:invalid-or-expired-token-errors
  Scenario: Game day: API_SECRET differs between the API and the worker
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "invalid-token" game day, allowing 60 seconds to detect it and 120 seconds to restore service
    Then the scheduled checks detected it, naming the runbook's "Troubleshooting > "Invalid or Expired Token" Errors"
    And following the runbook's steps restored service within that time
    And the target is healthy again after the drill

  # not quoted: 120 seconds (no row of the Recovery Time Objectives is this
  # incident's: the game day's own limit)
  @drill @runbook:slow-query-performance
  Scenario: Game day: a query runs far over the threshold
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "slow-query-performance" game day, allowing 60 seconds to detect it and 120 seconds to restore service
    Then the scheduled checks detected it, naming the runbook's "Troubleshooting > Slow Query Performance"
    And following the runbook's steps restored service within that time
    And the target is healthy again after the drill
