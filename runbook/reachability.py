"""Whether each of the target's components answers at all, decided once per run.

With one component dead (stopped, black-holed, dropping packets), every scenario that
touches it would wait out its own timeouts one after another: the moment the checks matter
most, during an incident, would be when they are slowest. Instead, the first probe that
needs a component asks it once, within its own deadline (connect plus one round trip:
``PING``, ``SELECT 1``, one HTTP request answered with any status), and the verdict holds
for the rest of the run: every later probe that needs an unreachable component fails at
once, naming the component, what it did, when, and the check that found it. A run whose
checks are marked as needing a component (``runbook.harness.scenarios.needs``) asks it as
its first check starts instead, in a thread, and runs those checks last: with it dead, the
deadline overlaps the other checks, and the verdict names the run's asking. What users get
while a component is down (a login's HTTP 500 with the database gone), which a check asks
only then, is asked as soon as the component is suspect (``ask_meanwhile``): its wait
overlaps the asking and the other checks too. A component that answers, however slowly, is
reachable: its probes still measure it against the runbook's thresholds.

A run installs a ``Reachability`` for its one-shot checks only (``active``): a drill's waits
ask the same checks again and again until the target is back, which a verdict held for the
run would defeat. Outside ``active`` (a library caller, a drill) nothing is gated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from runbook.clients import describe_error, http_client, postgres, redis_client
from runbook.config import Target
from runbook.results import ProbeResult, utcnow
from runbook.timeouts import DeadlineExceeded, Timeouts, call_with_deadline

#: A queue's worker is asked with a canary job on its queue, under the canary check's own
#: limit: a canary no worker took (still waiting) makes the queue's worker unreachable for
#: the run. With a ``WorkerAsker`` the gate asks every queue's worker at once, the first
#: time a check needs one (the waits overlap), or as the run starts (``ask_workers_ahead``:
#: the wait then overlaps the other checks too); without one, the first job a check put on
#: the queue answers for it (``record``).
WORKER = "worker"
#: Who asked when the run asked ahead of its checks (``Answer.found_by``): the workers, and
#: the components its checks are marked as needing (``ask_ahead``).
AHEAD = "the run as it started, ahead of the checks that need it"
#: A component asked ahead that has not answered within this long is suspect, and what users
#: get meanwhile is asked then (``ask_meanwhile``). A database, Redis or a service that works
#: answers a connect and one round trip in milliseconds, across the internet in a few
#: hundred; its asking goes on to its own deadline before it is called unreachable.
SUSPECT_AFTER_S = 1.0


def worker(queue: str) -> str:
    """The component name of ``queue``'s worker, as probes name it in ``needs``."""
    return f"{WORKER}:{queue}"


#: The components a run asks once, with what the asking is.
ASKED_WITH: dict[str, str] = {
    "api": "one HTTP request to API_URL, any status",
    "web": "one HTTP request to WEB_URL, any status",
    "database": "connect and SELECT 1",
    "redis": "connect and PING",
    "s3": "one HTTP request to the S3 endpoint, any status",
    "email provider": "one HTTP request to RESEND_API_URL, any status",
    WORKER: "its canary job on the queue",
}

#: What a probe of each component (``run_probe``'s first argument) cannot do without. A probe
#: that needs more (a journey through the API to the queue) says so with ``needs``.
NEEDS: dict[str, tuple[str, ...]] = {
    "api": ("api",),
    "metrics": ("api",),
    "web": ("web",),
    "database": ("database",),
    "audit log": ("database",),
    "redis": ("redis",),
    "queues": ("redis",),
    "worker": ("redis",),
    "s3": ("s3",),
    "email": ("email provider",),
}


@dataclass(frozen=True)
class WorkerAnswer:
    """What asking one queue's worker found: ``taken`` is ``None`` when the canary never
    got as far as a worker (Redis failed it first); ``result`` is the canary check's own
    result, handed to that check when it runs (``take_canary``)."""

    taken: bool | None
    detail: str
    elapsed_s: float
    result: ProbeResult
    within_s: float


#: Asks the workers of the queues given at once: one ``WorkerAnswer`` per queue.
WorkerAsker = Callable[[Target, tuple[str, ...]], dict[str, WorkerAnswer]]
#: What a check asks about users' experience while a component is down (``ask_meanwhile``).
Meanwhile = Callable[[Target, Timeouts], object]


