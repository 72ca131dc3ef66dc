"""One ``wait_until`` for every poll: no hand-written polling loop in ``runbook/``.

A poll repeats something until a condition holds or a deadline passes; ``runbook.wait``
does that once (observations, attempts, the last value, an abort). A ``while`` loop whose
body sleeps (``time.sleep``, ``asyncio.sleep``, ``sleep``, an injected ``self.sleep``)
anywhere else is a hand-written poll unless its line, or the line just above it, says why
it is not one with a comment beginning ``# not a poll:`` (a supervisor's main loop, a
serve loop, a paced generator...).
"""

from __future__ import annotations

import ast
from pathlib import Path

#: The repository's root (the source checkout these tests run in).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = PROJECT_ROOT / "runbook"
EXEMPT = "# not a poll:"


def _sleeps(loop: ast.While) -> bool:
    """Whether the loop calls ``sleep``: ``time.sleep``, ``asyncio.sleep``, a bare ``sleep``
    or an injected one (``self.sleep``)."""
    for node in ast.walk(loop):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "sleep":
                return True
    return False


def hand_written_polls(text: str, name: str = "<text>") -> list[str]:
    """``name:line`` of every sleeping ``while`` loop without a ``# not a poll:`` comment."""
    lines = text.splitlines()
    found = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.While) or not _sleeps(node):
            continue
        here = lines[node.lineno - 1]
        before = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        if EXEMPT in here or before.startswith(EXEMPT):
            continue
        found.append(f"{name}:{node.lineno}")
    return found


def test_every_poll_uses_wait_until() -> None:
    found: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "wait.py":
            continue
        found += hand_written_polls(path.read_text(encoding="utf-8"),
                                    str(path.relative_to(PROJECT_ROOT)))
    assert found == []


def test_the_check_sees_a_hand_written_poll() -> None:
    """The check can fail: sleeping loops are found unless they say why they are not polls."""
    planted = (
        "import asyncio, time\n"
        "from time import sleep\n"
        "def a():\n"
        "    while not ready():\n"
        "        time.sleep(0.1)\n"
        "def b():\n"
        "    while True:\n"
        "        if done():\n"
        "            break\n"
        "        sleep(0.1)\n"
        "async def c():\n"
        "    while not ready():\n"
        "        await asyncio.sleep(0.1)\n"
        "def d():\n"
        "    # not a poll: the server's serve loop\n"
        "    while True:\n"
        "        time.sleep(1)\n"
        "def e():\n"
        "    while True:  # not a poll: a paced generator\n"
        "        time.sleep(1)\n"
        "def g(self):\n"
        "    while self.rounds_left():\n"
        "        self.sleep(1)\n"
        "def f():\n"
        "    while pending():\n"
        "        pending.pop()\n"
    )
    assert hand_written_polls(planted) == ["<text>:4", "<text>:7", "<text>:12",
                                          "<text>:22"]

