@runbook:emergency-contacts
Feature: Emergency Contacts
  Who to call when the runbook is not enough. The runbook's template leaves "[Name] -
  [Contact]" for the on-call schedule and "[Phone/Email]" for the vendors: a check reads the
  section and fails while any is still a placeholder. Whether the people named still answer,
  and the platforms' own notifications are on, only a person can confirm, each quarter.

  @synthetic @monthly @warning
  Scenario: The on-call schedule and vendor contacts are filled in
    When the on-call engineer reads the runbook's emergency contacts
    Then every on-call and vendor contact is filled in, none a placeholder

  # not quoted: "Confirm the on-call schedule, the vendors' support contacts and Railway, Vercel and
  # PagerDuty notifications" (the section lists contacts, no step: these words say what a
  # person confirms)
  @manual @quarterly @info
  Scenario: The on-call contacts and platform notifications are confirmed
    Given the runbook step "Confirm the on-call schedule, the vendors' support contacts and Railway, Vercel and PagerDuty notifications" that only a person can take
    Then a person has recorded doing it, with who, when and the evidence
