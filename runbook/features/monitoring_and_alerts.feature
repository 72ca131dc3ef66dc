@runbook:monitoring-alerts
Feature: Monitoring & Alerts
  The runbook's key metrics, measured; its recommended alerts, as thresholds. A failed
  critical check pages (exit 1); a failed warning check notifies (exit 4 when nothing worse
  failed).

  The alerts on error rate and response time are about LegacyVideo's users, so their figures
  come from the target's own request counters over the alert's window, never from requests
  the runbook sends: those say "User-Agent: legacyvideo-runbook" and the target labels them
  synthetic, to be left out. The runbook gives no window; these use 5 minutes, the usual
  window of such alerts. The counters are read from a Prometheus server holding the API's
  metrics where one is configured, else from the API's metrics endpoint against an earlier
  reading kept between runs, 5 to 10 minutes old. Where no counters can be read, no
  earlier reading is in range yet, or the users made no requests in the window, the alert
  is unmeasurable: it is not checked, never a pass. The summary lists it with one line
  saying what is missing and what to configure, and off the sandbox a critical alert not
  checked makes the run exit 4 at least.

  @synthetic @info @runbook:key-metrics-to-monitor
  Scenario: The application's key metrics are measured from outside
    What one client sees now: the runbook times requests to the API's health endpoint. It
    says nothing about the application's users, so no alert is judged on it.

    Given the target has the API
    When the on-call engineer measures the API over 20 requests
    Then the request rate, error rate and response time percentiles are recorded

  @synthetic @info @runbook:key-metrics-to-monitor
  Scenario: The application's key metrics are read from its metrics endpoint
    The API's totals since it started, everyone's requests together.

    Given the target has the API
    When the on-call engineer reads the API's metrics endpoint
    Then the request count, error rate and response time percentiles are recorded

  # not quoted: 5 minutes (the alert's window: the runbook gives none)
  @synthetic @runbook:recommended-alerts
  Scenario Outline: The users' error rate over 5 minutes stays under the <tier> threshold of <limit> percent
    The share of the users' requests the API answered with a 5xx status in the last 5
    minutes (http_requests_total by status), the runbook's own requests left out.

    Given the target has the API
    When the on-call engineer reads the API's traffic of the last 5 minutes
    Then at most <limit> percent of the users' requests failed

    @critical
    Examples: page immediately
      | tier     | limit |
      | critical | 5     |

    @warning
    Examples: notify during business hours
      | tier    | limit |
      | warning | 1     |

  # not quoted: 5 minutes (the alert's window: the runbook gives none)
  @synthetic @warning @runbook:recommended-alerts
  Scenario: The users' p99 response time over 5 minutes stays under 2 seconds
    The time within which the API answered 99% of the users' requests in the last 5
    minutes, from its latency histogram (http_request_duration_seconds, interpolated inside
    the bucket as Prometheus does), the runbook's own requests left out.

    Given the target has the API
    When the on-call engineer reads the API's traffic of the last 5 minutes
    Then the users' p99 response time is at most 2 seconds

  @synthetic @warning @runbook:recommended-alerts
  Scenario: Failed email delivery stays under 10 percent
    Given the target has the Redis
    When the on-call engineer counts the email queue's jobs
    Then at most 10 percent of finished email jobs failed

  @synthetic @runbook:recommended-alerts
  Scenario Outline: <resource> usage stays under the <tier> threshold of <limit> percent
    Given the target's platform exposes <resource> usage
    When the on-call engineer reads the platform's resource usage
    Then <resource> usage is at most <limit> percent

    @critical
    Examples: page immediately
      | resource | tier     | limit |
      | disk     | critical | 90    |

    @warning
    Examples: notify during business hours
      | resource | tier    | limit |
      | memory   | warning | 80    |

  @synthetic @info @runbook:recommended-alerts
  Scenario Outline: Failed jobs on the <queue> queue are counted the way BullMQ counts them
    The runbook counts failed jobs with LLEN, but BullMQ keeps them in a sorted set, where
    LLEN fails with WRONGTYPE. The count comes from BullMQ's own API, checked against
    type-aware commands.

    Given the target has the Redis
    When the on-call engineer counts the <queue> queue's jobs
    Then the counts agree with the type-aware commands
    And at most 1000 jobs are waiting

    Examples:
      | queue           |
      | email           |
      | release-process |

  @synthetic @monthly @warning @runbook:alert-channels
  Scenario: The runbook's failures reach a team channel
    "Slack/Discord webhooks for team notifications": the runbook posts each failed tier to
    a webhook. Checked monthly, without posting: that the critical and warning tiers are
    routed to one. Railway's, Vercel's and PagerDuty's own notifications live in those
    services: a person confirms them (Emergency Contacts, quarterly).

    When the on-call engineer reads where the runbook's alerts go
    Then the critical and warning tiers each reach a team channel
