"""Where the runbook is wrong about the real system: the one catalogue of its defects.

Each finding holds the runbook's exact text (one or more whole lines of docs/RUNBOOK.md, so a
patch always finds them), what is true instead, the replacement text, and how we know:

* ``demonstrated``: a scenario tagged ``@runbook-defect`` runs the runbook's command against
  the real component (real Redis and BullMQ, real PostgreSQL) and asserts what really happens;
  the finding names that scenario and its evidence is the scenario's recorded result;
* ``documented``: the real tool cannot run here (the Prisma CLI is not part of the suite), so
  no scenario pretends to assert it: the finding cites the tool's own documentation.

``propose_patch`` turns the catalogue into a unified diff against the runbook that
``git apply`` accepts, each hunk citing its finding, scenario and evidence; the annotated
living runbook (``runbook.reporting.annotated``) shows the same findings as redlines.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from runbook.errors import ConfigError

EvidenceKind = Literal["demonstrated", "documented"]

#: Lines of unchanged text around each change in a proposed patch.
CONTEXT_LINES = 3


@dataclass(frozen=True)
class Finding:
    """One thing the runbook gets wrong, with its fix and how we know."""

    id: str
    #: The runbook section (its heading's slug, as the ``@runbook:`` tags use) it sits in.
    section: str
    #: The words of the runbook it is about, as a scenario's description quotes them.
    quote: str
    #: Whole lines of the runbook as written, each block replaced by ``replacements``.
    runbook_text: tuple[str, ...]
    true: str
    replacements: tuple[str, ...]
    evidence: EvidenceKind
    #: The ``@runbook-defect`` scenarios that demonstrate it (none when documented).
    scenarios: tuple[str, ...] = ()
    #: The tool's documentation, for a documented finding (or to back a demonstrated one).
    citation: str = ""
    #: What the suite does instead of the runbook's text (scenarios, read-only checks).
    instead: str = ""

    def __post_init__(self) -> None:
        if not all(self.quote in text for text in self.runbook_text):
            raise ValueError(f"{self.id}: every runbook text holds its quote")
        if len(self.runbook_text) != len(self.replacements):
            raise ValueError(f"{self.id}: one replacement per runbook text")
        if self.evidence == "demonstrated" and not self.scenarios:
            raise ValueError(f"{self.id}: a demonstrated finding names its scenario")
        if self.evidence == "documented" and (self.scenarios or not self.citation):
            raise ValueError(f"{self.id}: a documented finding cites documentation and no"
                             " scenario")


#: The runbook's claim a restarted worker retries failed jobs (its comment, as written).
RETRY_CLAIM = "Restart worker (will retry failed jobs automatically)"

FINDINGS: tuple[Finding, ...] = (
    Finding(
        id="llen-failed-set",
        section="queue-management",
        quote="LLEN bull:email:failed",
        runbook_text=("> LLEN bull:email:failed",
                      "   redis-cli -u $REDIS_URL LLEN bull:email:failed"),
        true=("BullMQ keeps failed jobs in a sorted set: LLEN on it answers WRONGTYPE (and 0"
              " when there are none), never the count. ZCARD counts them, or BullMQ's own"
              " Queue.getJobCounts."),
        replacements=("> ZCARD bull:email:failed",
                      "   redis-cli -u $REDIS_URL ZCARD bull:email:failed"),
        evidence="demonstrated",
        scenarios=("The runbook's LLEN on the failed jobs answers WRONGTYPE",),
        citation="https://docs.bullmq.io/guide/architecture",
        instead="BullMQ's job counts, checked against TYPE + LLEN/ZCARD",
    ),
    Finding(
        id="del-failed-set",
        section="queue-management",
        quote="DEL bull:email:failed",
        runbook_text=("redis-cli -u $REDIS_URL\n> DEL bull:email:failed\n"
                      "> DEL bull:release-process:failed",),
        true=("DEL drops only the failed set, BullMQ's index: every failed job's hash stays"
              " in Redis, unreferenced, and BullMQ no longer counts or cleans it. BullMQ's"
              " Queue.clean(0, limit, 'failed') removes the jobs and everything naming them."),
        replacements=(
            "# Not DEL: it drops only the index and leaves every failed job's data behind.\n"
            "# Clean them with BullMQ, for each queue (email, release-process):\n"
            "#   await new Queue('email', { connection }).clean(0, 1000, 'failed')",),
        evidence="demonstrated",
        scenarios=("Deleting the failed set leaves the failed jobs' data behind",),
        citation="https://docs.bullmq.io/guide/queues/removing-jobs",
        instead="Failed jobs are cleared the BullMQ way (Job.remove, Queue.clean)",
    ),
    Finding(
        id="restart-retries-failed",
        section="queue-management",
        quote=RETRY_CLAIM,
        runbook_text=(f"# {RETRY_CLAIM}\nrailway restart --service worker",),
        true=("A restarted BullMQ worker takes back stalled active jobs only; failed jobs"
              " stay failed until something retries them (Job.retry, Queue.retryJobs)."),
        replacements=(
            "# A restart does not retry failed jobs (it only takes back stalled active ones).\n"
            "# Retry them with BullMQ, for each queue (email, release-process):\n"
            "#   await new Queue('email', { connection }).retryJobs({ state: 'failed' })",),
        evidence="demonstrated",
        scenarios=("Restarting the worker does not retry failed jobs",),
        citation="https://docs.bullmq.io/guide/retrying-failing-jobs",
        instead="Failed jobs are retried the BullMQ way (Job.retry, Queue.retryJobs)",
    ),
    Finding(
        id="db-pull-health-check",
        section="service-health-checks",
        quote="npx prisma db pull",
        runbook_text=(
            "railway run --service api npx prisma db pull\n# Expected: Schema pulled"
            " successfully",
            "3. Check database: `railway run --service api npx prisma db pull`",
            "3. Test connection: `railway run --service api npx prisma db pull`"),
        true=("`prisma db pull` introspects the database and OVERWRITES schema.prisma with"
              " what it found: not a read-only health check (a checkout it runs in loses its"
              " hand edits). `--print` introspects the same way and writes the schema to"
              " stdout instead."),
        replacements=(
            "railway run --service api npx prisma db pull --print > /dev/null\n# Expected:"
            " exit status 0 (--print reads the schema without rewriting schema.prisma)",
            "3. Check database: `railway run --service api npx prisma db pull --print >"
            " /dev/null`",
            "3. Test connection: `railway run --service api npx prisma db pull --print >"
            " /dev/null`"),
        evidence="documented",
        citation=("https://www.prisma.io/docs/cli/db/pull (\"This command will overwrite the"
                  " current schema.prisma file with the new schema\")"),
        instead=("The database answers (a connection and a read-only introspection, every"
                 " session default_transaction_read_only)"),
    ),
    Finding(
        id="resolve-rolled-back",
        section="database-operations",
        quote="Rollback Migration (DANGEROUS)",
        runbook_text=("**Rollback Migration (DANGEROUS):**",),
        true=("`prisma migrate resolve --rolled-back <name>` undoes nothing: it only marks a"
              " FAILED migration as rolled back in the _prisma_migrations table, so that the"
              " next deploy applies it again; Prisma refuses it for a migration that"
              " succeeded (P3012). To revert an applied migration, take a verified backup, then"
              " write and deploy a new migration that reverses it."),
        replacements=(
            "**Resolve a Failed Migration (DANGEROUS; this does not undo an applied one: to"
            " revert that, take a verified backup, then deploy a new migration that"
            " reverses it):**",),
        evidence="documented",
        citation=("https://www.prisma.io/docs/orm/reference/prisma-cli-reference"
                  "#migrate-resolve (\"This command can only be used with a failed"
                  " migration\"; --rolled-back records a migration as rolled back)"),
        instead="Every migration is applied and none failed (read-only)",
    ),
)


def finding(finding_id: str) -> Finding:
    """The finding named ``finding_id``; ``KeyError`` when there is none."""
    for found in FINDINGS:
        if found.id == finding_id:
            return found
    raise KeyError(finding_id)


def of_scenario(name: str) -> tuple[Finding, ...]:
    """The findings a ``@runbook-defect`` scenario demonstrates."""
    return tuple(f for f in FINDINGS if name in f.scenarios)


@dataclass(frozen=True)
class Edit:
    """One block of the runbook replaced: lines ``start`` to ``end`` (0-based, end
    exclusive) by ``new``."""

    finding: Finding
    start: int
    end: int
    old: tuple[str, ...]
    new: tuple[str, ...]


def locate(lines: Sequence[str], findings: Sequence[Finding] = FINDINGS, *,
           strict: bool = True) -> list[Edit]:
    """Every block of every finding in the runbook's ``lines``, in the runbook's order.
    Raises ``ConfigError`` when a finding's text is not in the runbook (edited since), unless
    not ``strict``: then that block is left out (``missing`` names it)."""
    edits: list[Edit] = []
    for found in findings:
        for text, replacement in zip(found.runbook_text, found.replacements, strict=True):
            old = tuple(text.split("\n"))
            start = next((i for i in range(len(lines) - len(old) + 1)
                          if tuple(lines[i:i + len(old)]) == old), None)
            if start is None and not strict:
                continue
            if start is None:
                raise ConfigError(f"runbook defect {found.id}: its text {old[0]!r} is not in"
                                  " the runbook any more; update runbook/defects.py")
            edits.append(Edit(found, start, start + len(old), old,
                              tuple(replacement.split("\n"))))
    edits.sort(key=lambda e: e.start)
    for before, after in itertools.pairwise(edits):
        if after.start < before.end:
            raise ConfigError(f"runbook defects {before.finding.id} and {after.finding.id}"
                              " overlap; give them distinct lines")
    return edits


def missing(lines: Sequence[str]) -> list[Finding]:
    """The findings some of whose text is not in the runbook's ``lines``."""
    found = {(e.finding.id, e.old) for e in locate(lines, strict=False)}
    return [f for f in FINDINGS if any((f.id, tuple(text.split("\n"))) not in found
                                       for text in f.runbook_text)]


