"""Redaction in one place: every line, message, attachment and record passes through here.

Two layers: the exact secrets a target holds (in raw, URL-encoded, JSON-escaped and base64
forms) and patterns that look like credentials whoever they belong to (a password in a URL
or DSN, a bearer token, a JWT, a Resend key, an AWS secret).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

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


def _forms(secret: str) -> set[str]:
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    forms.add(json.dumps(secret)[1:-1])
    encoded = base64.b64encode(secret.encode()).decode()
    forms.add(encoded)
    forms.add(encoded.rstrip("="))
    forms.add(base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="))
    return {f for f in forms if len(f) >= 4}


class Redactor:
    """Replaces known secrets (in every encoding we emit) and credential-shaped text.

    ``enabled=False`` exists for the test that proves redaction is what keeps secrets out.
    """

    def __init__(self, secrets: Iterable[str] = (), *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._forms: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Learn more secrets; shorter than 4 characters are ignored (they would mask noise)."""
        forms = set(self._forms)
        for secret in secrets:
            if secret and len(secret) >= 4:
                forms |= _forms(secret)
        # Longest first, so a secret is masked before any of its substrings.
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        if not self.enabled or not text:
            return text
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
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
