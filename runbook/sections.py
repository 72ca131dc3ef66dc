"""The runbook's sections, their tags, and what the runbook says to do when a check fails.

Scenarios carry ``@runbook:<slug>`` where the slug is the section heading made lower-case with
runs of non-alphanumerics turned into one hyphen (``Monitoring & Alerts`` ->
``monitoring-alerts``). The same function maps any runbook's headings, for coverage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


def slugify(heading: str) -> str:
    """``"Database Connection Errors"`` -> ``"database-connection-errors"``."""
    text = heading.strip().lower().replace("'", "").replace('"', "")
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


@dataclass(frozen=True)
class Advice:
    """A runbook subsection and the steps in it the on-call engineer takes next."""

    section: str
    steps: tuple[str, ...]

    def lines(self) -> list[str]:
        return [f"{self.section}: {step}" for step in self.steps]


SERVICE_DOWN = Advice(
    "Incident Response > Service Down",
    (
        "1. check service status (railway status)",
        "2. check logs (railway logs --service api --tail)",
        "3-4. check the database and Redis",
        "5. restart the service (railway restart --service api)",
        "6. if it persists, check the platform dashboard for platform issues",
    ),
)
DATABASE_ERRORS = Advice(
    "Incident Response > Database Connection Errors",
    (
        "1. verify DATABASE_URL (railway variables --service api)",
        "2. check the database service (railway status)",
        "4. check connection limits (max_connections)",
        "5. restart the API (railway restart --service api)",
    ),
)
WORKER_NOT_PROCESSING = Advice(
    "Troubleshooting > Worker Not Processing Jobs",
    (
        "check the worker is running (railway status --service worker)",
        "check its logs (railway logs --service worker --tail)",
        "check the Redis connection (redis-cli -u $REDIS_URL ping)",
        "restart the worker (railway restart --service worker)",
    ),
)
UPLOAD_FAILURES = Advice(
    "Incident Response > Upload Failures",
    (
        "1. verify the S3 credentials (railway variables --service api)",
        "2. check the bucket permissions",
        "3. test S3 access (aws s3 ls s3://$S3_BUCKET --region $S3_REGION)",
        "4. check the CORS configuration",
        "5. review API logs for presigned URL generation errors",
    ),
)
EMAIL_NOT_SENDING = Advice(
    "Incident Response > Email Not Sending",
    (
        "1. check the Resend dashboard for errors",
        "2. verify RESEND_API_KEY (railway variables --service worker)",
        "3. check FROM_EMAIL is verified",
        "4. check the email queue's failed jobs",
        "5. review worker logs (railway logs --service worker)",
    ),
)
API_500 = Advice(
    "Troubleshooting > API Returns 500 Error",
    (
        "check recent logs (railway logs --service api --tail)",
        "common causes: database connection lost, missing environment variable",
        "quick fix: railway restart --service api",
    ),
)
HIGH_USAGE = Advice(
    "Incident Response > High Memory/CPU Usage",
    (
        "1. check the platform's metrics dashboard",
        "2. identify resource-hungry queries in logs",
        "3. check for stuck jobs in queues",
        "4-5. scale vertically or horizontally",
    ),
)
INVALID_TOKEN = Advice(
    'Troubleshooting > "Invalid or Expired Token" Errors',
    (
        "verify API_SECRET matches between services (railway variables --service api |"
        " grep API_SECRET; railway variables --service worker | grep API_SECRET)",
        "if mismatch, update and restart (railway variables --set API_SECRET=... --service"
        " worker; railway restart --service worker)",
    ),
)

#: What to do next when a component's check fails, in the runbook's own order.
NEXT_STEPS: dict[str, tuple[Advice, ...]] = {
    "api": (SERVICE_DOWN, API_500),
    "web": (
        Advice(
            "Common Operations > Restart Services",
            ("Web: trigger a redeploy (vercel --prod); check vercel logs",),
        ),
    ),
    "database": (DATABASE_ERRORS, SERVICE_DOWN),
    "database-backups": (
        Advice(
            "Maintenance Tasks > Weekly",
            (
                "review database backup status: the newest backup must be younger than the"
                " database RPO (1 hour); take one now (railway: the database's Backups tab;"
                " sandbox: runbook sandbox backup) and fix the schedule",
            ),
        ),
    ),
    "database-migrations": (
        Advice(
            "Common Operations > Database Operations",
            (
                "a FAILED migration blocks deploys: fix its cause, then mark it with"
                " npx prisma migrate resolve --rolled-back <migration-name> (or --applied)"
                " and deploy again (railway run --service api pnpm db:migrate:deploy)",
                "a migration MODIFIED after it was applied: restore the applied file;"
                " change the schema only with a new migration",
                "an applied migration is never undone by resolve: write a new migration that"
                " reverses it, after a verified backup",
            ),
        ),
    ),
    "database-schema": (
        Advice(
            "Common Operations > Database Operations",
            (
                "Run Migration: railway run --service api pnpm db:migrate:deploy",
                "check DATABASE_URL points at LegacyVideo's database (railway variables)",
            ),
        ),
    ),
    "redis": (WORKER_NOT_PROCESSING, SERVICE_DOWN),
    "worker": (WORKER_NOT_PROCESSING,),
    "queues": (WORKER_NOT_PROCESSING, EMAIL_NOT_SENDING),
    "s3": (UPLOAD_FAILURES,),
    "email": (EMAIL_NOT_SENDING,),
    "metrics": (HIGH_USAGE,),
    # Narrower advice that probes name in ``Verdict.advice``.
    "s3-credentials": (
        Advice(
            "Incident Response > Upload Failures",
            (
                "1. verify the S3 credentials (railway variables --service api)",
                "2. check the bucket permissions (the runbook's canary needs PutObject,"
                " GetObject, DeleteObject, DeleteObjectVersion, ListBucketVersions on"
                " runbook-canary/)",
                "3. test S3 access (aws s3 ls s3://$S3_BUCKET --region $S3_REGION)",
            ),
        ),
    ),
    "s3-bucket": (
        Advice(
            "Incident Response > Upload Failures",
            (
                "1. verify S3_BUCKET and S3_REGION (railway variables --service api)",
                "3. test S3 access (aws s3 ls s3://$S3_BUCKET --region $S3_REGION)",
            ),
        ),
        Advice(
            "Disaster Recovery > S3 Data Loss",
            ("2. check S3 versioning if enabled",),
        ),
    ),
    "s3-cors": (
        Advice(
            "Incident Response > Upload Failures",
            (
                "4. check the CORS configuration (aws s3api get-bucket-cors --bucket"
                " $S3_BUCKET): allow PUT from the web front end's origin",
            ),
        ),
    ),
    "s3-presign": (
        Advice(
            "Incident Response > Upload Failures",
            (
                "1. verify the S3 credentials (railway variables --service api)",
                "4. check the CORS configuration",
                "5. review API logs for presigned URL generation errors",
            ),
        ),
    ),
    "email-api-key": (
        Advice(
            "Incident Response > Email Not Sending",
            (
                "2. verify RESEND_API_KEY (railway variables --service worker)",
                "1. check the Resend dashboard for errors (is the key revoked?)",
            ),
        ),
    ),
    "email-sender-domain": (
        Advice(
            "Incident Response > Email Not Sending",
            (
                "3. check FROM_EMAIL is verified (Resend dashboard > Domains: the DNS"
                " records of FROM_EMAIL's domain)",
                "6. test email manually via the Resend dashboard",
            ),
        ),
    ),
    # The API answered 5xx to a request (health was fine): not down, failing.
    "api-500": (API_500,),
    # The users' p99 over the alert's window above 2 s (Recommended Alerts).
    "traffic-latency": (
        Advice(
            "Troubleshooting > Slow Query Performance",
            (
                'review slow queries (railway logs --service api | grep "query took")',
                "add database indexes if needed (railway run --service api npx prisma studio)",
            ),
        ),
        HIGH_USAGE,
    ),
    # The alert's figures cannot be had: the failure's line says what to configure.
    "traffic-unmeasurable": (
        Advice(
            "Monitoring & Alerts > Recommended Alerts",
            (
                "the error-rate and p99 alerts are blind until the target's request counters"
                " can be read over the window: do what the failure says (README: What the"
                " target must expose)",
            ),
        ),
    ),
    # A job or request refused with "Invalid or expired token": the services disagree.
    "api-secret": (INVALID_TOKEN,),
    # Upload, e-mail, security and slow-query game days (runbook/drills/incidents/).
    # S3 refused an upload for a reason other than the signature: permissions first.
    "s3-upload-denied": (
        Advice(
            "Incident Response > Upload Failures",
            (
                "2. check the S3 bucket permissions (aws s3api get-bucket-policy --bucket"
                " $S3_BUCKET): an explicit Deny on s3:PutObject refuses every upload,"
                " whoever signed it; remove it",
                "1. verify the S3 credentials (railway variables --service api)",
                "3. test S3 access with a write (a Deny on PutObject leaves aws s3 ls working)",
                "4. check the CORS configuration",
            ),
        ),
    ),
    # A burst of failed logins from one address in the audit log.
    "security-incident": (
        Advice(
            "Incident Response > Data Breach / Security Incident",
            (
                "1. lock all affected user accounts",
                "2. rotate all secrets (API_SECRET in api and worker together,"
                " MASTER_ENCRYPTION_KEY, etc.), then re-issue ADMIN_TOKEN",
                "3. revoke all active access tokens (after the rotation)",
                "4. enable audit log review",
                "5. notify affected users (a person)",
                "6. document the incident timeline",
            ),
        ),
    ),
    # A statement over the threshold, or sessions waiting on a lock (pg_stat_activity).
    "database-slow": (
        Advice(
            "Troubleshooting > Slow Query Performance",
            (
                'review slow queries (railway logs --service api | grep "query took"): they'
                " show the statements that waited, not what they waited on",
                "identify the offender in pg_stat_activity (now() - query_start,"
                " pg_blocking_pids(pid))",
                "cancel it (SELECT pg_cancel_backend(pid)); terminate it if it does not stop"
                " (pg_terminate_backend(pid))",
                "add database indexes only for statements slow on their own (EXPLAIN), with"
                " CREATE INDEX CONCURRENTLY",
            ),
        ),
    ),
    # Maintenance Tasks (features/maintenance_tasks.feature): the item first, then the
    # incident steps that fit what the check found.
    "maintenance-error-rate": (
        Advice(
            "Maintenance Tasks > Daily",
            (
                "check error rates in logs: read the day's 5xx lines (railway logs --service"
                " api), find the route or dependency that fails and fix it",
            ),
        ),
        API_500,
    ),
    "maintenance-email-delivery": (
        Advice(
            "Maintenance Tasks > Daily",
            (
                "verify email delivery: read the failed e-mail jobs' reasons (the email"
                " queue's failed jobs) and the Resend dashboard; once the cause is fixed,"
                " retry them (Queue.retryJobs)",
            ),
        ),
        EMAIL_NOT_SENDING,
    ),
    "maintenance-disk": (
        Advice(
            "Maintenance Tasks > Daily",
            (
                "monitor disk usage: free space (old logs, old backups; VACUUM for dead"
                " rows) or grow the volume in the platform's dashboard before it fills",
            ),
        ),
    ),
    "maintenance-audit-log": (
        Advice(
            "Maintenance Tasks > Weekly",
            (
                "review audit logs for anomalies: who made the failed logins or admin"
                " actions named above, against which accounts, and did any of them succeed"
                " (the audit log's LOGIN_SUCCESS rows from the same address)",
            ),
        ),
        Advice(
            "Incident Response > Data Breach / Security Incident",
            (
                "if it is an attack: 1. lock the affected accounts, 2. rotate all secrets,"
                " 3. revoke all active access tokens, then the section's other steps",
            ),
        ),
    ),
    "maintenance-failed-jobs": (
        Advice(
            "Maintenance Tasks > Weekly",
            (
                "check failed job queues: read each failed job's reason, fix the cause, then"
                " retry them (Queue.retryJobs) or remove them; BullMQ keeps failed jobs until"
                " someone does, and a worker restart does not retry them",
            ),
        ),
        WORKER_NOT_PROCESSING,
    ),
    "maintenance-secrets": (
        Advice(
            "Maintenance Tasks > Monthly",
            (
                "rotate secrets (API_SECRET, etc.): set the new value in every service that"
                " uses it (API_SECRET in api and worker together) and restart them, then record"
                " the date where the check reads it (RUNBOOK_<NAME>_ROTATED_AT, as YYYY-MM-DD)",
            ),
        ),
        INVALID_TOKEN,
    ),
    "maintenance-audit-archive": (
        Advice(
            "Maintenance Tasks > Monthly",
            (
                "review and archive old audit logs: export the rows older than the retention"
                " period (e.g. COPY to the archive bucket), verify the export, then delete"
                " those rows",
            ),
        ),
    ),
    "maintenance-vacuum": (
        Advice(
            "Maintenance Tasks > Monthly",
            (
                "database optimization: VACUUM (ANALYZE) the tables named; then check why"
                " autovacuum did not (SHOW autovacuum; long-open transactions in"
                " pg_stat_activity hold it back)",
            ),
        ),
    ),
    "maintenance-documentation": (
        Advice(
            "Maintenance Tasks > Monthly",
            (
                "review and update documentation: review the runbook against the system (the"
                " @runbook-defect scenarios say where it is wrong; runbook coverage says what"
                " is unchecked), then set its Last Updated and Next Review dates",
            ),
        ),
    ),
    "maintenance-dr-drill": (
        Advice(
            "Maintenance Tasks > Quarterly",
            (
                "disaster recovery drill: run one against the target this check reads"
                " (runbook drill recovery-time-objectives --target staging --allow-drills"
                " staging), have its record signed off (runbook drill sign RECORD --by NAME"
                " --evidence LINK), and keep the records with their ledger where the check"
                " reads them (the reports' drills/); runbook drill verify names any record"
                " or ledger entry changed since it was written",
            ),
        ),
    ),
}


def next_steps(component: str) -> list[str]:
    """The runbook's next steps for a failed check of ``component``, as lines."""
    return [line for advice in NEXT_STEPS.get(component, ()) for line in advice.lines()]


