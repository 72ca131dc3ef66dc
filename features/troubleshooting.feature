@runbook:troubleshooting
Feature: Troubleshooting
  The runbook's troubleshooting entries as game days: the symptom produced for real, the
  checks made to name this entry, its commands followed, service restored and timed. Every
  fault is reverted and the target verified healthy afterwards, whatever happens.

  @drill @runbook:api-returns-500-error
  Scenario: Game day: the API lost an environment variable
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "api-500-missing-variable" game day
    Then the synthetic checks detected it, naming the runbook's "Troubleshooting > API Returns 500 Error"
    And following the runbook's steps restored service within 120 seconds
    And the target is healthy again after the drill

  @drill @runbook:api-returns-500-error
  Scenario: Game day: the API lost its database
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "api-500-lost-database" game day
    Then the synthetic checks detected it, naming the runbook's "Troubleshooting > API Returns 500 Error"
    And following the runbook's steps restored service within 120 seconds
    And the target is healthy again after the drill

  @drill @runbook:worker-not-processing-jobs
  Scenario: Game day: the worker is stopped while jobs arrive
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "worker-not-processing" game day
    Then the synthetic checks detected it, naming the runbook's "Troubleshooting > Worker Not Processing Jobs"
    And following the runbook's steps restored service within 120 seconds
    And the target is healthy again after the drill

  @drill @runbook:invalid-or-expired-token-errors
  Scenario: Game day: API_SECRET differs between the API and the worker
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "invalid-token" game day
    Then the synthetic checks detected it, naming the runbook's "Troubleshooting > "Invalid or Expired Token" Errors"
    And following the runbook's steps restored service within 120 seconds
    And the target is healthy again after the drill

  @drill @runbook:slow-query-performance
  Scenario: Game day: a query runs far over the threshold
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "slow-query-performance" game day
    Then the synthetic checks detected it, naming the runbook's "Troubleshooting > Slow Query Performance"
    And following the runbook's steps restored service within 120 seconds
    And the target is healthy again after the drill
