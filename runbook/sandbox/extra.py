"""Whether the sandbox's own dependencies, the package's ``[sandbox]`` extra, are installed.

The sandbox's stand-in servers (the API, the worker, S3) import them in their own processes,
so nothing else imports them: a production install without the extra runs every other
command. Starting the sandbox without them is one line saying how to get them (exit 2).
"""

from __future__ import annotations

from importlib.util import find_spec

from runbook.errors import ConfigError

#: How to install the extra.
INSTALL = "pip install 'legacyvideo-runbook[sandbox]'"
#: What the sandbox's servers import, by import name (moto's server runs on flask).
MODULES = ("fastapi", "starlette", "uvicorn", "jwt", "moto", "flask", "werkzeug")


def missing() -> list[str]:
    """The modules of ``MODULES`` this Python cannot import."""
    return [name for name in MODULES if find_spec(name) is None]


def require() -> None:
    """Raise ``ConfigError`` (one line: the install command) when the extra is missing."""
    if absent := missing():
        raise ConfigError(f"the sandbox needs the [sandbox] extra: {INSTALL} (missing:"
                          f" {', '.join(absent)})")
