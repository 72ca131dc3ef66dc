"""Incident Response > Data Breach / Security Incident: accounts attacked from one address.

``security-breach``: victim accounts (``runbook-canary-victim-<hex>@...``: runbook-made, so
removable, but standing for real users: the audit reviews count failed logins against them)
get a burst of failed logins from one address (``X-Forwarded-For``, a documentation address),
at least the audit reviews' threshold (10 within 10 minutes), then a successful login to the
first with its stolen password. The victims' ids and what the API's and the worker's stored
``API_SECRET`` held before go to a private state file, so any revert (the drill's own or the
guard's in another process) removes exactly them and puts the secrets back; what the
attacker holds (passwords, the stolen session) stays in this process's memory (``ATTACKER``).
The revert also undoes what the response changed (``ADMIN_TOKEN`` minted again: revoke-all
made the old one invalid) and deletes the attack's rows from the audit log, so the weekly
review does not report the drill as an attack; the record keeps what happened.

The section's IMMEDIATE STEPS 1-4 and 6 are carried out and each proved: the affected
accounts locked (the attacker's password gets 403), ``API_SECRET`` rotated in the api and the
worker (the stolen session and ``ADMIN_TOKEN`` get 401), every token revoked (even one issued
after the rotation), new logins work, the audit log shows each lock and the revoke with actor
and time, and a timeline written. Step 5 and the investigation are for people (@manual).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import secrets
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from pydantic import SecretStr

from runbook.actions import users
from runbook.clients import http_client
from runbook.config import Target
from runbook.drills.engine import Incident, fixed
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.incidents.steps import StepLog, output
from runbook.drills.processes import read_json
from runbook.errors import SandboxError
from runbook.platforms.base import chained, library_call, record
from runbook.probes import Verdict, canaries, describe_error, run_probe
from runbook.probes.postgres import connect
from runbook.results import Activity, ProbeResult
from runbook.sandbox import Sandbox
from runbook.timeouts import Timeouts

SECTION = "Incident Response > Data Breach / Security Incident"
#: A documentation address (TEST-NET-3, RFC 5737): never a real client's.
ATTACKER_IP = "203.0.113.66"
#: The audit reviews' burst: this many failed logins from one address within the window.
BURST_FAILURES = 10
BURST_WINDOW_S = 600.0
#: How long a restart may take before it is recorded as failed.
RESTART_TIMEOUT_S = 30.0
_ROTATED = ("api", "worker")


@dataclass(frozen=True)
class Compromised:
    """One attacked account and what the attacker holds of it (in memory only)."""

    user_id: str
    email: str
    password: SecretStr = field(repr=False)
    #: The session the attacker opened with the stolen password (``None``: none opened).
    token: SecretStr | None = field(default=None, repr=False)


class AttackerNotebook:
    """What the simulated attacker knows, by account id, in this process's memory only:
    the game day uses it to prove that the response shut the attacker out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, Compromised] = {}

    def note(self, account: Compromised) -> None:
        with self._lock:
            self._accounts[account.user_id] = account

    def forget(self, user_id: str) -> None:
        with self._lock:
            self._accounts.pop(user_id, None)

    def secrets(self) -> list[str]:
        """Every password and token held, for redaction."""
        with self._lock:
            return [s.get_secret_value() for a in self._accounts.values()
                    for s in (a.password, a.token) if s is not None]

    def __iter__(self) -> Iterator[Compromised]:
        with self._lock:
            return iter(list(self._accounts.values()))


ATTACKER = AttackerNotebook()


# -- the state file ----------------------------------------------------------------------------


def breach_state_file(context: DrillContext) -> Path:
    """The ids of every canary the breach game day made (attacked or responding), and the
    stored ``API_SECRET`` of the api and the worker before it (0600: secrets)."""
    return context.state_directory() / "security-breach.json"


