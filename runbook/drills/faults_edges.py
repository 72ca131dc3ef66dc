"""Faults for the runbook's upload, e-mail, security and slow-query incidents, on the sandbox.

- ``s3-bucket-policy-deny``: a statement added to the bucket's policy denying
  ``s3:PutObject`` on its objects to everyone (S3 answers 403 to every upload, presigned
  or not). The revert removes the statements with the fault's ``Sid`` (and the policy
  when nothing else is left in it).
- ``s3-cors-missing``: the bucket's CORS configuration deleted (browsers on the web front
  end can no longer upload). The revert puts back the rule the bucket is created with,
  unless a rule letting ``WEB_URL`` PUT is already there.
- ``security-breach``: canary accounts attacked: a burst of failed logins from one address
  (``X-Forwarded-For``, a documentation address) against each, then a successful login to
  the first, whose password the attacker had. The canaries' ids are written to a state file
  so any revert (the drill's own, or the guard's in another process) removes exactly them;
  what the attacker holds (passwords, the stolen session's token) stays in this process's
  memory only (``ATTACKER``), for the game day's proof that it no longer works.
  The revert also undoes what the response changed: canaries removed (locked or not), the
  API and the worker restarted with their configured ``API_SECRET``, ``ADMIN_TOKEN``
  minted again (revoke-all made the old one invalid), then health and the admin token
  verified; the attack's logins (from the attacker's address, naming a canary) deleted from
  the audit log, so the weekly audit review does not report the drill as an attack.
- ``slow-query``: a separate process (``python -m runbook.drills.slow_query_holder``)
  holding a ``SHARE`` lock on a table the API writes, a second at a time, in a slow
  statement; its pid and start time are written under the sandbox's state directory. The
  revert stops exactly that process and terminates what is left of its connections.

Parameters are JSON and never hold a secret. Every revert is idempotent and every wait
bounded.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from botocore.exceptions import ClientError
from pydantic import SecretStr

from runbook.actions import users
from runbook.clients import http_client
from runbook.config import Target
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.processes import read_json, stop_recorded, terminate_sessions
from runbook.drills.slow_query_holder import APPLICATION_NAME as SLOW_QUERY_APP
from runbook.errors import SandboxError
from runbook.platforms.base import record
from runbook.probes import describe_error, storage
from runbook.probes.postgres import connect
from runbook.results import Activity
from runbook.sandbox import Sandbox
from runbook.sandbox.components import package_root
from runbook.sandbox.procs import start_time
from runbook.sandbox.services.s3 import cors_rule
from runbook.timeouts import Timeouts

#: The ``Sid`` of the statement ``s3-bucket-policy-deny`` adds (and only it is removed).
DENY_SID = "RunbookDrillDenyUploads"
#: A documentation address (TEST-NET-3, RFC 5737): never a real client's.
ATTACKER_IP = "203.0.113.66"
#: How long a restart may take before it is recorded as failed.
RESTART_TIMEOUT_S = 30.0
#: How long the slow-query holder may take to hold its first lock.
HOLDER_START_TIMEOUT_S = 15.0
#: Grace between SIGTERM and SIGKILL for the holder (it holds a lock at most ``hold_s``).
HOLDER_STOP_GRACE_S = 5.0




def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2), encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


# -- S3 ------------------------------------------------------------------------------------


def bucket_policy(s3: Any, bucket: str) -> dict[str, Any] | None:
    """The bucket's policy document, or ``None`` when it has none. Raises ``ClientError``
    for anything but ``NoSuchBucketPolicy``."""
    try:
        text = s3.get_bucket_policy(Bucket=bucket)["Policy"]
    except ClientError as exc:
        if storage.error_code(exc)[0] == "NoSuchBucketPolicy":
            return None
        raise
    document = json.loads(text)
    return document if isinstance(document, dict) else None


def statements(policy: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The policy's statements as a list (a single statement may be given as an object)."""
    if not policy:
        return []
    found = policy.get("Statement", [])
    return [found] if isinstance(found, dict) else [s for s in found if isinstance(s, dict)]


def put_statements(s3: Any, bucket: str, policy: Mapping[str, Any] | None,
                   kept: list[dict[str, Any]]) -> str:
    """Write ``kept`` back as the bucket's policy, or delete the policy when empty."""
    if not kept:
        s3.delete_bucket_policy(Bucket=bucket)
        return "policy deleted (no statement left)"
    document = {"Version": (policy or {}).get("Version", "2012-10-17"), "Statement": kept}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(document))
    return f"policy written with {len(kept)} statement(s)"


def deny_statement(bucket: str, sid: str = DENY_SID) -> dict[str, Any]:
    """Deny ``s3:PutObject`` on every object of ``bucket`` to every principal."""
    return {"Sid": sid, "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/*"}


