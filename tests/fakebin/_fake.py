"""Shared by the stand-in CLIs in this directory (railway, kubectl, vercel).

Each call appends one JSON line ``{"program", "argv", "cwd", "pid"}`` to the file named by
``FAKEBIN_RECORD``, then behaves as ``FAKEBIN_MODE`` says:

* unset / ``ok``: print realistic output for the command and exit 0;
* ``hang``: sleep "forever" (the Runner's timeout must stop it);
* ``fail``: print an error to stderr and exit 1, as the real CLI does when not logged in.

``FAKEBIN_VARIABLES`` names a JSON file of variables (with secrets) the stand-ins print.
Standard library only: these run under whatever ``python3`` is first on PATH.
"""

from __future__ import annotations

import json
import os
import sys
import time

DEFAULT_VARIABLES = {
    "API_SECRET": "fake-api-secret-value",
    "DATABASE_URL": "postgresql://legacyvideo:fake-db-password@db.internal:5432/legacyvideo",
    "S3_BUCKET": "legacyvideo-uploads",
}


def record(program: str) -> None:
    path = os.environ.get("FAKEBIN_RECORD")
    if not path:
        return
    entry = {"program": program, "argv": sys.argv[1:], "cwd": os.getcwd(), "pid": os.getpid(),
             "no_color": os.environ.get("NO_COLOR")}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def variables() -> dict[str, str]:
    path = os.environ.get("FAKEBIN_VARIABLES")
    if not path:
        return dict(DEFAULT_VARIABLES)
    with open(path, encoding="utf-8") as handle:
        return {str(k): str(v) for k, v in json.load(handle).items()}


def start(program: str, failure: str) -> None:
    """Record the call, then hang or fail when ``FAKEBIN_MODE`` says so."""
    record(program)
    mode = os.environ.get("FAKEBIN_MODE", "ok")
    if mode == "hang":
        sys.stdout.write("waiting...\n")
        sys.stdout.flush()
        time.sleep(3600)
        sys.exit(0)
    if mode == "fail":
        sys.stderr.write(failure + "\n")
        sys.exit(1)


def usage(program: str) -> None:
    sys.stderr.write(f"{program}: unexpected arguments {sys.argv[1:]!r}\n")
    sys.exit(2)