def _write_private(path: Path, document: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(dict(document), handle)
    tmp.replace(path)


def remember_canary(context: DrillContext, user_id: str, role: str) -> None:
    """Add a canary to the breach state file (before anything else is done with it)."""
    path = breach_state_file(context)
    document = read_json(path) or {"canaries": []}
    document["canaries"] = [*document.get("canaries", []), {"id": user_id, "role": role}]
    _write_private(path, document)


def breach_canaries(context: DrillContext) -> list[str]:
    """The canary ids in the breach state file (none when there is no file)."""
    document = read_json(breach_state_file(context)) or {}
    return [str(entry["id"]) for entry in document.get("canaries", [])
            if isinstance(entry, dict) and entry.get("id")]


def _remember_secrets(context: DrillContext) -> None:
    """Keep what the api's and the worker's stored ``API_SECRET`` are before the response
    rotates them (the first time only: a revert still due keeps the first "before")."""
    path = breach_state_file(context)
    document = read_json(path) or {"canaries": []}
    if "secrets_before" in document:
        return
    stored = Sandbox(context.home).stored_variables()
    document["secrets_before"] = {
        service: {"had": "API_SECRET" in stored.get(service, {}),
                  "value": stored.get(service, {}).get("API_SECRET")} for service in _ROTATED}
    _write_private(path, document)


def _attempt(api: str, email: str, password: str, ip: str, timeouts: Timeouts
             ) -> tuple[int | None, str | None]:
    """One login from ``ip`` (``X-Forwarded-For``): the status and, on 200, the token."""
    with http_client(timeouts) as client:
        try:
            answer = client.post(f"{api}{users.LOGIN_PATH}",
                                 json={"email": email, "password": password},
                                 headers={"X-Forwarded-For": ip})
        except httpx.HTTPError:
            return None, None
    token = answer.json().get("token") if answer.status_code == 200 else None
    return answer.status_code, token if isinstance(token, str) else None


def remove_attack_rows(target: Target, timeouts: Timeouts, ip: str) -> int:
    """Delete the logins the attack planted in the audit log (from ``ip``, naming a runbook
    canary), so the weekly audit review does not find the drill's attack; returns how many.
    The game day's own record and timeline keep what happened."""
    with connect(target.require("DATABASE_URL"), timeouts, read_only=False) as conn:
        return conn.execute(
            'DELETE FROM "AuditLog" WHERE "ip" = %s'
            " AND \"action\" IN ('LOGIN_FAILURE', 'LOGIN_SUCCESS')"
            " AND coalesce(\"metadata\"->>'email', '') LIKE %s",
            (ip, f"{canaries.CANARY_PREFIX}%")).rowcount


def _admin_status(api: str, token: str, timeouts: Timeouts) -> int | None:
    with http_client(timeouts) as client:
        try:
            return client.get(f"{api}{users.USERS_PATH}?limit=1",
                              headers={"Authorization": f"Bearer {token}"}).status_code
        except httpx.HTTPError:
            return None


@fault("security-breach",
       "accounts attacked: a burst of failed logins from one address, then a successful one"
       " with a stolen password")
class SecurityBreach:
    """``params``: ``accounts`` (victims, default 2), ``failures_per_account`` (default 5),
    ``attacker_ip`` (default ``203.0.113.66``)."""

    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        target, timeouts = context.target, context.timeouts
        api = target.require("API_URL")
        accounts = int(params.get("accounts") or 2)
        failures = int(params.get("failures_per_account") or 5)
        ip = str(params.get("attacker_ip") or ATTACKER_IP)
        redact = context.redactor()

        def body() -> tuple[bool, str, str]:
            _remember_secrets(context)
            victims: list[Compromised] = []
            for _ in range(accounts):
                canary = users.create_canary(target, timeouts, kind=canaries.VICTIM)
                remember_canary(context, canary.id, "attacked")
                victim = Compromised(canary.id, canary.email, canary.password)
                ATTACKER.note(victim)
                victims.append(victim)
            redact.add(ATTACKER.secrets())
            guesses = [(v.email, f"guess-{n}-{os.urandom(4).hex()}") for v in victims
                       for n in range(failures)]
            # Two at a time: a burst within seconds, without queueing ten bcrypt checks on
            # a busy machine past the client's read timeout.
            with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
                statuses = list(pool.map(
                    lambda guess: _attempt(api, guess[0], guess[1], ip, timeouts)[0], guesses))
            stolen_status, token = _attempt(api, victims[0].email,
                                            victims[0].password.get_secret_value(), ip,
                                            timeouts)
            if token is not None:
                ATTACKER.note(Compromised(victims[0].user_id, victims[0].email,
                                          victims[0].password, SecretStr(token)))
                redact.add([token])
            refused = sum(1 for s in statuses if s == 401)
            said = (f"{accounts} accounts ({', '.join(v.email for v in victims)}); from {ip}:"
                    f" {refused}/{len(guesses)} failed logins answered 401, then the stolen"
                    f" password of {victims[0].email} logged in: HTTP {stolen_status}")
            ok = refused == len(guesses) and token is not None
            return ok, said, "" if ok else "the attack did not go as planned"

        return record("attack the accounts",
                      library_call("httpx.post", f"{api}{users.LOGIN_PATH}",
                                   f"X-Forwarded-For: {ip}"), body, redact)

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        target, timeouts = context.target, context.timeouts
        sandbox = Sandbox(context.home)

        def body() -> tuple[bool, str, str]:
            said: list[str] = []
            problems: list[str] = []
            for user_id in breach_canaries(context):
                removal = users.remove_canary(target, timeouts, user_id)
                ATTACKER.forget(user_id)
                said.append(f"canary {user_id} {'removed' if removal.existed else 'gone'}")
                if not removal.gone:
                    problems.append(f"canary {user_id}: {'; '.join(removal.problems)}")
            ip = str(params.get("attacker_ip") or ATTACKER_IP)
            try:
                planted = remove_attack_rows(target, timeouts, ip)
            except psycopg.Error as exc:
                problems.append(f"the attack's audit rows: {describe_error(exc)}")
            else:
                said.append(f"{planted} audit rows of the attack from {ip} removed")
            before = (read_json(breach_state_file(context)) or {}).get("secrets_before", {})
            stored = sandbox.stored_variables()
            for service in _ROTATED:
                was = before.get(service) or {"had": False, "value": None}
                now = stored.get(service, {})
                if ("API_SECRET" in now) == was["had"] and now.get("API_SECRET") == was["value"]:
                    continue
                try:
                    if was["had"]:
                        sandbox.set_variables(service, {"API_SECRET": was["value"]})
                    else:
                        sandbox.unset_variables(service, ["API_SECRET"])
                    after = sandbox.restart(service, timeout=RESTART_TIMEOUT_S)
                except SandboxError as exc:
                    problems.append(str(exc))
                    continue
                said.append(f"{service}'s API_SECRET as before the drill (pid {after.pid})")
            try:
                token = sandbox.refresh_admin_token()
            except SandboxError as exc:
                problems.append(str(exc))
            else:
                status = _admin_status(target.require("API_URL"), token, timeouts)
                said.append(f"ADMIN_TOKEN minted again: the API answers it HTTP {status}")
                if status != 200:
                    problems.append(f"the fresh ADMIN_TOKEN got HTTP {status}, expected 200")
            if not problems:
                breach_state_file(context).unlink(missing_ok=True)
            return not problems, "; ".join(said) or "nothing to undo", "; ".join(problems)

        return record("remove the accounts, put API_SECRET and ADMIN_TOKEN back",
                      chained(library_call("runbook.sandbox.Sandbox.set_variables", "api",
                                           "worker", "API_SECRET"),
                              library_call("runbook.sandbox.Sandbox.refresh_admin_token")),
                      body, context.redactor())


# -- the response -------------------------------------------------------------------------------


def _when(value: object) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def audit_entries(target: Target, timeouts: Timeouts, token: str, action: str | None = None,
                  limit: int = 500) -> list[dict[str, Any]]:
    """``GET /api/admin/audit-logs`` (newest first). Raises ``httpx.HTTPError`` and
    ``RuntimeError`` for an answer other than 200."""
    params: dict[str, Any] = {"limit": limit}
    if action:
        params["action"] = action
    with http_client(timeouts, headers={"Authorization": f"Bearer {token}"}) as http:
        answer = http.get(f"{target.require('API_URL')}/api/admin/audit-logs", params=params)
    if answer.status_code != 200:
        raise RuntimeError(f"the audit log answered HTTP {answer.status_code}")
    entries = answer.json().get("entries", [])
    return [e for e in entries if isinstance(e, dict)]


def anomalies(target: Target, timeouts: Timeouts, token: str, *,
              failures: int = BURST_FAILURES, window_s: float = BURST_WINDOW_S
              ) -> list[dict[str, Any]]:
    """Addresses with at least ``failures`` failed logins within the last ``window_s`` (the
    audit reviews' threshold): the address, the count, the first failure's time, the
    accounts tried (e-mail -> id) and the accounts that then logged in from it."""
    since = datetime.now(UTC) - timedelta(seconds=window_s)
    failed = [e for e in audit_entries(target, timeouts, token, "LOGIN_FAILURE")
              if (_when(e.get("createdAt")) or since) > since and e.get("ip")]
    by_ip: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in failed:
        by_ip[str(entry["ip"])].append(entry)
    found: list[dict[str, Any]] = []
    bursts = {ip: rows for ip, rows in by_ip.items() if len(rows) >= failures}
    if not bursts:
        return found
    succeeded = audit_entries(target, timeouts, token, "LOGIN_SUCCESS")
    for ip, rows in sorted(bursts.items(), key=lambda item: -len(item[1])):
        first = min(_when(r.get("createdAt")) or since for r in rows)
        accounts = {str((r.get("metadata") or {}).get("email")): r.get("userId") for r in rows}
        logged_in = {str((s.get("metadata") or {}).get("email")): {
                         "userId": s.get("userId"), "at": s.get("createdAt")}
                     for s in succeeded if s.get("ip") == ip
                     and (_when(s.get("createdAt")) or first) >= first}
        found.append({"ip": ip, "failures": len(rows), "first_at": first.isoformat(),
                      "accounts": accounts, "compromised": logged_in})
    return found


def _call(target: Target, timeouts: Timeouts, method: str, path: str, token: str | None,
          body: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
          ) -> tuple[int | None, Any]:
    """One API request: its status (``None`` when no answer came) and parsed JSON."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    with http_client(timeouts) as http:
        try:
            answer = http.request(method, f"{target.require('API_URL')}{path}", headers=sent,
                                  json=body)
        except httpx.HTTPError:
            return None, None
    try:
        return answer.status_code, answer.json()
    except ValueError:
        return answer.status_code, None


def _get(target: Target, timeouts: Timeouts, path: str, token: str | None
         ) -> Callable[[], tuple[int | None, Any]]:
    """``GET path`` with ``token``, as a call to make later."""
    return lambda: _call(target, timeouts, "GET", path, token)


def _attacker_login(target: Target, timeouts: Timeouts, account: Compromised
                    ) -> Callable[[], tuple[int | None, Any]]:
    """The attacker logging in to ``account`` with its stolen password, from their address."""
    return lambda: _call(target, timeouts, "POST", users.LOGIN_PATH, None,
                         {"email": account.email,
                          "password": account.password.get_secret_value()},
                         {"X-Forwarded-For": ATTACKER_IP})


def attacker_shut_out(target: Target, timeouts: Timeouts) -> ProbeResult:
    """Every account the (simulated) attacker holds is shut: their stolen session is
    rejected (401) and their password is refused (403, locked), from their address. Uses
    what the attacker holds (``ATTACKER``, this process's memory); records the statuses."""
    expected = "the attacker's sessions rejected (401) and their passwords refused (403)"

    def body() -> Verdict:
        observed: dict[str, Any] = {}
        problems: list[str] = []
        for account in ATTACKER:
            token = account.token.get_secret_value() if account.token else None
            session = _call(target, timeouts, "GET", users.ME_PATH, token)[0] \
                if token else None
            login = _attacker_login(target, timeouts, account)()[0]
            observed[account.email] = {"stolen_session": session, "stolen_password": login}
            if token is not None and session != 401:
                problems.append(f"the stolen session of {account.email} got HTTP {session}")
            if login != 403:
                problems.append(f"the stolen password of {account.email} got HTTP {login}")
        if problems:
            return Verdict(False, expected, "; ".join(problems), observed,
                           advice="security-incident")
        return Verdict(True, expected, observed=observed)

    return run_probe("security", "attacker shut out", target, timeouts, body,
                     expected=expected)


def timeline_document(activities: Sequence[Activity], anomaly: Mapping[str, Any] | None,
                      detected_by: str) -> str:
    """Step 6: the incident's timeline as Markdown, from the audit log's first failed login
    and the response's own records; manual steps listed as such."""
    lines = ["# Security incident timeline (game day)", "",
             "| time (UTC) | what | who / evidence |", "|---|---|---|"]
    if anomaly:
        lines.append(f"| {anomaly['first_at']} | first of {anomaly['failures']} failed"
                     f" logins from {anomaly['ip']} | audit log LOGIN_FAILURE |")
        for email, login in anomaly.get("compromised", {}).items():
            lines.append(f"| {login.get('at')} | {email} logged in from {anomaly['ip']} |"
                         " audit log LOGIN_SUCCESS |")
    lines.append(f"| (before the response) | detected | {detected_by} |")
    for activity in activities:
        lines.append(f"| {activity.timing.started_at.isoformat()} | {activity.name} |"
                     f" {'ok' if activity.ok else 'FAILED'} ({activity.elapsed_s:.2f} s) |")
    lines += [
        "", "## Left to people (not automated)", "",
        "- 5. Notify affected users (what, when, which accounts; legal deadlines apply)",
        "- Investigation 1-5: audit logs, access logs for unusual IPs, recent deployments,"
        " unauthorized database access, compromised dependencies",
        "- Post-incident 1-4: security measures, threat model, security review, external"
        " audit",
        "- Reset the affected accounts' passwords before unlocking them (not in the runbook)",
        "",
    ]
    return "\n".join(lines)


class _Responder:
    """The incident responder: a canary admin whose password lives in memory only."""

    def __init__(self, context: DrillContext, book: StepLog) -> None:
        self.context = context
        self.book = book
        admin = users.create_admin(context.target, context.timeouts)
        remember_canary(context, admin.id, "responder")
        self.id, self.email, self.password = admin.id, admin.email, admin.password
        self.token = admin.token.get_secret_value()
        book.redact.add([self.password.get_secret_value(), self.token])

    def login(self, name: str) -> None:
        attempt = users.login(self.context.target, self.context.timeouts, self.email,
                              self.password)
        if attempt.token is not None:
            self.token = attempt.token.get_secret_value()
            self.book.redact.add([self.token])
        self.book.add(attempt, name)


def _expect(book: StepLog, name: str, function: str, want: int,
            call: Callable[[], tuple[int | None, Any]]) -> bool:
    """A proof step: ``call`` must answer HTTP ``want``."""

    def body() -> tuple[bool, str, str]:
        status, answer = call()
        error = answer.get("error") if isinstance(answer, Mapping) else None
        ok = status == want
        return ok, output(f"HTTP {status}{f' {error!r}' if error else ''} (expected {want})"), (
            "" if ok else f"HTTP {status}, expected {want}")

    return book.step(name, library_call("httpx", function), body).ok


class Breach(Incident):
    name = "data-breach"
    section = SECTION
    fault = "security-breach"
    params = fixed(accounts=2, failures_per_account=5, attacker_ip=ATTACKER_IP)
    description = ("accounts attacked: a burst of failed logins from one address, then a"
                   " successful one with a stolen password")
    signal = (f"a burst of {BURST_FAILURES} failed logins from one address within"
              f" {BURST_WINDOW_S / 60:g} minutes in the audit log")
    notes = ("runbook: steps 1-4 and 6 are automated and proved; step 5 (notify affected"
             " users), the Investigation and Post-Incident lists are for people (@manual)."
             " Corrections: rotating API_SECRET already invalidates every token, so step 3"
             " matters for tokens issued after the rotation, and must come after it; rotate it"
             " in api AND worker together (the worker signs service tokens with it);"
             " ADMIN_TOKEN and any other long-lived token must be re-issued afterwards; the"
             " locked accounts' passwords must be reset before they are unlocked (the attacker"
             " knows them: unlocking re-opens the account); the rotation is a platform change"
             " the application's audit log does not show, so the timeline must record it",)

    def verify(self) -> ProbeResult:
        return attacker_shut_out(self.context.target, self.context.timeouts)

    def runbook_steps(self) -> list[Activity]:
        context = self.context
        book = StepLog(context, *ATTACKER.secrets())
        target, timeouts = context.target, context.timeouts
        admin_token = target.require("ADMIN_TOKEN")
        started = datetime.now(UTC)
        responder = _Responder(context, book)
        found: list[dict[str, Any]] = []

        def affected() -> tuple[bool, str, str]:
            found.extend(anomalies(target, timeouts, admin_token))
            return True, output(f"{len(found)} address(es) with a burst of failed logins",
                                found), ""

        book.step("identify the affected accounts (the alert's evidence: the audit log)",
                  library_call("httpx.get", "/api/admin/audit-logs?action=LOGIN_FAILURE"),
                  affected, runbook_says="Investigation 1: review audit logs")
        victims = {str(uid): email for a in found for email, uid in a["accounts"].items()
                   if uid}
        for user_id, email in sorted(victims.items(), key=lambda item: item[1]):
            if not canaries.is_canary_email(email):
                book.step(f"1. lock {email}", (), lambda: (True, output(
                    "not a runbook canary: a game day locks runbook-made accounts only"), ""))
                continue
            book.add(users.lock_user(target, timeouts, responder.token, user_id, True),
                     f"1. lock all affected user accounts: {email}",
                     runbook_says="curl -X POST /api/admin/users/lock")
        attacked = [a for a in ATTACKER if a.user_id in victims]
        for account in attacked:
            _expect(book, f"proof: the attacker's password for {account.email} is refused",
                    "post /api/auth/login", 403, _attacker_login(target, timeouts, account))

        new_secret = secrets.token_hex(32)
        book.redact.add([new_secret])
        for service in _ROTATED:
            book.set_variables(f"2. rotate all secrets: API_SECRET in {service} (the platform"
                               f" restarts it)", service, {"API_SECRET": new_secret},
                               runbook_says=f"railway variables --set API_SECRET=... --service"
                                            f" {service}")
        for account in [a for a in attacked if a.token is not None]:
            token = account.token.get_secret_value() if account.token else None
            _expect(book, f"proof: the attacker's stolen session of {account.email} is"
                    " rejected", "get /api/auth/me", 401, _get(target, timeouts, users.ME_PATH,
                                                               token))
        _expect(book, "proof: ADMIN_TOKEN (signed with the old secret) is rejected",
                "get /api/admin/users", 401,
                lambda: _call(target, timeouts, "GET", f"{users.USERS_PATH}?limit=1",
                              admin_token))
        responder.login("3. (the responder logs in with the new secret)")
        issued_after_rotation = responder.token

        def revoke() -> tuple[bool, str, str]:
            status, answer = _call(target, timeouts, "POST", "/api/admin/tokens/revoke-all",
                                   issued_after_rotation)
            return status == 200, output(f"HTTP {status}: {answer}"), (
                "" if status == 200 else f"HTTP {status}")

        book.step("3. revoke all active access tokens",
                  library_call("httpx.post", "/api/admin/tokens/revoke-all"), revoke,
                  runbook_says="POST /api/admin/tokens/revoke-all")
        _expect(book, "proof: a token issued after the rotation is revoked too",
                "get /api/auth/me", 401,
                lambda: _call(target, timeouts, "GET", users.ME_PATH, issued_after_rotation))
        responder.login("proof: new logins are accepted")
        _expect(book, "proof: the new session works", "get /api/admin/users", 200,
                lambda: _call(target, timeouts, "GET", f"{users.USERS_PATH}?limit=1",
                              responder.token))
        for account in attacked:
            _expect(book, f"proof: {account.email} still cannot log in (locked)",
                    "post /api/auth/login", 403, _attacker_login(target, timeouts, account))

        def review() -> tuple[bool, str, str]:
            entries = [e for e in audit_entries(target, timeouts, responder.token, limit=200)
                       if (_when(e.get("createdAt")) or started) >= started]
            locks = {str((e.get("metadata") or {}).get("targetUserId")): e for e in entries
                     if e.get("action") == "USER_LOCKED"}
            revokes = [e for e in entries if e.get("action") == "TOKENS_REVOKED"]
            wanted = [a.user_id for a in attacked]
            missing = [uid for uid in wanted if uid not in locks]
            shown = [{k: e.get(k) for k in ("action", "userId", "ip", "createdAt", "metadata")}
                     for e in entries if e.get("action") in ("USER_LOCKED", "TOKENS_REVOKED")]
            by_responder = all(locks[uid].get("userId") == responder.id for uid in wanted
                               if uid in locks) and all(r.get("userId") == responder.id
                                                        for r in revokes)
            ok = not missing and bool(revokes) and by_responder
            return ok, output(
                f"{len(locks)} USER_LOCKED and {len(revokes)} TOKENS_REVOKED entries, each with"
                " its actor (the responder) and time; the secret rotation is a platform change"
                " and not in the application's audit log", shown), (
                "" if ok else f"missing: locks of {missing}, revokes {len(revokes)},"
                              f" by the responder {by_responder}")

        book.step("4. enable audit log review: the response's actions in the audit log",
                  library_call("httpx.get", "/api/admin/audit-logs"), review,
                  runbook_says="review the audit log")

        def document() -> tuple[bool, str, str]:
            text = timeline_document(book.activities, found[0] if found else None,
                                     "scheduled check: no address is guessing passwords")
            path = context.state_directory() / (
                f"{started.strftime('%Y%m%dT%H%M%SZ')}-security-incident-timeline.md")
            path.write_text(book.redact(text), encoding="utf-8")
            return True, output(f"written to {path}") + "\n" + text, ""

        book.step("6. document the incident timeline", library_call("pathlib.Path.write_text"),
                  document, runbook_says="document incident timeline")
        return book.activities


__all__ = ["ATTACKER", "ATTACKER_IP", "Breach", "SecurityBreach", "anomalies",
           "attacker_shut_out", "timeline_document"]
