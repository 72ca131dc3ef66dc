@runbook:service-health-checks
Feature: Service Health Checks
  The runbook's first section: before anything else, the on-call engineer checks that every
  component of LegacyVideo answers as expected. These checks are read-only and bounded in
  time, so they run every few minutes against production and staging.

  @synthetic @critical @runbook:quick-health-check
  Scenario: The API reports status ok with a current timestamp
    The runbook's first command: the API's health endpoint answers status ok and the
    time it was asked.

    Given the target has an API
    When the on-call engineer checks the API health
    Then the API reports status ok
    And its timestamp is within 60 seconds of the on-call engineer's clock
