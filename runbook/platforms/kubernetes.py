"""Kubernetes, through ``kubectl``: each service is a Deployment.

Names come from the environment: ``RUNBOOK_K8S_NAMESPACE`` (default ``default``) and
``RUNBOOK_K8S_DEPLOYMENT_API`` / ``_WORKER`` / ``_WEB`` (defaults ``legacyvideo-api``,
``legacyvideo-worker``, ``legacyvideo-web``). Exactly what runs (``NAME``, ``NS``):

* restart: ``kubectl rollout restart deployment/NAME --namespace NS``, then
  ``kubectl rollout status deployment/NAME --namespace NS --timeout=Ns``;
* replace one instance (a pod killed, replaced by its ReplicaSet):
  ``kubectl get deployment NAME --namespace NS -o jsonpath={.spec.selector.matchLabels}``
  (the Deployment's own selector), ``kubectl get pods --namespace NS -l SELECTOR
  --field-selector=status.phase=Running -o name``, ``kubectl delete pod/POD --namespace NS
  --wait=false`` (the first pod listed), then ``kubectl rollout status deployment/NAME
  --namespace NS --timeout=Ns``;
* logs: ``kubectl logs deployment/NAME --namespace NS --since=1h --tail=N`` (kubectl picks
  one pod of the deployment);
* variables: ``kubectl get deployment NAME --namespace NS -o json``: literal ``env`` values
  are fingerprinted; ``valueFrom`` variables (secrets, config maps, fields) cannot be read
  this way and are listed as unreadable, ``envFrom`` sources are named in the note;
* status: ``kubectl get deployment NAME... --namespace NS``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from runbook.config import Target
from runbook.errors import ConfigError, SafetyGateError
from runbook.platforms.base import (
    CLI_ENV,
    SERVICES,
    Completed,
    LogLines,
    PlatformTimeouts,
    Runner,
    Variables,
    check_service,
    clip_output,
    error_lines,
    fingerprints,
    one_line,
    parse_since,
    variables_not_settable,
)
from runbook.redact import Redactor
from runbook.results import Activity, Timing

DEFAULT_NAMESPACE = "default"
DEFAULT_DEPLOYMENTS: Mapping[str, str] = MappingProxyType(
    {service: f"legacyvideo-{service}" for service in SERVICES}
)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class KubernetesNames:
    """Where the services run: one namespace, one Deployment per service."""

    namespace: str = DEFAULT_NAMESPACE
    deployments: Mapping[str, str] = field(default_factory=lambda: DEFAULT_DEPLOYMENTS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KubernetesNames:
        """Read ``RUNBOOK_K8S_NAMESPACE`` and ``RUNBOOK_K8S_DEPLOYMENT_<SERVICE>``; raises
        ``ConfigError`` for a name Kubernetes would not accept."""
        env = os.environ if environ is None else environ
        namespace = env.get("RUNBOOK_K8S_NAMESPACE") or DEFAULT_NAMESPACE
        if not _DNS_LABEL.match(namespace):
            raise ConfigError(f"RUNBOOK_K8S_NAMESPACE: {namespace!r} is not a Kubernetes"
                              " namespace name (lowercase letters, digits, '-')")
        deployments: dict[str, str] = {}
        for service in SERVICES:
            variable = f"RUNBOOK_K8S_DEPLOYMENT_{service.upper()}"
            name = env.get(variable) or DEFAULT_DEPLOYMENTS[service]
            if not _DNS_SUBDOMAIN.match(name):
                raise ConfigError(f"{variable}: {name!r} is not a Kubernetes deployment name"
                                  " (lowercase letters, digits, '-', '.')")
            deployments[service] = name
        return cls(namespace, MappingProxyType(deployments))


def kubectl_since(since: str) -> str:
    """``since`` as kubectl takes it (Go durations: ``s``, ``m``, ``h``; days become hours)."""
    window = parse_since(since)
    text = since.strip()
    if text[-1] in "smh":
        return text
    hours = window / timedelta(hours=1)
    return f"{hours:g}h"


def match_labels(text: str) -> str | None:
    """A label selector (``app=legacyvideo-api,tier=api``, sorted) from the JSON object
    ``kubectl ... -o jsonpath={.spec.selector.matchLabels}`` prints; ``None`` when it printed
    none (no ``matchLabels``, or not JSON)."""
    try:
        labels = json.loads(text.strip() or "null")
    except ValueError:
        return None
    if not isinstance(labels, dict) or not labels:
        return None
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels))


def parse_deployment_env(document: Mapping[str, Any]
                         ) -> tuple[dict[str, str], list[str], list[str]]:
    """From a Deployment's JSON: literal env values by name, names whose value comes from
    ``valueFrom`` (unreadable here), and the ``envFrom`` sources (``secret/x``,
    ``configMap/y``). With several containers, names are ``container:NAME``."""
    spec = ((document.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    several = len(containers) > 1
    values: dict[str, str] = {}
    unreadable: list[str] = []
    sources: list[str] = []
    for container in containers:
        prefix = f"{container.get('name', '?')}:" if several else ""
        for item in container.get("env") or []:
            if not isinstance(item, dict) or "name" not in item:
                continue
            name = f"{prefix}{item['name']}"
            if "valueFrom" in item:
                unreadable.append(name)
            else:
                values[name] = str(item.get("value", ""))
        for source in container.get("envFrom") or []:
            if not isinstance(source, dict):
                continue
            for key, kind in (("secretRef", "secret"), ("configMapRef", "configMap")):
                ref = source.get(key)
                if isinstance(ref, dict):
                    sources.append(f"{prefix}{kind}/{ref.get('name', '?')}")
    return values, sorted(unreadable), sources


class KubernetesPlatform:
    """The services as Deployments, driven through ``kubectl`` by a ``Runner``.

    ``restart`` raises ``SafetyGateError`` unless built with ``allow_changes=True``; a
    missing ``kubectl`` raises ``RunbookError``.
    """

    name = "kubernetes"

    def __init__(self, target: Target, *, allow_changes: bool, runner: Runner | None = None,
                 names: KubernetesNames | None = None,
                 timeouts: PlatformTimeouts | None = None) -> None:
        self.target = target
        self.allow_changes = allow_changes
        self.runner = runner if runner is not None else Runner()
        self.names = names if names is not None else KubernetesNames.from_env()
        self.timeouts = timeouts if timeouts is not None else PlatformTimeouts()
        self.redactor = Redactor(target.secret_values())

    def __repr__(self) -> str:
        return (f"KubernetesPlatform({self.target.name!r}, namespace={self.names.namespace!r},"
                f" allow_changes={self.allow_changes})")

    def _deployment(self, service: str) -> str:
        return self.names.deployments[check_service(service)]

    def _run(self, argv: Sequence[str], timeout: float) -> Completed:
        return self.runner.run(argv, timeout=timeout, env=CLI_ENV)

    # -- changes -------------------------------------------------------------------------

    def restart(self, service: str) -> Activity:
        """``kubectl rollout restart`` then ``kubectl rollout status --timeout=...`` (the
        rollout must finish within ``timeouts.restart_s``). Raises ``SafetyGateError``
        without ``allow_changes``."""
        name = self._deployment(service)
        if not self.allow_changes:
            raise SafetyGateError(
                f"refused: restarting {service} changes state, and this platform adapter for"
                f" {self.target.describe()} was built without allow_changes"
            )
        ns = ("--namespace", self.names.namespace)
        restart = self._run(("kubectl", "rollout", "restart", f"deployment/{name}", *ns),
                            self.timeouts.command_s)
        runs = [restart]
        if restart.ok:
            wait_s = max(1, round(self.timeouts.restart_s))
            runs.append(self._run(
                ("kubectl", "rollout", "status", f"deployment/{name}", *ns,
                 f"--timeout={wait_s}s"),
                wait_s + 15.0,  # kubectl's own timeout answers first, with its message
            ))
        return self._combine(f"restart {service}", runs)

    def replace_instance(self, service: str) -> Activity:
        """Delete one running pod of ``service``'s Deployment, as a node or a crash takes
        one away, and wait for the rollout to be complete again (``kubectl rollout
        status``, within ``timeouts.restart_s``). The pods are found by the Deployment's
        own ``matchLabels`` selector; the first running one listed is deleted (gracefully:
        kubectl's default grace period). ``rollout status`` reports the Deployment's view,
        which may not yet count the deleted pod when it is asked: what users saw is for
        the caller's own checks to measure. Raises ``SafetyGateError`` without
        ``allow_changes``, before anything runs."""
        name = self._deployment(service)
        if not self.allow_changes:
            raise SafetyGateError(
                f"refused: replacing an instance of {service} changes state, and this"
                f" platform adapter for {self.target.describe()} was built without"
                " allow_changes")
        ns = ("--namespace", self.names.namespace)
        activity = f"replace an instance of {service}"
        runs = [self._run(("kubectl", "get", "deployment", name, *ns, "-o",
                           "jsonpath={.spec.selector.matchLabels}"), self.timeouts.command_s)]
        if not runs[-1].ok:
            return self._combine(activity, runs)
        selector = match_labels(runs[-1].stdout)
        if selector is None:
            return self._combine(activity, runs, problem=(
                f"deployment {name} has no spec.selector.matchLabels kubectl printed as JSON"
                f" ({one_line(runs[-1].stdout) or 'nothing'}); cannot find its pods"))
        runs.append(self._run(("kubectl", "get", "pods", *ns, "-l", selector,
                               "--field-selector=status.phase=Running", "-o", "name"),
                              self.timeouts.command_s))
        if not runs[-1].ok:
            return self._combine(activity, runs)
        pods = [line.strip() for line in runs[-1].stdout.splitlines()
                if line.strip().startswith("pod/")]
        if not pods:
            return self._combine(activity, runs, problem=(
                f"no running pod of deployment {name} matches {selector}: nothing to replace"))
        runs.append(self._run(("kubectl", "delete", pods[0], *ns, "--wait=false"),
                              self.timeouts.command_s))
        if runs[-1].ok:
            wait_s = max(1, round(self.timeouts.restart_s))
            runs.append(self._run(
                ("kubectl", "rollout", "status", f"deployment/{name}", *ns,
                 f"--timeout={wait_s}s"), wait_s + 15.0))
        summary = (f"deleted {pods[0]}, one of {len(pods)} running pods of deployment {name}"
                   f" ({selector})")
        return self._combine(activity, runs, summary=summary)

    def _combine(self, name: str, runs: Sequence[Completed], *, problem: str = "",
                 summary: str = "") -> Activity:
        command: list[str] = []
        for run in runs:
            command.extend([*(["&&"] if command else []), *run.argv])
        output = "\n".join(
            part for run in runs for part in (run.stdout.strip(), run.stderr.strip()) if part
        )
        if summary:
            output = f"{summary}\n{output}"
        problem = next((run.problem() for run in runs if not run.ok), problem)
        first, last = runs[0].timing, runs[-1].timing
        return Activity(
            name=name,
            command=tuple(self.redactor(part) for part in command),
            timing=Timing(first.started_at, last.finished_at,
                          sum(run.elapsed_s for run in runs)),
            output=clip_output(self.redactor(output)),
            error=one_line(self.redactor(problem)),
        )

    # -- reads -------------------------------------------------------------------------------

    def logs(self, service: str, *, since: str = "1h", lines: int = 500) -> LogLines:
        """``kubectl logs deployment/NAME --since=... --tail=N``, redacted, errors picked
        out. Bounded by ``timeouts.command_s``."""
        name = self._deployment(service)
        done = self._run(("kubectl", "logs", f"deployment/{name}", "--namespace",
                          self.names.namespace, f"--since={kubectl_since(since)}",
                          f"--tail={max(lines, 0)}"), self.timeouts.command_s)
        kept = [self.redactor(line) for line in done.stdout.splitlines() if line.strip()]
        kept = kept[-lines:] if lines > 0 else []
        activity = done.to_activity(f"logs {service}", self.redactor,
                                    output="\n".join([*kept, done.stderr.strip()]))
        return LogLines(service, activity, tuple(kept), error_lines(kept))

    def set_variables(self, service: str, changes: Mapping[str, str | None]) -> Activity:
        """Not done through the CLI (``variables_not_settable``): raises ``SafetyGateError``
        without ``allow_changes`` first, as every change does."""
        check_service(service)
        if not self.allow_changes:
            raise SafetyGateError(
                f"refused: setting {service}'s variables changes state, and this platform"
                f" adapter for {self.target.describe()} was built without allow_changes")
        return variables_not_settable("kubernetes", service, changes)

    def variables(self, service: str) -> Variables:
        """The Deployment's container env from ``kubectl get deployment NAME -o json``:
        literal values fingerprinted (never kept), ``valueFrom``/``envFrom`` variables
        listed as unreadable. The JSON itself is never stored."""
        name = self._deployment(service)
        done = self._run(("kubectl", "get", "deployment", name, "--namespace",
                          self.names.namespace, "-o", "json"), self.timeouts.command_s)
        values: dict[str, str] = {}
        unreadable: list[str] = []
        sources: list[str] = []
        parse_error = ""
        if done.ok:
            try:
                document = json.loads(done.stdout)
                if not isinstance(document, dict):
                    raise ValueError("not a JSON object")
                values, unreadable, sources = parse_deployment_env(document)
            except ValueError as exc:
                parse_error = f"kubectl printed no deployment JSON ({exc})"
        note_parts = ["from the Deployment spec (values fingerprinted, never kept)"]
        if unreadable:
            note_parts.append(
                "valueFrom variables (secrets, config maps, fields) cannot be read from the"
                f" Deployment: {', '.join(unreadable)}"
            )
        if sources:
            note_parts.append(f"envFrom sources not expanded: {', '.join(sources)}")
        summary = (f"{len(values)} variables fingerprinted: {', '.join(sorted(values))}"
                   + (f"; unreadable: {', '.join(unreadable)}" if unreadable else "")
                   if done.ok else done.stderr.strip())
        redactor = Redactor([*self.target.secret_values(), *values.values()])
        activity = done.to_activity(f"variables {service}", redactor, output=summary)
        if parse_error:
            activity = replace(activity, error=parse_error)
        shown = fingerprints(values)
        values.clear()
        return Variables(service, activity, fingerprints=shown,
                         unreadable=tuple(unreadable), note="; ".join(note_parts))

    def status(self, service: str | None = None) -> Activity:
        """``kubectl get deployment NAME... --namespace NS`` for ``service`` or all three.
        Bounded by ``timeouts.command_s``."""
        names = ([self._deployment(service)] if service is not None
                 else [self.names.deployments[s] for s in SERVICES])
        done = self._run(("kubectl", "get", "deployment", *names, "--namespace",
                          self.names.namespace), self.timeouts.command_s)
        return done.to_activity(f"status {service}" if service else "status", self.redactor)
