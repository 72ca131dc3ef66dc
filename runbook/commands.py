"""How the suite executes each literal command of the runbook, or why it does not.

The runbook tells the operator to type commands; the annotated living runbook shows, beside
each, what the suite does with it: ``executed`` (the same call, made by the suite, and its
scenarios' recorded replies), ``replaced`` (the runbook's command is wrong, interactive or
never ends: the suite makes another call that answers the runbook's question), ``manual`` (a
person does it; ``runbook manual record`` keeps what they found), ``unsafe`` (it changes
production in a way no check may: not run) or, for a command no entry names, not executed.
The defects themselves (what a command gets wrong) live in ``runbook.defects``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

How = Literal["executed", "replaced", "manual", "unsafe"]

#: Programs whose invocations are commands the operator types (the rest is prose or output).
PROGRAMS = ("railway", "redis-cli", "curl", "vercel", "npx", "aws", "psql", "pg_dump", "pnpm",
            ">")


@dataclass(frozen=True)
class CommandUse:
    """What the suite does with the runbook's commands matching ``pattern``."""

    pattern: str  # a regular expression searched in the command as written
    how: How
    #: The call the suite makes (executed, replaced) or why it makes none (manual, unsafe).
    call: str
    #: The scenarios that make the call (names as in the features; outlines with <...>).
    scenarios: tuple[str, ...] = ()


COMMANDS: tuple[CommandUse, ...] = (
    CommandUse(r"curl https://api\.your-domain\.com/health", "executed",
               "HTTP GET <API>/health, status and body checked",
               ("The API reports status ok with a current timestamp",)),
    CommandUse(r"curl https://your-domain\.com$", "executed", "HTTP GET <web>/, HTTP 200",
               ("The web front end answers HTTP 200",)),
    CommandUse(r"prisma db pull", "replaced",
               "a connection, a query and a read-only introspection (every session"
               " default_transaction_read_only): db pull would rewrite schema.prisma",
               ("The database answers",)),
    CommandUse(r"redis-cli -u \$REDIS_URL (ping|PING)", "executed", "Redis PING",
               ("Redis answers PONG",)),
    CommandUse(r"railway restart --service (api|worker)", "executed",
               "the platform adapter's restart (railway restart on Railway), then the service"
               " waited healthy", ("Restarting the <service> brings it back healthy",)),
    CommandUse(r"vercel --prod", "executed", "the platform adapter's redeploy of the web"
               " front end, then waited healthy",
               ("Restarting the <service> brings it back healthy",)),
    CommandUse(r"(railway|vercel) logs.*(--tail|--follow)", "replaced",
               "the logs of the last hour (--since 1h): --tail and --follow never end",
               ("The <service>'s logs of the last hour can be read",)),
    CommandUse(r"^railway logs --service (api|worker)$", "replaced",
               "the platform adapter's logs of the last hour, error lines counted (railway"
               " logs alone shows the latest lines, whenever they are from)",
               ("The <service>'s logs of the last hour can be read",)),
    CommandUse(r"(railway logs .*--since 1h|vercel logs$)", "executed",
               "the platform adapter's logs of the last hour, error lines counted",
               ("The <service>'s logs of the last hour can be read",)),
    CommandUse(r"pnpm db:migrate:deploy", "replaced",
               "read-only: every expected migration applied, none failed or edited (deploying"
               " the schema is the release pipeline's job)",
               ("Every migration is applied and none failed",)),
    CommandUse(r"prisma migrate resolve --rolled-back", "unsafe",
               "not run: it changes production's migration history; what it does is a"
               " documented finding (it undoes nothing)"),
    CommandUse(r"pg_dump|psql \$DATABASE_URL <", "executed",
               "pg_dump of the target, restored into a scratch database (never the target's"
               " own), every table compared by row count and checksum",
               ("A backup exported and imported into a scratch database is identical",)),
    CommandUse(r"prisma studio|railway run --service api sh$", "manual",
               "interactive: what the runbook does with it (an admin, a password hash) is done"
               " as it would do it, a row written, then proved through the API",
               ("An admin created as the runbook describes can use the admin API",
                "A reset password works and the old one no longer does")),
    CommandUse(r"curl -X POST https://api\.your-domain\.com/api/admin/users/lock", "executed",
               "the runbook's lock request (admin token), then a login refused until unlocked",
               ("A locked account cannot log in until it is unlocked",
                "The lock request is refused without an admin's token")),
    CommandUse(r"npx ts-node", "replaced",
               "a cost 12 bcrypt hash written to the user's row, then the new password logs in",
               ("A reset password works and the old one no longer does",)),
    CommandUse(r"^> (KEYS bull:\*|LLEN bull:email:(wait|active))$|^redis-cli -u \$REDIS_URL$",
               "replaced", "BullMQ's job counts, checked against TYPE + LLEN/ZCARD (KEYS"
               " blocks Redis)", ("The <queue> queue's status is read through BullMQ",)),
    CommandUse(r"LLEN bull:email:failed", "executed",
               "LLEN bull:email:failed, as typed, on a queue holding canary failed jobs",
               ("The runbook's LLEN on the failed jobs answers WRONGTYPE",)),
    CommandUse(r"^> DEL bull:", "executed",
               "DEL of the failed set, as typed, on a canary queue (never a real one)",
               ("Deleting the failed set leaves the failed jobs' data behind",)),
    CommandUse(r"aws s3 ls", "executed", "S3 ListObjectsV2 on the bucket with the configured"
               " credentials", ("S3 access works with the configured credentials",)),
)


def use_of(command: str) -> CommandUse | None:
    """The entry for ``command`` as written in the runbook, or ``None``."""
    flat = " ".join(command.split())
    return next((c for c in COMMANDS if re.search(c.pattern, flat)), None)


def is_command(text: str) -> bool:
    """Whether ``text`` (a line of a code block, or a code span) is a command to type."""
    words = text.strip().split()
    return bool(words) and words[0] in PROGRAMS


def commands_of(block: str) -> list[tuple[int, str]]:
    """The commands of a code block with the line (from 0) each starts on: a line ending in
    a backslash continues, a quote left open runs to its closing line; comments and the
    ``# Expected`` lines are not commands."""
    found: list[tuple[int, str]] = []
    lines = block.split("\n")
    index = 0
    while index < len(lines):
        start, text = index, lines[index].strip()
        while (text.endswith("\\") or text.count('"') % 2) and index + 1 < len(lines):
            index += 1
            text = text.rstrip("\\").rstrip() + " " + lines[index].strip()
        index += 1
        if is_command(text):
            found.append((start, text))
    return found
