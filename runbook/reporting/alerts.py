"""Slack-compatible webhook messages: one per alert tier that failed in a run, and the
watch's alerts and resolutions.

A message is ``{"text": ..., "blocks": [...]}`` (Slack's Block Kit; Mattermost, Discord's
``/slack`` endpoint and most chat tools take it too) naming the target, each failing
scenario, its runbook section, the redacted failure and the runbook's next steps.

The webhook URL is a secret (Slack's carry a token in the path): it is never printed, and a
failed POST is reported as one line naming the tier and the reason, not the URL.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from runbook import shipped
from runbook.redact import Redactor
from runbook.sections import next_steps, parse_headings

TIERS = ("critical", "warning", "info")
#: Seconds a webhook POST may take, connection included.
POST_TIMEOUT_S = 5.0
#: The general webhook variable; ``<it>_CRITICAL`` / ``_WARNING`` / ``_INFO`` route one tier.
WEBHOOK_VARIABLE = "RUNBOOK_WEBHOOK_URL"
#: Slack refuses more than 50 blocks; a header, a context and an "and N more" leave this many.
_MAX_SCENARIOS = 46
_MAX_SECTION_CHARS = 2900  # Slack's limit for a section's text is 3000
_HEADER_CHARS = 150


@dataclass(frozen=True)
class Failure:
    """A failing scenario as a message names it."""

    scenario: str
    tier: str
    section: str        # the runbook section, as "Part > Heading" where the runbook has it
    message: str        # redacted already (summary.json holds it redacted)
    next_steps: tuple[str, ...]


def tier_of(scenario: Mapping[str, Any]) -> str:
    """The scenario's alert tier; a scenario with none pages, as the exit code treats it."""
    tier = scenario.get("tier")
    return tier if tier in TIERS else "critical"


@lru_cache(maxsize=1)
def _section_titles() -> dict[str, str]:
    runbook = shipped.RUNBOOK
    try:
        headings = parse_headings(runbook.read_text(encoding="utf-8"))
    except OSError:
        return {}
    return {h.slug: h.title if h.level == 2 else f"{h.part} > {h.title}" for h in headings}


def section_title(slug: str) -> str:
    """``quick-health-check`` -> ``Service Health Checks > Quick Health Check``."""
    return _section_titles().get(slug, slug) if slug else "(no runbook section)"


def junit_next_steps(junit: Path) -> dict[str, tuple[str, ...]]:
    """The runbook's next steps of each failed test case in ``junit.xml``, by the pytest node
    id's test part (``test_redis_answers_pong``): the check's own advice, as printed."""
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError):
        return {}
    found: dict[str, tuple[str, ...]] = {}
    for case in root.iter("testcase"):
        for child in case:
            if child.tag in ("failure", "error"):
                steps = _steps_in(child.text or child.get("message") or "")
                if steps:
                    found[f"{case.get('classname', '')}::{case.get('name', '')}"] = steps
    return found


def _steps_in(text: str) -> tuple[str, ...]:
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Runbook, next steps:")
    except StopIteration:
        return ()
    steps: list[str] = []
    for line in lines[start + 1:]:
        if not line.strip().startswith("- "):
            break
        steps.append(line.strip()[2:])
    return tuple(steps)


def _junit_key(nodeid: str) -> str:
    path, _, name = nodeid.partition("::")
    return f"{path.removesuffix('.py').replace('/', '.')}::{name}"


