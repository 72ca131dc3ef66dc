"""Each sandbox service starts (and restarts, in every game day that takes one down) as its
own ``python -m runbook.sandbox.services.<name>``: it imports the ``runbook.sandbox``
package first, and must not pay for the stack's machinery it never uses."""

from __future__ import annotations

import subprocess
import sys

import pytest

import runbook.sandbox

SERVICES = ("api", "worker", "s3", "web", "mail")
#: What a service never needs: the stack that starts sandboxes, and what it brings.
STACK = ("runbook.sandbox.stack", "runbook.sandbox.binaries", "runbook.sandbox.layout",
         "runbook.sandbox.components", "runbook.redact")


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_none_of_the_stack(service: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import sys, runbook.sandbox.services.{service}\n"
         "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('runbook'))))"],
        capture_output=True, text=True, timeout=60, check=True)
    loaded = set(done.stdout.split())
    assert f"runbook.sandbox.services.{service}" in loaded, done.stdout
    assert not loaded & set(STACK), sorted(loaded & set(STACK))


def test_the_package_still_gives_every_name_it_exports() -> None:
    from runbook.sandbox.stack import Sandbox

    assert runbook.sandbox.Sandbox is Sandbox
    for name in runbook.sandbox.__all__:
        assert getattr(runbook.sandbox, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'Sandboxes'"):
        runbook.sandbox.Sandboxes  # noqa: B018
