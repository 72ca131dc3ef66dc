"""Redaction in one place: every line, message, attachment and record passes through here.

Two layers: the exact secrets a target holds (in raw, URL-encoded, JSON-escaped and base64
forms) and patterns that look like credentials whoever they belong to (a password in a URL
or DSN, a bearer token, a JWT, a Resend key, an AWS secret).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

MASK = "***"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host  ->  scheme://user:***@host
    (re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s/]+)(?=@)"),
     rf"\g<head>{MASK}"),
    # Authorization: Bearer xxx / Basic xxx
    (re.compile(r"(?i)(?P<head>\b(?:bearer|basic)\s+)(?P<secret>[A-Za-z0-9._~+/=-]{8,})"),
     rf"\g<head>{MASK}"),
    # JSON Web Tokens anywhere
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\b"), MASK),
    # Resend API keys
    (re.compile(r"\bre_[A-Za-z0-9_]{8,}\b"), MASK),
    # password=..., secret=..., token=... in query strings, logs and key/value dumps
    (re.compile(
        r"(?i)(?P<head>\b[\w-]*(?:password|passwd|secret|token|api[_-]?key)[\w-]*"
        r"[\"']?\s*[=:]\s*[\"']?)(?!(?:true|false|null|none)\b)(?!\d+\b)"
        r"(?P<secret>[^\s\"'&,;}]{4,})"),
     rf"\g<head>{MASK}"),
)
#: What each of ``_PATTERNS`` cannot match without, in lower case: text lacking all of a
#: pattern's needles (in any case) is not scanned by it. A scan costs milliseconds on a page
#: of log; looking for its needles, microseconds. Masking never makes a needle (``MASK`` has
#: no letter), so needles looked for once, before the first pattern, stand for every pattern.
_NEEDLES: tuple[tuple[str, ...], ...] = (
    ("://",),
    ("bearer", "basic"),
    ("eyj",),
    ("re_",),
    ("passw", "secret", "token", "apikey", "api_key", "api-key"),
)
#: Every pattern's needles in one expression, for ASCII text lowered: most text holds none.
_ANY_NEEDLE = re.compile("|".join(re.escape(n) for needles in _NEEDLES for n in needles))
#: The needles as case-insensitive expressions, for text that is not ASCII: there a
#: case-insensitive match is more than a substring of the text in lower case (a long s
#: matches ``s``, the Kelvin sign ``k``).
_NEEDS = tuple(re.compile("(?i)" + "|".join(map(re.escape, needles))) for needles in _NEEDLES)


def _patterns_for(text: str) -> list[tuple[re.Pattern[str], str]]:
    """The ones of ``_PATTERNS`` that may match ``text``: those whose needles it holds."""
    if text.isascii():  # a case-insensitive match is then a substring of the text lowered
        lowered = text.lower()
        if _ANY_NEEDLE.search(lowered) is None:
            return []
        return [pattern for pattern, needles in zip(_PATTERNS, _NEEDLES, strict=True)
                if any(needle in lowered for needle in needles)]
    return [pattern for pattern, needs in zip(_PATTERNS, _NEEDS, strict=True)
            if needs.search(text) is not None]


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``; other parts kept for diagnosis."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{user}:{MASK}@{host}" + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """The secrets in a URL given as a setting: its password, and ``user:password``, whose
    base64 is the Basic credential a client sends for it (empty without a password)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    if not parts.password:
        return []
    return [parts.password, f"{parts.username or ''}:{parts.password}"]


def _forms(secret: str) -> set[str]:
    forms: set[str] = set()
    # A DSN's password is known as the DSN spells it (percent-encoded); clients decode it.
    for spelling in {secret, unquote(secret)}:
        forms |= {spelling, quote(spelling, safe=""), quote_plus(spelling)}
        forms.add(json.dumps(spelling)[1:-1])
        encoded = base64.b64encode(spelling.encode()).decode()
        forms.add(encoded)
        forms.add(encoded.rstrip("="))
        forms.add(base64.urlsafe_b64encode(spelling.encode()).decode().rstrip("="))
    return {f for f in forms if len(f) >= 4}


class Redactor:
    """Replaces known secrets (in every encoding we emit) and credential-shaped text.

    ``enabled=False`` exists for the test that proves redaction is what keeps secrets out.
    """

    def __init__(self, secrets: Iterable[str] = (), *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._forms: list[str] = []
        self._learnt: set[str] = set()
        self._shortest = 0
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Learn more secrets; shorter than 4 characters are ignored (they would mask noise).
        A secret learnt before is not worked out again (a run's every scenario adds the
        target's)."""
        new = {secret for secret in secrets
               if secret and len(secret) >= 4 and secret not in self._learnt}
        if not new:
            return
        self._learnt |= new
        forms = set(self._forms)
        for secret in new:
            forms |= _forms(secret)
        # Longest first, so a secret is masked before any of its substrings.
        self._forms = sorted(forms, key=len, reverse=True)
        self._shortest = len(self._forms[-1]) if self._forms else 0

    def __call__(self, text: str) -> str:
        if not self.enabled or not text:
            return text
        text = self.known(text)
        for pattern, replacement in _patterns_for(text):
            text = pattern.sub(replacement, text)
        return text

    def known(self, text: str) -> str:
        """Only the known secrets masked, not credential-shaped text: for a document written
        by people and kept in the repository (the runbook), whose ``API_KEY: `command```
        lines the patterns would take for credentials."""
        if not self.enabled or len(text) < max(self._shortest, 1):  # a shorter text holds none
            return text
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def data(self, value: object) -> object:
        """Redact every string inside a JSON-like structure (dicts, lists, scalars)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


def redact_log_records(redact: Redactor) -> Callable[[], None]:
    """Make every log record created from now on carry its message (and traceback) redacted,
    whichever handler writes it: captured logs, live logs, a log file. Client libraries log
    request headers at DEBUG (botocore its ``Authorization``), so this is where those stop.

    Returns the function that puts the previous record factory back.
    """
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: logging reports it when it is emitted
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    logging.setLogRecordFactory(factory)

    def restore() -> None:
        logging.setLogRecordFactory(previous)

    return restore