def _cites(found: Finding) -> str:
    if found.evidence == "demonstrated":
        return (f"{found.id}, demonstrated by the scenario"
                f" \"{'; '.join(found.scenarios)}\"")
    return f"{found.id}, documented: {found.citation}"


def propose_patch(runbook: str, name: str = "docs/RUNBOOK.md") -> str:
    """A unified diff of ``runbook`` (the text of ``name``) replacing every finding's text
    with its fix; a hunk's header line cites its findings. Raises ``ConfigError`` when a
    finding's text is not in the runbook."""
    lines = runbook.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    edits = locate(lines)
    groups: list[list[Edit]] = []
    for edit in edits:  # edits whose context would touch share one hunk
        if groups and edit.start - groups[-1][-1].end <= 2 * CONTEXT_LINES:
            groups[-1].append(edit)
        else:
            groups.append([edit])
    out = ["Proposed fixes to the runbook, from the defects the executable runbook found.", ""]
    for found in FINDINGS:
        out += [f"{_cites(found)}", f"  true: {found.true}", ""]
    out += [f"--- a/{name}", f"+++ b/{name}"]
    shift = 0
    for group in groups:
        first = max(0, group[0].start - CONTEXT_LINES)
        last = min(len(lines), group[-1].end + CONTEXT_LINES)
        body: list[str] = []
        at = first
        for edit in group:
            body += [f" {line}" for line in lines[at:edit.start]]
            body += [f"-{line}" for line in edit.old]
            body += [f"+{line}" for line in edit.new]
            at = edit.end
        body += [f" {line}" for line in lines[at:last]]
        old_count = last - first
        new_count = old_count + sum(len(e.new) - len(e.old) for e in group)
        cites = "; ".join(dict.fromkeys(_cites(e.finding) for e in group))
        out.append(f"@@ -{first + 1},{old_count} +{first + 1 + shift},{new_count} @@"
                   f" {cites}")
        out += body
        shift += new_count - old_count
    return "\n".join(out) + "\n"


def apply(runbook: str) -> str:
    """``runbook`` with every finding's fix applied (what the patch makes of it)."""
    lines = runbook.split("\n")
    for edit in reversed(locate(lines)):
        lines[edit.start:edit.end] = list(edit.new)
    return "\n".join(lines)
