@runbook:service-health-checks
Feature: Service Health Checks
  The runbook's first section: before anything else, the on-call engineer checks that every
  component of LegacyVideo answers as expected. These checks are read-only and bounded in
  time, so they run every few minutes against production and staging.

  @synthetic @critical @runbook:quick-health-check
  Scenario: The API reports status ok with a current timestamp
    The runbook's first command: the API's health endpoint answers status ok and the time
    it was asked.

    Given the target has an API
    When the on-call engineer checks the API health
    Then the API reports status ok
    And its timestamp is within 60 seconds of the on-call engineer's clock

  @synthetic @critical @runbook:quick-health-check
  Scenario: The web front end answers HTTP 200
    Given the target has a web front end
    When the on-call engineer opens the web front end
    Then the front end answers HTTP 200 with the application's page

  @synthetic @critical @runbook:quick-health-check
  Scenario: The database answers
    The runbook pulls the schema with Prisma; that rewrites the schema file, so the check
    connects and introspects read-only instead.

    Given the target has a database
    When the on-call engineer checks the database
    Then the database answers a query
    When the on-call engineer introspects the database schema read-only
    Then the schema has LegacyVideo's tables and its migrations table

  @synthetic @critical @runbook:quick-health-check
  Scenario: Redis answers PONG
    Given the target has Redis
    When the on-call engineer pings Redis
    Then Redis answers PONG