@fault("s3-bucket-policy-deny",
       "a bucket policy statement denies s3:PutObject on the bucket's objects to everyone")
class BucketPolicyDeny:
    """``params``: ``sid`` (default ``RunbookDrillDenyUploads``)."""

    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        bucket = context.target.require("S3_BUCKET")
        sid = str(params.get("sid") or DENY_SID)

        def body() -> tuple[bool, str, str]:
            s3 = storage.client(context.target, context.timeouts)
            policy = bucket_policy(s3, bucket)
            kept = [s for s in statements(policy) if s.get("Sid") != sid]
            said = put_statements(s3, bucket, policy, [*kept, deny_statement(bucket, sid)])
            return True, f"{said}: Deny s3:PutObject on arn:aws:s3:::{bucket}/* ({sid})", ""

        return record("deny uploads in the bucket policy",
                      ("aws", "s3api", "put-bucket-policy", "--bucket", bucket,
                       f"(Sid {sid}: Deny s3:PutObject)"), body, context.redactor())

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        bucket = context.target.require("S3_BUCKET")
        sid = str(params.get("sid") or DENY_SID)

        def body() -> tuple[bool, str, str]:
            s3 = storage.client(context.target, context.timeouts)
            policy = bucket_policy(s3, bucket)
            found = statements(policy)
            kept = [s for s in found if s.get("Sid") != sid]
            if policy is None or len(kept) == len(found):
                return True, f"no statement {sid} in the bucket policy", ""
            return True, put_statements(s3, bucket, policy, kept), ""

        return record("remove the drill's statement from the bucket policy",
                      ("aws", "s3api", "put-bucket-policy", "--bucket", bucket,
                       f"(without Sid {sid})"), body, context.redactor())


def cors_allows_put(s3: Any, bucket: str, origin: str) -> bool:
    """Whether the bucket's CORS rules let ``origin`` PUT (no configuration: no)."""
    try:
        rules = s3.get_bucket_cors(Bucket=bucket).get("CORSRules", [])
    except ClientError as exc:
        if storage.error_code(exc)[0] == "NoSuchCORSConfiguration":
            return False
        raise
    return any(storage.rule_allows_put(rule, origin) for rule in rules)


def restore_cors(target: Target, timeouts: Timeouts) -> str:
    """Put the rule the bucket is created with (``WEB_URL`` may GET, PUT and HEAD) when no
    rule lets ``WEB_URL`` PUT; says what it did. Raises ``ClientError``."""
    bucket = target.require("S3_BUCKET")
    web_url = target.require("WEB_URL")
    origin = storage.origin_of(web_url)
    s3 = storage.client(target, timeouts)
    if cors_allows_put(s3, bucket, origin):
        return f"CORS already lets {origin} PUT: left as it is"
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [cors_rule(origin)]})
    return f"CORS rule put back: {origin} may GET, PUT and HEAD (headers *, max age 3000 s)"


@fault("s3-cors-missing", "the bucket's CORS configuration deleted")
class CorsMissing:
    """No parameters."""

    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        bucket = context.target.require("S3_BUCKET")

        def body() -> tuple[bool, str, str]:
            storage.client(context.target, context.timeouts).delete_bucket_cors(Bucket=bucket)
            return True, f"CORS configuration of {bucket} deleted", ""

        return record("delete the bucket's CORS configuration",
                      ("aws", "s3api", "delete-bucket-cors", "--bucket", bucket), body,
                      context.redactor())

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        bucket = context.target.require("S3_BUCKET")
        return record("put the bucket's CORS rule back",
                      ("aws", "s3api", "put-bucket-cors", "--bucket", bucket),
                      lambda: (True, restore_cors(context.target, context.timeouts), ""),
                      context.redactor())


# -- security breach -----------------------------------------------------------------------


@dataclass(frozen=True)
class Compromised:
    """One attacked canary account and what the attacker holds of it (in memory only)."""

    user_id: str
    email: str
    password: SecretStr = field(repr=False)
    #: The session the attacker opened with the stolen password (``None``: none opened).
    token: SecretStr | None = field(default=None, repr=False)


