"""How the runbook's own canary users are named, so the probes can leave them out of what
they judge (the audit reviews) and the actions make and remove only them
(``runbook.actions.users``): ``runbook-canary-<hex>@<the target's sending domain>``.
"""

from __future__ import annotations

import re
import uuid

from runbook.config import Target

#: Canary e-mails start with this; nothing else is ever removed or has its password reset.
CANARY_PREFIX = "runbook-canary-"
#: The kind of canary a security game day attacks (``runbook-canary-victim-<hex>@...``).
VICTIM = "victim"
#: The domain of canary e-mails when the target sets no ``FROM_EMAIL``.
DEFAULT_DOMAIN = "legacyvideo.test"

#: A canary's address; ``victim-`` marks the accounts a security game day attacks, which
#: stand for real users (the audit reviews count failed logins against them).
_CANARY_EMAIL = re.compile(rf"{re.escape(CANARY_PREFIX)}(?:{VICTIM}-)?[0-9a-f]{{8,}}@[^@\s]+")


def canary_domain(target: Target) -> str:
    """The domain of ``FROM_EMAIL`` (what LegacyVideo sends from), else ``legacyvideo.test``."""
    if target.from_email and "@" in target.from_email:
        return target.from_email.rsplit("@", 1)[1].lower()
    return DEFAULT_DOMAIN


def canary_email(target: Target, kind: str = "") -> str:
    """A fresh canary address: ``runbook-canary-<hex>@<domain>`` (``runbook-canary-<kind>-
    <hex>@<domain>`` for a ``kind``)."""
    infix = f"{kind}-" if kind else ""
    return f"{CANARY_PREFIX}{infix}{uuid.uuid4().hex[:16]}@{canary_domain(target)}"


def is_canary_email(email: str) -> bool:
    """True for addresses ``canary_email`` makes, and only those."""
    return bool(_CANARY_EMAIL.fullmatch(email))