@dataclass(frozen=True)
class Asked:
    """What a ``Meanwhile`` returned, asked while ``component`` had not answered, and when."""

    value: object
    component: str
    asked_at: str

    def said(self) -> str:
        """When, and why then, for a check's message."""
        return f"asked at {self.asked_at} while the {self.component} was not answering"


@dataclass(frozen=True)
class Answer:
    """One component's verdict for the run."""

    component: str
    ok: bool
    #: What it did when asked: "answered in 3 ms", or the failure in one line.
    detail: str
    asked_at: str
    elapsed_s: float
    #: The check that asked first (``component check`` of the probe, with its scenario).
    found_by: str

    def blocked(self) -> str:
        """The one line a probe that needed this component fails with."""
        how = ASKED_WITH.get(self.component.partition(":")[0], "asked")
        return (f"{self.component} unreachable: {self.detail} ({how}, asked once for this"
                f" run at {self.asked_at} by {self.found_by}); not waited for again")


def _address(component: str, target: Target) -> str | None:
    """Where ``component`` is on ``target``; ``None`` when the target does not say (the
    probe then says what is missing, as without this module)."""
    if component == "api":
        return target.api_url
    if component == "web":
        return target.web_url
    if component == "database":
        return target.database_url.get_secret_value() if target.database_url else None
    if component == "redis" or component.startswith(f"{WORKER}:"):  # a worker: its queue's
        return target.redis_url.get_secret_value() if target.redis_url else None
    if component == "s3":
        if target.s3_endpoint_url:
            return target.s3_endpoint_url
        return (f"https://s3.{target.s3_region}.amazonaws.com" if target.s3_region
                else None) if target.s3_bucket else None
    if component == "email provider":
        return target.resend_api_url if target.resend_api_key else None
    return None


def _ask(component: str, address: str, timeouts: Timeouts) -> None:
    """Connect and one round trip; raises when the component does not answer."""
    if component == "database":
        with postgres(address, timeouts) as conn:
            conn.execute("SELECT 1").fetchone()
    elif component == "redis":
        redis = redis_client(address, timeouts)
        try:
            redis.execute_command("PING")
        finally:
            redis.close()
    else:
        # The address itself, not a check's path: the checks' own counters (a /health
        # request count, a provider's quota) see no request they did not make.
        with http_client(timeouts) as client:
            client.get(address)  # any status: the component answered


