"""The exception tree. Every error the runbook raises is one of these.

``RunbookError``
  ``ConfigError``        a target or option is malformed or missing (exit 2)
  ``SafetyGateError``    a safety gate refused a dangerous operation (exit 3)
  ``SandboxError``       the embedded sandbox could not be started or driven (exit 1)
``CheckFailed``          a check saw something other than the runbook expects (an
                         ``AssertionError``, so pytest reports it as a failure)
  ``OperationFailed``    an operation (users, queues) did not do what the runbook says
  ``ProbeTimeout``       the check did not finish within its deadline
"""

from __future__ import annotations

from collections.abc import Sequence


class RunbookError(Exception):
    """Base of the errors that are not check failures."""

    exit_code = 1


class ConfigError(RunbookError):
    """A target, profile or option is malformed or missing; the message is one line."""

    exit_code = 2


class SafetyGateError(RunbookError):
    """A safety gate refused to run a dangerous operation against a target."""

    exit_code = 3


class SandboxError(RunbookError):
    """The embedded sandbox could not be started, stopped or driven."""

    exit_code = 1


class CheckFailed(AssertionError):
    """A runbook check failed.

    The message reads as the on-call engineer needs it: which component, on which target,
    what was seen, what was expected, and the runbook steps to take next.
    """

    def __init__(
        self,
        component: str,
        target: str,
        seen: str,
        expected: str,
        next_steps: Sequence[str] = (),
    ) -> None:
        if not target:
            # The step that fails knows its target; a failure naming none would be patched
            # by whoever reads it, or read as about no target at all.
            raise ValueError(f"CheckFailed({component!r}) names no target: pass the target"
                             " the failing step acted on")
        self.component = component
        self.target = target
        self.seen = seen
        self.expected = expected
        self.next_steps = tuple(next_steps)
        super().__init__(self.render())

    def render(self) -> str:
        lines = [
            f"{self.component} check failed on {self.target}",
            f"  Actual:   {self.seen}",
            f"  Expected: {self.expected}",
        ]
        if self.next_steps:
            lines.append("  Runbook, next steps:")
            lines.extend(f"    - {step}" for step in self.next_steps)
        return "\n".join(lines)


class OperationFailed(CheckFailed):
    """An operation did not do what the runbook says; ``activities`` holds every call it made
    (redacted), the cleanup included. Subclasses fix the component and the runbook steps."""

    component_name = "operation"
    advice: tuple[str, ...] = ()

    def __init__(self, target: str, seen: str, expected: str,
                 activities: tuple[object, ...] = ()) -> None:
        self.activities = activities
        super().__init__(self.component_name, target, seen, expected, self.advice)


class ProbeTimeout(CheckFailed):
    """A check did not answer within its deadline (a black-holed or hung service)."""
