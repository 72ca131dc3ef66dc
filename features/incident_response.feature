@runbook:incident-response
Feature: Incident Response
  The runbook's incidents. First the checks that catch them early: the steps the runbook
  gives for upload failures and e-mail not sending, run before anyone complains. Then a game
  day per incident: the fault injected on a green target, the synthetic checks made to
  detect it with the right diagnosis, the runbook's steps followed through the platform,
  service restored, time to detect and time to recover recorded in the drill record. The
  fault is always reverted and the target verified healthy, whatever happens to the drill.
  Where the runbook's steps alone do not restore service, the drill record says what the
  runbook should say.

  @synthetic @critical @runbook:upload-failures
  Scenario: S3 access works with the configured credentials
    The runbook's step 3 lists the bucket; the canary object is written, read back and
    removed, every version of it.

    Given the target has the S3
    When the on-call engineer tests S3 access
    Then the bucket answers with the configured credentials
    When the on-call engineer writes, reads and deletes a canary object
    Then the canary object comes back intact and leaves nothing behind

  @synthetic @critical @runbook:upload-failures
  Scenario: Browsers can upload through presigned URLs
    Given the target has the S3
    When the on-call engineer checks the bucket's CORS configuration
    Then browsers on the web front end may upload to the bucket
    When the on-call engineer uploads a canary through a presigned URL
    Then the presigned upload is stored and cleaned up

  @synthetic @warning @runbook:email-not-sending
  Scenario: Resend accepts the key and the sender's domain is verified
    The runbook's steps 2 and 3, read-only: no mail is sent.

    Given the target has Resend
    When the on-call engineer checks the Resend API key
    Then Resend accepts the key
    When the on-call engineer checks the sender's domain
    Then FROM_EMAIL's domain is verified

  @drill @runbook:service-down
  Scenario: Game day: the API is killed and kept down
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "service-down" game day
    Then the synthetic checks detected it, naming the runbook's "Incident Response > Service Down"
    And following the runbook's steps restored service within 120 seconds
    And the target is healthy again after the drill

  @drill @runbook:database-connection-errors
  Scenario: Game day: PostgreSQL is stopped
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "database-connection-errors" game day
    Then the synthetic checks detected it, naming the runbook's "Incident Response > Database Connection Errors"
    And following the runbook's steps restored service within 120 seconds
    And the target is healthy again after the drill

  @drill @runbook:database-connection-errors
  Scenario: Game day: every database connection is taken
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "connection-limit-exhausted" game day
    Then the synthetic checks detected it, naming the runbook's "Incident Response > Database Connection Errors"
    And following the runbook's steps restored service within 120 seconds
    And the target is healthy again after the drill

  @drill @runbook:high-memory-cpu-usage
  Scenario: Game day: a CPU hog runs inside the API
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "high-cpu" game day
    Then the synthetic checks detected it, naming the runbook's "Incident Response > High Memory/CPU Usage"
    And following the runbook's steps restored service within 120 seconds
    And the target is healthy again after the drill

  @drill @runbook:upload-failures
  Scenario: Game day: the API signs uploads with wrong S3 credentials
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "upload-failures-wrong-credentials" game day
    Then the synthetic checks detected it, naming the runbook's "Incident Response > Upload Failures"
    And following the runbook's steps restored service within 120 seconds
    And the target is healthy again after the drill

  @drill @runbook:upload-failures
  Scenario: Game day: a bucket policy denies access
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "upload-failures-bucket-policy" game day
    Then the synthetic checks detected it, naming the runbook's "Incident Response > Upload Failures"
    And following the runbook's steps restored service within 120 seconds
    And the target is healthy again after the drill

  @drill @runbook:upload-failures
  Scenario: Game day: the bucket's CORS configuration is missing
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "upload-failures-cors" game day
    Then the synthetic checks detected it, naming the runbook's "Incident Response > Upload Failures"
    And following the runbook's steps restored service within 120 seconds
    And the target is healthy again after the drill

  @drill @runbook:email-not-sending
  Scenario: Game day: the worker has an invalid Resend key
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "email-not-sending-invalid-key" game day
    Then the synthetic checks detected it, naming the runbook's "Incident Response > Email Not Sending"
    And following the runbook's steps restored service within 120 seconds
    And the target is healthy again after the drill

  @drill @runbook:email-not-sending
  Scenario: Game day: the worker sends from an unverified domain
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "email-not-sending-unverified-sender" game day
    Then the synthetic checks detected it, naming the runbook's "Incident Response > Email Not Sending"
    And following the runbook's steps restored service within 120 seconds
    And the target is healthy again after the drill

  @drill @runbook:data-breach-security-incident
  Scenario: Game day: accounts are compromised
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "data-breach" game day
    Then the synthetic checks detected it, naming the runbook's "Incident Response > Data Breach / Security Incident"
    And following the runbook's steps restored service within 180 seconds
    And the target is healthy again after the drill

  # What only a person can do in a security incident: the scenario reads back the person's
  # record (runbook manual record "<scenario name>" --by NAME --evidence LINK), valid for a
  # quarter; missing or older, the step is reported as expired (due), not as passed.

  @manual @warning @runbook:data-breach-security-incident
  Scenario: Affected users are notified after a security incident
    Given the runbook step "Notify affected users" that only a person can take
    Then a person has recorded doing it, with who, when and the evidence

  @manual @warning @runbook:data-breach-security-incident
  Scenario: The incident timeline is documented
    Given the runbook step "Document incident timeline" that only a person can take
    Then a person has recorded doing it, with who, when and the evidence

  @manual @info @runbook:data-breach-security-incident
  Scenario: The threat model is updated after the incident
    Given the runbook step "Update threat model" that only a person can take
    Then a person has recorded doing it, with who, when and the evidence
