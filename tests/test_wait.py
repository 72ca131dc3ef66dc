"""``runbook.wait``: the one poll of the runbook (deadline, stop, errors, last value, async)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from runbook.wait import wait_until, wait_until_async


def test_the_accepted_value_ends_the_wait_and_refused_ones_are_observations() -> None:
    counter = itertools.count(1)
    waited = wait_until(lambda: next(counter), timeout=5, interval=0.001,
                        accept=lambda n: n >= 3, describe=lambda n: f"only {n}")
    assert (waited.ok, waited.value, waited.attempts) == (True, 3, 3)
    assert waited.observations == ("only 1", "only 2")


def test_a_timeout_keeps_the_last_value_and_the_deadline_is_a_monotonic_instant() -> None:
    counter = itertools.count(1)
    started = time.monotonic()
    waited = wait_until(lambda: next(counter), deadline=started + 0.1, interval=0.01,
                        accept=lambda n: n < 0)
    assert not waited.ok and not waited.stopped
    assert waited.value == waited.attempts and waited.attempts >= 2
    assert 0.1 <= time.monotonic() - started < 1.0


def test_stop_ends_the_wait_early() -> None:
    calls: list[int] = []
    waited = wait_until(lambda: calls.append(1), timeout=30, interval=0.01,
                        accept=lambda _: False, stop=lambda: len(calls) >= 2)
    assert (waited.ok, waited.stopped, waited.attempts) == (False, True, 2)


def test_errors_says_which_exceptions_are_observations() -> None:
    def broken() -> int:
        raise ConnectionError("refused")

    observed = wait_until(broken, timeout=0.05, interval=0.01)
    assert not observed.ok and observed.observations == ("ConnectionError: refused",)
    with pytest.raises(ConnectionError):
        wait_until(broken, timeout=5, errors=())
    with pytest.raises(ConnectionError):
        wait_until(broken, timeout=5, errors=(ValueError,))


def test_exactly_one_of_timeout_and_deadline() -> None:
    with pytest.raises(ValueError):
        wait_until(lambda: True)
    with pytest.raises(ValueError):
        wait_until(lambda: True, timeout=1, deadline=time.monotonic() + 1)


def test_the_async_wait_awaits_the_probe() -> None:
    counter = itertools.count(1)

    async def probe() -> int:
        await asyncio.sleep(0)
        return next(counter)

    waited = asyncio.run(wait_until_async(probe, timeout=5, interval=0.001,
                                          accept=lambda n: n == 4))
    assert (waited.ok, waited.value, waited.attempts) == (True, 4, 4)
    late = asyncio.run(wait_until_async(probe, timeout=0.05, interval=0.01,
                                        accept=lambda n: n < 0))
    assert not late.ok and late.attempts >= 2
