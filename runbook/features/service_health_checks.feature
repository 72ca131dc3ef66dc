@runbook:service-health-checks
Feature: Service Health Checks
  The runbook's first section: before anything else, the on-call engineer checks that every
  component of LegacyVideo answers as expected. These checks are read-only and bounded in
  time, so they run every few minutes against production and staging.

  # not quoted: 60 seconds (the clock difference allowed: the runbook gives none)
  @synthetic @critical @runbook:quick-health-check @runbook:recommended-alerts
  Scenario: The API reports status ok with a current timestamp
    The runbook's first command: the API's health endpoint answers status ok and the time
    it was asked. A failure here is the "service down" critical alert.

    Given the target has the API
    When the on-call engineer checks the API health
    Then the API reports status ok
    And its timestamp is within 60 seconds of the on-call engineer's clock

  @synthetic @critical @runbook:quick-health-check
  Scenario: The web front end answers HTTP 200
    Given the target has the Web
    When the on-call engineer opens the web front end
    Then the front end answers HTTP 200 with the application's page

  @synthetic @critical @runbook:quick-health-check @runbook:recommended-alerts
  Scenario: The database answers
    The runbook pulls the schema with Prisma; that rewrites the schema file, so the check
    connects and introspects read-only instead. A failure here is the "database connection
    lost" critical alert.

    Given the target has the Database
    When the on-call engineer checks the database
    Then the database answers a query
    When the on-call engineer introspects the database schema read-only
    Then the schema has LegacyVideo's tables and its migrations table

  @synthetic @critical @runbook:quick-health-check
  Scenario: Redis answers PONG
    Given the target has the Redis
    When the on-call engineer pings Redis
    Then Redis answers PONG

  @synthetic @critical @runbook:component-status
  Scenario Outline: The <component> gives the Component Status table's expected response
    The table: API, its health endpoint answers status ok; Database, checked through its
    schema; Redis, ping; Worker, "check logs", done here by asking the queues which workers
    are listening; S3, checked through the SDK.

    Given the target has the <component>
    When the on-call engineer checks the <component> as the Component Status table says
    Then the <component> gives the expected response

    Examples:
      | component |
      | API       |
      | Database  |
      | Redis     |
      | Worker    |
      | S3        |

  @synthetic @critical @runbook:component-status
  Scenario Outline: The worker completes a canary job on the <queue> queue
    A job the worker completes without side effects proves the whole path: Redis, the
    queue, a listening worker. The canary is removed afterwards, pass or fail.

    Given the target has the Worker
    When the on-call engineer sends a canary job through the <queue> queue, allowing 10 seconds
    Then the worker completes the canary job

    Examples:
      | queue           |
      | email           |
      | release-process |