class AttackerNotebook:
    """What the simulated attacker knows, by canary id, in this process's memory only:
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

    def get(self, user_id: str) -> Compromised | None:
        with self._lock:
            return self._accounts.get(user_id)

    def secrets(self) -> list[str]:
        """Every password and token held, for redaction."""
        with self._lock:
            return [s.get_secret_value() for a in self._accounts.values()
                    for s in (a.password, a.token) if s is not None]

    def __iter__(self) -> Iterator[Compromised]:
        with self._lock:
            return iter(list(self._accounts.values()))


ATTACKER = AttackerNotebook()


def breach_state_file(context: DrillContext) -> Path:
    """The ids of every canary the breach game day made (attacked or responding)."""
    return context.state_directory() / "security-breach.json"


def remember_canary(context: DrillContext, user_id: str, role: str) -> None:
    """Add a canary to the breach state file (before anything else is done with it)."""
    path = breach_state_file(context)
    document = read_json(path) or {"canaries": []}
    document["canaries"] = [*document.get("canaries", []), {"id": user_id, "role": role}]
    _write_json(path, document)


def breach_canaries(context: DrillContext) -> list[str]:
    """The canary ids in the breach state file (none when there is no file)."""
    document = read_json(breach_state_file(context)) or {}
    return [str(entry["id"]) for entry in document.get("canaries", [])
            if isinstance(entry, dict) and entry.get("id")]


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


@fault("security-breach",
       "canary accounts attacked: a burst of failed logins from one address, then a"
       " successful one with a stolen password")
class SecurityBreach:
    """``params``: ``accounts`` (canaries attacked, default 2), ``failures_per_account``
    (default 3), ``attacker_ip`` (default ``203.0.113.66``)."""

    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        target, timeouts = context.target, context.timeouts
        api = target.require("API_URL")
        accounts = int(params.get("accounts") or 2)
        failures = int(params.get("failures_per_account") or 3)
        ip = str(params.get("attacker_ip") or ATTACKER_IP)
        redact = context.redactor()

        def body() -> tuple[bool, str, str]:
            victims: list[Compromised] = []
            for _ in range(accounts):
                canary = users.create_canary(target, timeouts)
                remember_canary(context, canary.id, "attacked")
                victim = Compromised(canary.id, canary.email, canary.password)
                ATTACKER.note(victim)
                victims.append(victim)
            redact.add(ATTACKER.secrets())
            guesses = [(v.email, f"guess-{n}-{os.urandom(4).hex()}") for v in victims
                       for n in range(failures)]
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(guesses)) as pool:
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
            output = (f"{accounts} canary accounts ({', '.join(v.email for v in victims)});"
                      f" from {ip}: {refused}/{len(guesses)} failed logins answered 401, then"
                      f" the stolen password of {victims[0].email} logged in: HTTP"
                      f" {stolen_status}")
            ok = refused == len(guesses) and token is not None
            return ok, output, "" if ok else "the attack did not go as planned"

        return record("attack canary accounts",
                      ("curl", "-X", "POST", f"{api}{users.LOGIN_PATH}", "-H",
                       f"X-Forwarded-For: {ip}", "(a burst of logins)"), body, redact)

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
            for service in ("api", "worker"):
                current = sandbox.status().components[service]
                if current.running and "API_SECRET" not in current.env_overrides:
                    continue
                try:
                    after = sandbox.restart(service, timeout=RESTART_TIMEOUT_S)
                except SandboxError as exc:
                    problems.append(str(exc))
                    continue
                said.append(f"{service} restarted with its configured API_SECRET"
                            f" (pid {after.pid})")
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

        return record("remove the canaries, restore API_SECRET and ADMIN_TOKEN",
                      ("runbook", "sandbox", "restart", "api", "worker", "&&",
                       "refresh-admin-token"), body, context.redactor())


def remove_attack_rows(target: Target, timeouts: Timeouts, ip: str) -> int:
    """Delete the logins the attack planted in the audit log (from ``ip``, naming a runbook
    canary), so the weekly audit review does not find the drill's attack; returns how many.
    The game day's own record and timeline keep what happened."""
    with connect(target.require("DATABASE_URL"), timeouts, read_only=False) as conn:
        return conn.execute(
            'DELETE FROM "AuditLog" WHERE "ip" = %s'
            " AND \"action\" IN ('LOGIN_FAILURE', 'LOGIN_SUCCESS')"
            " AND coalesce(\"metadata\"->>'email', '') LIKE %s",
            (ip, f"{users.CANARY_PREFIX}%")).rowcount


def _admin_status(api: str, token: str, timeouts: Timeouts) -> int | None:
    with http_client(timeouts) as client:
        try:
            return client.get(f"{api}{users.USERS_PATH}?limit=1",
                              headers={"Authorization": f"Bearer {token}"}).status_code
        except httpx.HTTPError:
            return None


# -- slow query ----------------------------------------------------------------------------


def holder_files(context: DrillContext) -> tuple[Path, Path, Path]:
    """The holder's pid file, its own state file and its log."""
    directory = context.state_directory()
    return (directory / "slow-query-holder.json", directory / "slow-query-holder.state.json",
            directory / "slow-query-holder.log")