def named_sections(steps: Iterable[str]) -> tuple[str, ...]:
    """The runbook sections next-step lines (``"<section>: <step>"``) name, first first:
    the diagnosis a failed check gives."""
    return tuple(dict.fromkeys(line.split(": ", 1)[0] for line in steps if ": " in line))


@dataclass(frozen=True)
class Heading:
    """A heading of a runbook: its level (2 or 3), title, slug, and the part it is in."""

    level: int
    title: str
    slug: str
    part: str  # the level-2 heading above it (itself for a level-2 heading)

    @property
    def anchor(self) -> str:
        """GitHub's anchor for the heading (``Monitoring & Alerts`` -> ``monitoring--alerts``)."""
        text = self.title.strip().lower()
        text = re.sub(r"[^\w\- ]", "", text)
        return text.replace(" ", "-")


def parse_headings(markdown: str) -> list[Heading]:
    """The ``##`` and ``###`` headings of a runbook in Markdown, outside code blocks."""
    headings: list[Heading] = []
    part = ""
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else re.match(r"^(#{2,3})\s+(.+?)\s*#*\s*$", line)
        if match is None:
            continue
        level, title = len(match.group(1)), match.group(2).strip()
        if level == 2:
            part = title
        headings.append(Heading(level, title, slugify(title), part))
    return headings


#: The runbook these features restate (a copy of LegacyVideo's operations runbook).
RUNBOOK_FILE = "docs/RUNBOOK.md"
