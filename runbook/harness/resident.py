"""The resident pytest of ``runbook watch``: one interpreter, started once, that has imported
what a run needs and forks a fresh pytest session for each round.

    python -P -m runbook.harness.resident FD PARENT_PID

``FD`` is this end of a Unix socket pair (``runbook.resident`` holds the other). Each request
carries a run's pytest arguments, environment and directory, with the write end of the
round's output pipe; the resident forks, the child runs ``pytest`` there as ``python -m
pytest`` would (its output on the pipe, the environment replaced, default signal handlers).
The resident answers the child's pid at once and its exit code and CPU time (user and system,
the child's and what it waited for) when it ends, one round at a time.

The resident is started for one pytest command line in one directory (its first message,
``{"prepare": {"args": ..., "cwd": ...}}``), and readies itself in two steps. First it imports
what pytest does not rewrite: the dependencies of the plugins and of the harness and step
modules. What a round builds once on first use, the clients' TLS context and S3's models, is
built ahead too (``warm_up``), and so are the parsed feature files (``parse_features``; a
round parses again any file changed since). Then it configures pytest for that command line
as ``pytest.main`` would (``prepare``): the arguments parsed, the plugins, conftest, harness
and step modules imported through pytest's assertion rewriting, with what that printed or
captured kept for every round to show as its own. A round starts from that configuration:
``pytest_cmdline_main``, as ``pytest.main`` goes on to, with the round's environment in place
(the run's variables are read from ``pytest_configure`` on, never while preparing). A module
whose file has changed since the resident imported it makes the resident end before the
round (``{"stale": path}``), whether imported ahead or while configuring: a new one imports
it as a new process would (a watch running while the package is upgraded runs the new code
from its next round). A configuration
that fails ends the resident (``{"unprepared": why}``): the rounds then run as plain
processes, which report it as ever.

A round ends without the teardown of every module a new interpreter would do at exit (its
threads, exit handlers and output are seen to). The resident ends when the socket closes, and
with its parent (``PR_SET_PDEATHSIG``), even when the parent is killed.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import ctypes
import gc
import importlib
import importlib.util
import json
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.resident import HEADER, send

#: The plugins a run may load by name (``runner.Selection.plugins``): pytest rewrites them.
PLUGINS = ("pytest_bdd.plugin", "pytest_timeout", "allure_pytest_bdd.plugin",
           "pytest_rerunfailures", "xdist.plugin")
#: The packages whose modules pytest imports as plugins, conftest or tests (rewritten).
REWRITTEN = ("runbook.harness", "runbook.steps")
_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int) -> None:
    """Have the kernel send ``signum`` to this process when its parent ends (Linux; a no-op
    elsewhere, where the socket's end-of-file alone ends the resident)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)


def _imports(path: Path, package: str = "") -> set[str]:
    """The absolute module names ``path`` imports (anywhere in it); its relative imports
    resolved against ``package``, the package it is a module of (``from . import x`` in
    ``pytest_bdd/plugin.py``: ``pytest_bdd.x``)."""
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                if not parts or node.level - 1 >= len(parts):
                    continue
                base = ".".join(parts[:len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            elif node.module:
                module = node.module
            else:
                continue
            names.add(module)
            # ``from package import module``: the submodules too (other names fail to import,
            # and are skipped).
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _source(name: str) -> Path | None:
    with contextlib.suppress(ImportError, ValueError, AttributeError):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            return Path(spec.origin)
    return None


def _rewritten(name: str) -> bool:
    return name in PLUGINS or name == "conftest" or any(
        name == package or name.startswith(package + ".") for package in REWRITTEN)


def dependencies() -> list[str]:
    """What the plugins, the harness and the step modules import, less what pytest rewrites:
    the modules worth importing once, ahead of every round."""
    sources: list[tuple[Path, str]] = []
    for name in PLUGINS:
        if (path := _source(name)) is not None:
            sources.append((path, name.rpartition(".")[0]))
    package = Path(__file__).resolve().parents[1]
    for part in ("harness", "steps"):
        sources.extend((path, f"runbook.{part}")
                       for path in sorted((package / part).glob("*.py")))
    found: set[str] = {"pytest"}
    for path, of in sources:
        found.update(_imports(path, of))
    return sorted(name for name in found if not _rewritten(name))


def preload(names: Iterable[str]) -> list[str]:
    """Import ``names`` (one that fails is left to the rounds, which report it as ever);
    the ones imported."""
    imported = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:
            continue
        imported.append(name)
    return imported


def warm_up() -> None:
    """Build what each round would build on first use and a fork inherits (the clients' TLS
    context, S3's models): once here, not once per round. One that fails is left to the
    rounds, which report it as ever."""
    # Imported here, after ``preload`` has imported it (the probes need it): importing it
    # with this module would load the network clients into anything that reads the
    # resident's protocol.
    from runbook import clients

    with contextlib.suppress(Exception):
        clients.warm()


#: A feature file's stamp: its size and modification time (ns).
Stamp = tuple[int, int]


def _stamp(path: str) -> Stamp | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_size, found.st_mtime_ns


def _stamped(paths: Iterable[str]) -> dict[str, Stamp]:
    """The stamps of ``paths``, less those that cannot be read."""
    return {path: stamp for path in paths if (stamp := _stamp(path)) is not None}


def _changed(stamps: dict[str, Stamp]) -> Iterator[str]:
    """The stamped files that have changed or gone since."""
    return (path for path, stamp in stamps.items() if _stamp(path) != stamp)


def parse_features() -> dict[str, Stamp]:
    """Parse the feature files of the runs (``RUNBOOK_FEATURES``, else the package's) into
    pytest-bdd's cache of parsed features, as a round's ``scenarios(".")`` would: once here,
    not once per round. Their stamps, for each round to forget a file changed since
    (``forget_changed``); nothing when they cannot be parsed (the rounds report it)."""
    from pytest_bdd import feature

    # Imported here, after ``preload`` has imported it: at the top it would load the runner
    # into anything that reads the resident's protocol.
    from runbook.runner import features_directory

    try:
        feature.get_features([str(features_directory())])
    except Exception:
        feature.features.clear()
        return {}
    return _stamped(feature.features)


def forget_changed(stamps: dict[str, Stamp]) -> None:
    """In a round: drop from pytest-bdd's cache every feature parsed ahead whose file has
    changed or gone since, so the round parses it afresh as it finds it."""
    from pytest_bdd import feature

    for path in _changed(stamps):  # stamps, not the cache it pops from
        feature.features.pop(path, None)


@dataclass(frozen=True)
class Prepared:
    """pytest configured for a command line (``prepare``), for each round to start from."""

    #: The ``pytest.Config``, its plugins registered and conftest loaded, not yet configured.
    config: Any
    #: What the preparation printed before pytest captured (a plugin printing as imported).
    printed: bytes
    #: What pytest captured while loading the conftest files: ``(out, err)``.
    captured: tuple[str, str]
    #: The files of the modules imported since the resident started (or the preparation
    #: did, without a start given), stamped.
    sources: dict[str, Stamp]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


@contextlib.contextmanager
def _printed_into(sink: int) -> Iterator[None]:
    """Descriptors 1 and 2 on ``sink`` while inside."""
    _flush()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(sink, 1)
    os.dup2(sink, 2)
    try:
        yield
    finally:
        _flush()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


def prepare(args: list[str], cwd: str, before: Iterable[str] | None = None
            ) -> Prepared | None:
    """Configure pytest for ``args`` in ``cwd`` as ``pytest.main(args)`` does before it runs
    (``_pytest.config._prepareconfig``), once here, not once per round; ``None`` where there
    is nothing to prepare (``--version``, which ``pytest.main`` answers at once). Its global
    capture is stopped (each round starts its own, on its own output). Its ``sources``: the
    files of the modules imported since only ``before`` were (the resident's start: what it
    imported ahead too), else during the preparation. Raises what pytest raises for a
    configuration it cannot make."""
    import pytest

    if args.count("--version") + args.count("-V") == 1:
        return None
    # pytest's own first step, private: pinned in constraints.txt, and a round that starts
    # from it is compared with ``pytest.main`` line for line by the tests.
    from _pytest.config import _prepareconfig

    os.chdir(cwd)
    before = set(sys.modules if before is None else before)
    with tempfile.TemporaryFile() as sink:
        with _printed_into(sink.fileno()):
            os.environ["PYTEST_VERSION"] = pytest.__version__  # as pytest.main sets it
            try:
                config = _prepareconfig(list(args), None, prog="pytest.main()")
            finally:
                os.environ.pop("PYTEST_VERSION", None)
            captured = ("", "")
            capture = config.pluginmanager.getplugin("capturemanager")
            if capture is not None and capture._global_capturing is not None:
                captured = tuple(capture.read_global_capture())
                capture.stop_global_capturing()
        sink.seek(0)
        printed = sink.read()
    files = (getattr(sys.modules[name], "__file__", None) for name in set(sys.modules) - before)
    return Prepared(config, printed, (captured[0], captured[1]), _stamped(filter(None, files)))


def warm_prepared() -> None:
    """After ``prepare``: build what each round would build on first use from the configured
    run, for the rounds to inherit: the expression of every step definition's parser (a
    ``parse`` parser compiles its own the first time it matches) and the one junit.xml
    escapes its text with (a round's first report compiles it). About 10 ms of CPU a round."""
    from _pytest.junitxml import bin_xml_escape
    from pytest_bdd.steps import step_function_context_registry

    for context in list(step_function_context_registry.values()):
        with contextlib.suppress(Exception):  # a parser that fails here fails in its round
            context.parser.is_matching("")
    bin_xml_escape("")


def changed(stamps: dict[str, Stamp]) -> str | None:
    """The first of the stamped files that has changed or gone since, if any."""
    return next(_changed(stamps), None)


def receive(channel: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The next message and the descriptors passed with it; ``None`` when the other end has
    closed."""
    data, fds, _, _ = socket.recv_fds(channel, 65536, 4)
    if not data:
        return None
    while len(data) < HEADER.size:
        more = channel.recv(65536)
        if not more:
            return None
        data += more
    (length,) = HEADER.unpack_from(data)
    while len(data) < HEADER.size + length:
        more = channel.recv(max(65536, length))
        if not more:
            return None
        data += more
    return json.loads(data[HEADER.size:HEADER.size + length]), list(fds)


def _round(request: dict[str, Any], output: int, parsed: dict[str, Stamp],
           prepared: Prepared | None) -> int:
    """In the forked child: become ``python -m pytest ARGS`` run with the request's
    environment and directory, its output on ``output``, from ``prepared`` when given (made
    for the same arguments and directory); pytest's exit code."""
    _flush()
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # A round outliving the resident stops as it would when the watch is stopped.
    die_with_parent(signal.SIGTERM)
    forget_changed(parsed)
    import pytest

    sys.argv = [str(Path(pytest.__file__).with_name("__main__.py")), *request["args"]]
    # What ``python -m pytest`` does (``pytest.console_main``, deprecated for this use).
    try:
        code = int(pytest.main(request["args"])) if prepared is None else _run(prepared)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


def _run(prepared: Prepared) -> int:
    """The rest of ``pytest.main`` from ``prepared``, in a round: what its preparation printed
    and captured, shown as the round's own; its global capture started on this output;
    ``pytest_cmdline_main``; the exit code, a usage error reported as pytest reports it."""
    import pytest
    from _pytest.config import print_usage_error

    config = prepared.config
    if prepared.printed:
        sys.stdout.buffer.write(prepared.printed)
        sys.stdout.flush()
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.start_global_capturing()
        out, err = prepared.captured
        sys.stdout.write(out)
        sys.stderr.write(err)
        capture.suspend_global_capture()
    os.environ["PYTEST_VERSION"] = pytest.__version__
    try:
        try:
            code = config.hook.pytest_cmdline_main(config=config)
        finally:
            config._ensure_unconfigure()
    except pytest.UsageError as error:
        print_usage_error(error, file=sys.stderr)
        return int(pytest.ExitCode.USAGE_ERROR)
    return int(code)


def serve(channel: socket.socket, prepared: Prepared | None = None
          ) -> tuple[dict[str, Any], int] | None:
    """Answer requests until the socket closes (``None``); in a forked child, the round to
    run (its request and output descriptor), for the caller to run outside this loop. A
    module ``prepared`` imported whose file has changed since ends the loop before its round
    (the client starts a new resident)."""
    while True:
        try:
            got = receive(channel)
        except (OSError, ValueError):
            return None
        if got is None:
            return None
        request, fds = got
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            send(channel, {"error": "a round needs exactly one output descriptor"})
            continue
        if prepared is not None and (stale := changed(prepared.sources)) is not None:
            os.close(fds[0])
            with contextlib.suppress(OSError):
                send(channel, {"stale": stale})
            return None
        pid = os.fork()
        if pid == 0:
            channel.close()
            return request, fds[0]
        os.close(fds[0])
        try:
            send(channel, {"pid": pid})
            _, status, usage = os.wait4(pid, 0)
            send(channel, {"pid": pid, "returncode": os.waitstatus_to_exitcode(status),
                           "cpu_s": round(usage.ru_utime + usage.ru_stime, 4)})
        except OSError:
            return None


def main(argv: list[str]) -> int:
    """Serve the rounds of the parent ``argv[1]`` over the socket ``argv[0]``."""
    channel = socket.socket(fileno=int(argv[0]))
    die_with_parent(signal.SIGKILL)
    if os.getppid() != int(argv[1]):  # the parent ended before the line above
        return 0
    # Ctrl-C reaches the whole process group: it stops the round, never the resident.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A module imported from here on whose file changes ends the resident before a round.
    started_with = set(sys.modules)
    imported = preload(dependencies())
    warm_up()
    parsed = parse_features()
    try:
        got = receive(channel)
    except (OSError, ValueError):
        return 0
    if got is None or "prepare" not in got[0]:
        return 0
    ready = {"ready": os.getpid(), "preloaded": len(imported), "parsed": len(parsed)}
    try:
        prepared = prepare(got[0]["prepare"]["args"], got[0]["prepare"]["cwd"], started_with)
    except BaseException as error:  # said to the client, which goes on plain
        # Whatever it imported is half configured: no round starts from here.
        why = (str(error).strip().splitlines() or [""])[0][:200]
        send(channel, {**ready, "unprepared": f"{type(error).__name__}: {why}".rstrip(": ")})
        return 0
    warm_prepared()
    # What was imported stays out of the rounds' garbage collections (and its pages shared).
    gc.freeze()
    send(channel, {**ready, "prepared": prepared is not None})
    job = serve(channel, prepared)
    if job is None:
        return 0
    _exit(_round(*job, parsed, prepared))
    return 0  # not reached


def _exit(code: int) -> None:
    """End the round as the interpreter would, less its teardown of every module (a fifth
    of a second nothing reads): wait for the run's threads, run its exit handlers, flush."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    getattr(atexit, "_run_exitfuncs")()  # noqa: B009 - private, and not in typeshed
    _flush()
    os._exit(code)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