class Reachability:
    """The run's verdicts, one per component and address, each asked once (thread-safe)."""

    def __init__(self, timeouts: Timeouts, *, ask_workers: WorkerAsker | None = None,
                 queues: tuple[str, ...] = ()) -> None:
        self._timeouts = timeouts
        self._ask: Callable[[str, str, Timeouts], None] = _ask
        self._ask_workers = ask_workers
        self._queues = queues
        self._workers_lock = threading.Lock()
        self._canaries: dict[tuple[str, str], WorkerAnswer] = {}
        self._ahead: threading.Thread | None = None
        self._asking: dict[tuple[str, str], threading.Thread] = {}
        self._meanwhile: dict[tuple[Meanwhile, str],
                              tuple[threading.Event, list[Asked], float]] = {}
        self._watching: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._answers: dict[tuple[str, str], Answer] = {}
        #: The scenario running now, named in ``found_by`` (the harness sets it).
        self.scenario = ""

    def answers(self) -> list[Answer]:
        """Every verdict so far."""
        with self._lock:
            return list(self._answers.values())

    def unreachable(self, component: str, check: str, target: Target,
                    needs: tuple[str, ...] | None = None) -> Answer | None:
        """The first component among ``needs`` (default: ``NEEDS[component]``) that did not
        answer, asking each not yet asked; ``None`` when all answer or none is known."""
        for needed in NEEDS.get(component, ()) if needs is None else needs:
            address = _address(needed, target)
            if not address:
                continue
            answer = self._answer(needed, address, f"{component} {check}", target)
            if answer is not None and not answer.ok:
                return answer
        return None

    def record(self, component: str, target: Target, *, ok: bool, detail: str,
               by: str, elapsed_s: float) -> None:
        """A check's own answer for ``component`` (a queue's worker), kept when the
        component has none yet; a later answer does not replace it."""
        address = _address(component, target)
        if not address:
            return
        answer = Answer(component, ok, detail, utcnow().strftime("%H:%M:%S"),
                        round(elapsed_s, 3), self._found_by(by))
        with self._lock:
            self._answers.setdefault((component, address), answer)

    def _found_by(self, check: str) -> str:
        return f"the check {check!r}" + (f" of the scenario {self.scenario!r}"
                                         if self.scenario else "")

    def take_canary(self, queue: str, target: Target, within_s: float) -> ProbeResult | None:
        """The canary check's result from the run's asking of ``queue``'s worker, once,
        when it was asked with the same limit (else ``None``: the check runs its own)."""
        address = _address(worker(queue), target)
        with self._lock:
            asked = self._canaries.get((queue, address or ""))
            if asked is None or asked.within_s != within_s:
                return None
            del self._canaries[(queue, address or "")]
            return asked.result

    def ask_workers_ahead(self, target: Target) -> None:
        """Start asking every queue's worker now, in a thread of its own, once per run: a
        check that needs a worker later waits only for what is left of the asking, and
        with a worker dead, its canary's wait overlaps the checks that need none. The run
        calls it as it starts when it holds such checks (``runbook.harness.fixtures``)."""
        if self._ask_workers is None or not self._queues:
            return
        component = worker(self._queues[0])
        address = _address(component, target)
        if not address:
            return
        with self._lock:
            if self._ahead is not None:
                return
            # Not a daemon: a run that ends (or is interrupted) while the canaries are out
            # waits for them to be removed, as it does for a check's own.
            self._ahead = threading.Thread(
                target=self._ask_all_workers, args=(component, address, target, AHEAD),
                name="workers-asked-ahead")
        self._ahead.start()

    def ask_ahead(self, target: Target, components: Iterable[str]) -> None:
        """Start asking each of ``components`` (not a queue's worker: ``ask_workers_ahead``)
        now, each in a thread of its own, once per run: a check that needs one later waits
        only for what is left of its asking (the per-component lock), and with one dead,
        its deadline overlaps the checks that run before. The run calls it as its first
        check starts, with what its checks are marked as needing (``runbook.harness``)."""
        for component in components:
            address = _address(component, target)
            if not address or component.startswith(f"{WORKER}:") or component == WORKER:
                continue
            key = (component, address)
            with self._lock:
                if key in self._asking or key in self._answers:
                    continue
                thread = threading.Thread(
                    target=self._answer, args=(component, address, ""),
                    kwargs={"found_by": AHEAD}, name=f"{component} asked ahead", daemon=True)
                self._asking[key] = thread
            thread.start()

    def ask_meanwhile(self, component: str, target: Target, ask: Meanwhile, *,
                      after_s: float = SUSPECT_AFTER_S) -> None:
        """Once per run, call ``ask(target, timeouts)`` in a thread of its own as soon as
        ``component``, asked ahead (``ask_ahead``, called before), is suspect: no answer
        ``after_s`` into its asking, or an answer that it is unreachable. A check that
        wants what users get while the component is down takes it later (``asked``)
        instead of waiting for it then. A component that answers in time: nothing is asked
        (not even a request on a healthy run); one not asked ahead: nothing either."""
        address = _address(component, target)
        if not address:
            return
        key = (component, address)
        with self._lock:
            if (ask, address) in self._meanwhile:
                return
            asking = self._asking.get(key)
            if asking is None and key not in self._answers:
                return
            done, found = threading.Event(), list[Asked]()
            # The suspicion's wait, then ``ask`` within its own timeouts.
            limit_s = after_s + self._timeouts.connect + self._timeouts.read + 1
            self._meanwhile[(ask, address)] = (done, found, limit_s)

        def watch() -> None:
            try:
                if asking is not None:
                    asking.join(after_s)
                with self._lock:
                    answer = self._answers.get(key)
                if answer is not None and answer.ok:
                    return
                asked_at = utcnow().strftime("%H:%M:%S")
                found.append(Asked(ask(target, self._timeouts), component, asked_at))
            except Exception:
                pass  # nothing kept: the check asks itself, and sees the failure then
            finally:
                done.set()

        thread = threading.Thread(target=watch, name=f"meanwhile {component}", daemon=True)
        with self._lock:
            self._watching.append(thread)
        thread.start()

    def asked(self, ask: Meanwhile, component: str, target: Target) -> Asked | None:
        """What ``ask_meanwhile`` asked with ``ask`` this run, once it has its answer (its
        own timeouts bound the wait); ``None`` when nothing was asked: the component
        answered in time, the run did not set ``ask`` to be asked, or it did not end in
        time (the check then asks itself)."""
        with self._lock:
            entry = self._meanwhile.get((ask, _address(component, target) or ""))
        if entry is None:
            return None
        done, found, limit_s = entry
        done.wait(limit_s)
        return found[0] if found else None

    def still_asking(self, target: Target, components: Iterable[str]) -> bool:
        """Whether one of ``components`` is being asked ahead now, with no answer yet."""
        with self._lock:
            for component in components:
                key = (component, _address(component, target) or "")
                thread = self._asking.get(key)
                if thread is not None and thread.is_alive() and key not in self._answers:
                    return True
        return False

    def close(self) -> None:
        """Wait for the askings started ahead to end (the workers' canaries removed; each
        other asking, and what was asked meanwhile, ends within its own deadline)."""
        with self._lock:
            ahead = self._ahead
            asking = list(self._asking.values())
            watching = list(self._watching)
        if ahead is not None:
            ahead.join()
        for thread in asking:
            thread.join(self._timeouts.deadline + 1)
        for thread in watching:
            thread.join(self._timeouts.deadline + 1)

    def _ask_all_workers(self, component: str, address: str, target: Target,
                         found_by: str) -> None:
        """Ask every queue's worker not yet answered at once (``component``'s among them);
        holds the workers' lock, so a run asks each queue once."""
        if self._ask_workers is None:
            return
        # The canaries go on Redis: with Redis not answering, no canary is put (none left
        # behind, no removal waited for); every check that needs a worker needs Redis first.
        redis = self._answer("redis", address, "", found_by=found_by)
        if redis is not None and not redis.ok:
            return
        with self._workers_lock:
            queue = component.partition(":")[2]
            with self._lock:
                if (component, address) in self._answers:
                    return
                queues = tuple(q for q in dict.fromkeys((queue, *self._queues))
                               if (worker(q), address) not in self._answers)
            asked_at = utcnow().strftime("%H:%M:%S")
            found = self._ask_workers(target, queues)
            with self._lock:
                for name, answer in found.items():
                    self._canaries[(name, address)] = answer
                    if answer.taken is not None:
                        self._answers.setdefault((worker(name), address), Answer(
                            worker(name), answer.taken, answer.detail, asked_at,
                            round(answer.elapsed_s, 3), found_by))

    def _answer(self, component: str, address: str, asker: str,
                target: Target | None = None, *, found_by: str = "") -> Answer | None:
        key = (component, address)
        if component.startswith(f"{WORKER}:"):  # asked with a canary job (see WORKER)
            if target is not None:
                self._ask_all_workers(component, address, target, self._found_by(asker))
            with self._lock:
                return self._answers.get(key)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._answers:
                return self._answers[key]
            asked_at = utcnow()
            started = time.monotonic()
            budget = min(self._timeouts.connect + self._timeouts.read, self._timeouts.deadline)
            try:
                call_with_deadline(lambda: self._ask(component, address, self._timeouts), budget)
                problem = ""
            except DeadlineExceeded:
                problem = f"no answer within {budget:g} s"
            except Exception as exc:
                problem = describe_error(exc)
            elapsed = time.monotonic() - started
            answer = Answer(component, not problem,
                            problem or f"answered in {elapsed * 1000:.0f} ms",
                            asked_at.strftime("%H:%M:%S"), round(elapsed, 3),
                            found_by or self._found_by(asker))
            with self._lock:
                self._answers[key] = answer
            return answer


_active: Reachability | None = None


def current() -> Reachability | None:
    """The run's verdicts while ``active``, else ``None`` (nothing gated)."""
    return _active


@contextmanager
def active(reachability: Reachability | None) -> Iterator[Reachability | None]:
    """Gate the probes run inside by ``reachability`` (``None``: gate nothing)."""
    global _active
    previous, _active = _active, reachability
    try:
        yield reachability
    finally:
        _active = previous