def stop_holder(context: DrillContext) -> str:
    """Stop the holder in the pid file (only if that pid still is the holder started then)
    and remove its files; says what it did. Idempotent."""
    pidfile, state, _ = holder_files(context)
    said, _pid = stop_recorded(pidfile, "runbook.drills.slow_query_holder",
                               grace=HOLDER_STOP_GRACE_S, name="slow-query holder")
    for path in (pidfile, state):
        path.unlink(missing_ok=True)
    return said


def terminate_backends(target: Target, timeouts: Timeouts, application_name: str
                       ) -> tuple[int, int]:
    """Terminate every session named ``application_name`` (the application's role may end
    its own sessions); returns ``(terminated, left)`` after at most a read timeout."""
    return terminate_sessions(target.require("DATABASE_URL"), timeouts, application_name)


def _holder_environment(dsn: str, state: Path, params: Params) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "RUNBOOK_SLOW_"))}
    root = str(package_root())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.update(
        RUNBOOK_SLOW_DSN=dsn, RUNBOOK_SLOW_STATE=str(state),
        RUNBOOK_SLOW_APP=str(params.get("application_name") or SLOW_QUERY_APP),
        RUNBOOK_SLOW_TABLE=str(params.get("table") or "AuditLog"),
        RUNBOOK_SLOW_HOLD_S=f"{float(params.get('hold_s') or 1.0):g}",
        RUNBOOK_SLOW_MAX_S=f"{float(params.get('max_s') or 120):g}",
    )
    return env


@fault("slow-query",
       "a long statement holds the SHARE lock a plain CREATE INDEX takes on a table the API"
       " writes, a second at a time: the API's writes to it wait")
class SlowQuery:
    """``params``: ``table`` (default ``AuditLog``), ``hold_s`` (default 1.0), ``max_s``
    (the holder's own lifetime cap, default 120), ``application_name`` (default
    ``runbook-drill-slow-query``)."""

    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        pidfile, state, log_path = holder_files(context)
        dsn = context.target.require("DATABASE_URL")
        table = str(params.get("table") or "AuditLog")

        def body() -> tuple[bool, str, str]:
            stale = stop_holder(context)  # a holder left by an earlier run goes first
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "runbook.drills.slow_query_holder"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=_holder_environment(dsn, state, params), start_new_session=True,
                    close_fds=True,
                )
            _write_json(pidfile, {"pid": proc.pid, "start": start_time(proc.pid)})
            deadline = time.monotonic() + HOLDER_START_TIMEOUT_S
            report = read_json(state)
            while report is None and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
                report = read_json(state)
            if report is None:
                why = (f"exited with code {proc.returncode}" if proc.poll() is not None
                       else f"held no lock within {HOLDER_START_TIMEOUT_S:g} s")
                return False, "", f"the slow-query holder {why}; see {log_path}"
            return True, (f"holder pid {proc.pid} (backend {report.get('backend_pid')})"
                          f" holds SHARE locks on {table!r} {report.get('hold_s')} s at a time"
                          + ("" if stale.startswith("no ") else f" ({stale} first)")), ""

        return record(f"block writes to {table}",
                      ("python", "-m", "runbook.drills.slow_query_holder", f"({table})"), body,
                      context.redactor())

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        application_name = str(params.get("application_name") or SLOW_QUERY_APP)

        def body() -> tuple[bool, str, str]:
            said = stop_holder(context)
            try:
                terminated, left = terminate_backends(context.target, context.timeouts,
                                                      application_name)
            except psycopg.Error as exc:
                down = not Sandbox(context.home).status().components["postgres"].running
                if down:  # a stopped server holds no locks
                    return True, f"{said}; the database is not running", ""
                return False, said, f"cannot check the holder's sessions: {describe_error(exc)}"
            if left:
                return False, said, f"{left} sessions of {application_name} remain"
            return True, f"{said}; {terminated} leftover sessions terminated", ""

        return record("stop the slow query", ("kill", "slow-query-holder", "&&", "select",
                                               "pg_terminate_backend(...)"),
                      body, context.redactor())


__all__ = [
    "ATTACKER",
    "ATTACKER_IP",
    "DENY_SID",
    "AttackerNotebook",
    "BucketPolicyDeny",
    "Compromised",
    "CorsMissing",
    "SecurityBreach",
    "SlowQuery",
    "breach_canaries",
    "bucket_policy",
    "cors_allows_put",
    "deny_statement",
    "holder_files",
    "put_statements",
    "remember_canary",
    "remove_attack_rows",
    "restore_cors",
    "statements",
    "stop_holder",
    "terminate_backends",
]
