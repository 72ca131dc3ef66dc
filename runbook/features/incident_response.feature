@runbook:incident-response
Feature: Incident Response
  The runbook's incidents. First the checks that catch them early, run on the schedule with
  the other synthetic checks. Then a game day per incident, on a green target:

  - the fault goes in where the real incident lives (a misconfiguration in the service's
    stored variables, which no restart undoes; a stopped component; a bucket policy);
  - detection is what the SCHEDULE would see: rounds of the scheduled synthetic checks
    (runbook check's own selection) against the faulted target, until one fails naming the
    incident's runbook section; time to detect runs from the fault's first effect to that
    check's failure. A fault no scheduled check names is "not detected by the scheduled
    checks", and the game day fails, naming the missing signal;
  - the runbook's own steps are followed, nothing else (a check's fix counts as its step:
    the credentials it says to verify set right);
  - recovery is the first of three consecutive green end-to-end checks (with the incident's
    own check, where it has one), and the time to restore service is measured from the fault,
    against the limit stated here (the RTO table's row where it has one: API crash 5
    minutes, Database failure 30 minutes; else 2 minutes). Where the runbook's steps do not
    restore service, the game day fails, and the record says what the runbook should add; the
    corrected procedure is then applied and checked, which does not make it pass;
  - the fault is always reverted and the target verified healthy, whatever happens.

  The drill record (reports/drills/) is the verdict: the scenario fails exactly when it does.

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

  @synthetic @critical @runbook:upload-failures
  Scenario: A user's upload through the API's presigned URL is stored
    The path users take: the API presigns the upload with its own S3 credentials and the
    browser PUTs it from the web front end's origin. The runbook's S3 checks above use the
    runbook's credentials and cannot see the API's; this one can. S3's error code tells a
    signature refused (the API's credentials) from a permission refused (the bucket's
    policy). The canary user, its video row and every version of the object are removed.

    Given the target has the API, its database and S3
    When the on-call engineer uploads a canary video through the API
    Then the upload is stored and cleaned up

  # not quoted: 1 second (the interval between the two readings of the CPU counters)
  @synthetic @warning @runbook:high-memory-cpu-usage
  Scenario: The API process's CPU stays under 80 percent
    "CPU usage (%)" is one of the runbook's Key Metrics to Monitor, but its Recommended
    Alerts give a threshold for memory only (80 percent, warning) and none for CPU: the same
    80 percent is applied to the API process's CPU (100 percent is one core busy), read
    twice a second apart from the process counters of its own metrics endpoint. An API that
    exposes none fails the check as unmeasurable: an unmeasured figure is not a pass.

    Given the target has the API
    When the on-call engineer measures the API process's CPU over 1 second
    Then its CPU is at most 80 percent

  @synthetic @warning @runbook:email-not-sending
  Scenario: An e-mail the worker sends is delivered
    Users not receiving e-mails, seen before they complain: a real send-email job to a
    canary mailbox through the worker (its RESEND_API_KEY and FROM_EMAIL, not the runbook's),
    then Resend's own record of the e-mail, delivered. The job is removed afterwards.

    Given the target has the worker and Resend
    When the on-call engineer has the worker send a canary e-mail, allowing 10 seconds
    Then the e-mail is sent and delivered

  # not quoted: 15 minutes, 10 minutes (the suite's own window and burst: the runbook gives none)
  @synthetic @critical @runbook:data-breach-security-incident
  Scenario: No address is guessing passwords
    The first sign of a security incident in the audit log, looked for every few minutes
    with the thresholds of the weekly audit review: 10 failed logins from one address within
    10 minutes. Failed logins against the runbook's own canary accounts are left out, as in
    the weekly review: they are the runbook proving a lock works.

    Given the target has the Database
    When the on-call engineer looks for password guessing in the audit log of the last 15 minutes: 10 failed logins from one address within 10 minutes
    Then no address made such a burst

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
    Service is restored within the API crash row of the Recovery Time Objectives.

    Given a canary user for the end-to-end check
    When the on-call engineer runs the "service-down" game day, allowing 60 seconds to detect it and 300 seconds to restore service
    Then the scheduled checks detected it, naming the runbook's "Incident Response > Service Down"
    And following the runbook's steps restored service within that time
    And the target is healthy again after the drill

  @drill @runbook:database-connection-errors
  Scenario: Game day: PostgreSQL is stopped
    Service is restored within the Database failure row of the Recovery Time Objectives.

    Given a canary user for the end-to-end check
    When the on-call engineer runs the "database-connection-errors" game day, allowing 60 seconds to detect it and 1800 seconds to restore service
    Then the scheduled checks detected it, naming the runbook's "Incident Response > Database Connection Errors"
    And following the runbook's steps restored service within that time
    And the target is healthy again after the drill

  @drill @runbook:database-connection-errors
  Scenario: Game day: every database connection is taken
    Service is restored within the Database failure row of the Recovery Time Objectives.

    Given a canary user for the end-to-end check
    When the on-call engineer runs the "connection-limit-exhausted" game day, allowing 60 seconds to detect it and 1800 seconds to restore service
    Then the scheduled checks detected it, naming the runbook's "Incident Response > Database Connection Errors"
    And following the runbook's steps restored service within that time
    And the target is healthy again after the drill

  # not quoted: 120 seconds (no row of the Recovery Time Objectives is this
  # incident's: the game day's own limit)
  @drill @runbook:high-memory-cpu-usage
  Scenario: Game day: a CPU hog runs inside the API
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "high-cpu" game day, allowing 60 seconds to detect it and 120 seconds to restore service
    Then the scheduled checks detected it, naming the runbook's "Incident Response > High Memory/CPU Usage"
    And following the runbook's steps restored service within that time
    And the target is healthy again after the drill

  # not quoted: 120 seconds (no row of the Recovery Time Objectives is this
  # incident's: the game day's own limit)
  @drill @runbook:upload-failures
  Scenario: Game day: the API signs uploads with wrong S3 credentials
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "upload-failures-wrong-credentials" game day, allowing 60 seconds to detect it and 120 seconds to restore service
    Then the scheduled checks detected it, naming the runbook's "Incident Response > Upload Failures"
    And following the runbook's steps restored service within that time
    And the target is healthy again after the drill

  # not quoted: 120 seconds (no row of the Recovery Time Objectives is this
  # incident's: the game day's own limit)
  @drill @runbook:upload-failures
  Scenario: Game day: a bucket policy denies access
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "upload-failures-bucket-policy" game day, allowing 60 seconds to detect it and 120 seconds to restore service
    Then the scheduled checks detected it, naming the runbook's "Incident Response > Upload Failures"
    And following the runbook's steps restored service within that time
    And the target is healthy again after the drill

  # not quoted: 120 seconds (no row of the Recovery Time Objectives is this
  # incident's: the game day's own limit)
  @drill @runbook:upload-failures
  Scenario: Game day: the bucket's CORS configuration is missing
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "upload-failures-cors" game day, allowing 60 seconds to detect it and 120 seconds to restore service
    Then the scheduled checks detected it, naming the runbook's "Incident Response > Upload Failures"
    And following the runbook's steps restored service within that time
    And the target is healthy again after the drill

  # not quoted: 120 seconds (no row of the Recovery Time Objectives is this
  # incident's: the game day's own limit)
  @drill @runbook:email-not-sending
  Scenario: Game day: the worker has an invalid Resend key
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "email-not-sending-invalid-key" game day, allowing 60 seconds to detect it and 120 seconds to restore service
    Then the scheduled checks detected it, naming the runbook's "Incident Response > Email Not Sending"
    And following the runbook's steps restored service within that time
    And the target is healthy again after the drill

  # not quoted: 120 seconds (no row of the Recovery Time Objectives is this
  # incident's: the game day's own limit)
  @drill @runbook:email-not-sending
  Scenario: Game day: the worker sends from an unverified domain
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "email-not-sending-unverified-sender" game day, allowing 60 seconds to detect it and 120 seconds to restore service
    Then the scheduled checks detected it, naming the runbook's "Incident Response > Email Not Sending"
    And following the runbook's steps restored service within that time
    And the target is healthy again after the drill

  # not quoted: 180 seconds (no row of the Recovery Time Objectives is this
  # incident's: the game day's own limit)
  @drill @runbook:data-breach-security-incident
  Scenario: Game day: accounts are compromised
    Given a canary user for the end-to-end check
    When the on-call engineer runs the "data-breach" game day, allowing 60 seconds to detect it and 180 seconds to restore service
    Then the scheduled checks detected it, naming the runbook's "Incident Response > Data Breach / Security Incident"
    And following the runbook's steps restored service within that time
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