def _steps_for(scenario: Mapping[str, Any], target: str,
               from_junit: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    own = scenario.get("next_steps")
    if own:
        return tuple(str(s) for s in own)
    steps = from_junit.get(_junit_key(str(scenario.get("nodeid", ""))))
    if steps:
        return steps
    # "<component> on <target>...: seen" is how the summary words a check's failure.
    component = str(scenario.get("message", "")).split(" on ", 1)[0]
    return tuple(next_steps(component)) if " on " in str(scenario.get("message", "")) else ()


def failures_by_tier(summary: Mapping[str, Any], junit: Path | None = None
                     ) -> dict[str, list[Failure]]:
    """The failed and errored scenarios of ``summary`` (``summary.json``) by alert tier, in
    the runbook's tier order; tiers with no failure are left out."""
    target = str(summary.get("target", ""))
    from_junit = junit_next_steps(junit) if junit is not None else {}
    grouped: dict[str, list[Failure]] = {}
    for scenario in summary.get("scenarios", []):
        if scenario.get("outcome") not in ("failed", "error"):
            continue
        grouped.setdefault(tier_of(scenario), []).append(failure_of(scenario, target,
                                                                     from_junit))
    return {tier: grouped[tier] for tier in TIERS if tier in grouped}


def failure_of(scenario: Mapping[str, Any], target: str,
               from_junit: Mapping[str, tuple[str, ...]] | None = None) -> Failure:
    """A ``summary.json`` scenario as a message names it."""
    sections = scenario.get("sections") or []
    return Failure(
        scenario=str(scenario.get("name", "")),
        tier=tier_of(scenario),
        section=section_title(str(sections[0]) if sections else ""),
        message=str(scenario.get("message", "")) or "(no message)",
        next_steps=_steps_for(scenario, target, from_junit or {}),
    )


def webhook_for(tier: str, explicit: str | None = None,
                env: Mapping[str, str] | None = None) -> str | None:
    """Where ``tier``'s messages go: ``--webhook`` when given (every tier), else
    ``RUNBOOK_WEBHOOK_URL_<TIER>``, else ``RUNBOOK_WEBHOOK_URL``; ``None``: nowhere."""
    if explicit:
        return explicit
    env = os.environ if env is None else env
    return env.get(f"{WEBHOOK_VARIABLE}_{tier.upper()}") or env.get(WEBHOOK_VARIABLE) or None


def webhook_urls(explicit: str | None = None, env: Mapping[str, str] | None = None
                 ) -> list[str]:
    """Every webhook URL configured (to validate them, and to redact them from output)."""
    urls = [webhook_for(tier, explicit, env) for tier in TIERS]
    return list(dict.fromkeys(u for u in urls if u))


def _mrkdwn(text: str) -> str:
    """Text safe inside Slack's mrkdwn (``&``, ``<``, ``>`` are its control characters)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scenario_block(failure: Failure, extra: str = "") -> dict[str, Any]:
    lines = [f"*{_mrkdwn(failure.scenario)}*" + (f"  {_mrkdwn(extra)}" if extra else ""),
             f"Runbook: {_mrkdwn(failure.section)}",
             f"```{_mrkdwn(failure.message)}```"]
    if failure.next_steps:
        lines.append("*Next steps:*")
        lines += [f"• {_mrkdwn(step)}" for step in failure.next_steps]
    return {"type": "section", "text": {"type": "mrkdwn",
                                        "text": _clip("\n".join(lines), _MAX_SECTION_CHARS)}}


def message(headline: str, failures: Sequence[Failure], context: str,
            notes: Sequence[str] = ()) -> dict[str, Any]:
    """``{"text", "blocks"}``: a header, one section per scenario (``notes[i]`` beside the
    i-th one's name), a context line. ``text`` is the fallback notifications show."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(headline, _HEADER_CHARS),
                                    "emoji": True}},
    ]
    for index, failure in enumerate(failures[:_MAX_SCENARIOS]):
        blocks.append(_scenario_block(failure, notes[index] if index < len(notes) else ""))
    if len(failures) > _MAX_SCENARIOS:
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": f"… and {len(failures) - _MAX_SCENARIOS} more"}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn",
                                                    "text": _mrkdwn(context)}]})
    names = ", ".join(f.scenario for f in failures)
    return {"text": _clip(f"{headline}: {names}", 3000), "blocks": blocks}


def failure_message(target: str, tier: str, failures: Sequence[Failure],
                    summary: Mapping[str, Any]) -> dict[str, Any]:
    """The message of one tier's failures in a run of ``summary``."""
    count = len(failures)
    headline = (f"{tier.upper()}: {count} runbook check{'s' if count != 1 else ''} failed"
                f" on {target}")
    context = (f"LegacyVideo runbook · target {target} · exit code {summary.get('exit_code')}"
               f" · run {summary.get('run_id') or '-'}"
               + (f" · finished {summary['finished_at']}" if summary.get("finished_at") else ""))
    return message(headline, failures, context)


def post(url: str, payload: Mapping[str, Any], *, timeout: float = POST_TIMEOUT_S) -> str | None:
    """POST ``payload`` as JSON; ``None`` when the receiver took it (2xx), else why not, in
    words that never include the URL."""
    import httpx

    try:
        answer = httpx.post(url, json=payload, timeout=timeout)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return f"the request failed ({type(exc).__name__})"
    if answer.status_code >= 300:
        return f"the receiver answered HTTP {answer.status_code}"
    return None


def deliver(tier: str, payload: Mapping[str, Any], redact: Redactor, *, explicit: str | None,
            env: Mapping[str, str] | None = None, warn: Callable[[str], None],
            what: str = "alert") -> bool:
    """Send one message for ``tier`` where it is routed, redacted first; ``False`` (and one
    warning line) when it could not be delivered, ``True`` when delivered or not routed."""
    url = webhook_for(tier, explicit, env)
    if url is None:
        return True
    problem = post(url, cast(Mapping[str, Any], redact.data(dict(payload))))
    if problem is not None:
        warn(f"webhook for {tier} {what}s: {problem}; the message was not delivered")
        return False
    return True


def notify_failures(summary: Mapping[str, Any], junit: Path | None, redact: Redactor, *,
                    explicit: str | None = None, env: Mapping[str, str] | None = None,
                    warn: Callable[[str], None]) -> list[str]:
    """One message per alert tier that failed in ``summary``, to that tier's webhook;
    returns the tiers a message was delivered for."""
    target = str(summary.get("target", ""))
    delivered: list[str] = []
    for tier, failures in failures_by_tier(summary, junit).items():
        if webhook_for(tier, explicit, env) is None:
            continue
        payload = failure_message(target, tier, failures, summary)
        if deliver(tier, payload, redact, explicit=explicit, env=env, warn=warn):
            delivered.append(tier)
    return delivered
