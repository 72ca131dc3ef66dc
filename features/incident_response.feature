@runbook:incident-response
Feature: Incident Response
  The runbook's incidents, starting with the checks that catch them early: the steps the
  runbook gives for upload failures and e-mail not sending, run before anyone complains.

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
