"""Redaction: known secrets in every encoding we emit, and credential-shaped text."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from runbook.redact import MASK, Redactor, redact_url

SECRET = "pa$$w0rd/with:odd&chars"


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        quote(SECRET, safe=""),
        json.dumps(SECRET)[1:-1],
        base64.b64encode(SECRET.encode()).decode(),
    ],
)
def test_a_known_secret_is_masked_in_every_form(form: str) -> None:
    redact = Redactor([SECRET])
    assert form not in redact(f"before {form} after")


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("postgresql://lv:s3cretpw@db:5432/lv", "s3cretpw"),
        ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop"),
        ("token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlX2hlcmU", "c2lnbmF0dXJl"),
        ("RESEND_API_KEY=re_1234567890abcdef", "re_1234567890abcdef"),
        ('{"api_secret": "zzzzyyyyxxxx"}', "zzzzyyyyxxxx"),
        # Each pattern alone, in another case where it allows one.
        ("REDIS_URL=rediss://default:Zq9-secretpw@cache:6380", "Zq9-secretpw"),
        ("authorization: BASIC dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
        ("seen eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlX2hlcmU in a log",
         "c2lnbmF0dXJl"),
        ("key re_AbCdEfGh12345 in a message", "re_AbCdEfGh12345"),
        ("PASSWD: hunter2hunter", "hunter2hunter"),
        ("X-Api-Key: k3y-v4lue-1234", "k3y-v4lue-1234"),
        ("refresh_Token=abcdefgh123", "abcdefgh123"),
    ],
)
def test_credential_shaped_text_is_masked_whoever_it_belongs_to(text: str, leak: str) -> None:
    out = Redactor()(text)
    assert leak not in out
    assert MASK in out


def test_redaction_can_be_turned_off_and_then_leaks() -> None:
    assert SECRET in Redactor([SECRET], enabled=False)(SECRET)


def test_structures_are_redacted_throughout() -> None:
    redact = Redactor([SECRET])
    data = redact.data({"a": [SECRET, {"b": f"x{SECRET}y"}], SECRET: 1})
    assert SECRET not in json.dumps(data)


def test_redact_url_keeps_what_helps_diagnosis() -> None:
    assert redact_url("redis://:pw@127.0.0.1:6379/0") == f"redis://:{MASK}@127.0.0.1:6379/0"
    assert redact_url("https://api.test/health") == "https://api.test/health"


def test_a_pattern_skipped_for_lacking_its_needles_would_have_masked_nothing() -> None:
    """Each credential pattern scans only text holding one of its needles (for ASCII text
    looked for without a regular expression). On random text built from credential shapes
    and their parts, in any case, with the characters a case-insensitive match takes for
    ASCII letters (dotted capital I, dotless i, long s, the Kelvin sign) inside the needles,
    the redactor masks exactly what every pattern applied to all text masks."""
    import random

    from runbook.redact import _PATTERNS

    def every_pattern(text: str) -> str:
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    pieces = ["://", "bearer", "basic", "eyJ", "re_", "passw", "password", "secret", "token",
              "api", "key", "_", "-", "=", ": ", " ", "\n", "x", "hunter22xyz", "@host",
              "https://u:pw1234", "eyJabcdef.ghijkl.mnopqr", "re_abcdefghij", "12345",
              "\u0130", "\u0131", "\u017f", "\u212a", "ba\u017fic", "\u017fecret",
              "ba\u0131c", "bas\u0130c", "to\u212aen", "api\u212aey", "pa\u017fsword"]
    chosen = random.Random(17)
    redact = Redactor()
    masked = 0
    for _ in range(20_000):
        text = "".join(chosen.choice(pieces) for _ in range(chosen.randint(0, 6)))
        text = "".join(c.upper() if chosen.random() < 0.3 else c for c in text)
        expected = every_pattern(text)
        masked += expected != text
        assert redact(text) == expected, text
    assert masked > 1_000  # the text held credentials often enough to tell


def test_secrets_learnt_again_or_later_are_all_masked() -> None:
    """A run's every scenario adds the target's secrets again, and a drill may add new
    ones: each is masked, in every form, however often it was added."""
    redact = Redactor([SECRET])
    redact.add([SECRET])
    redact.add(["second-secret-value", SECRET])
    text = redact(f"{SECRET} {quote(SECRET, safe='')} second-secret-value"
                  f" {base64.b64encode(b'second-secret-value').decode()}")
    assert text == " ".join([MASK] * 4)
