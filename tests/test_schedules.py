"""The schedules shipped for GitHub Actions, GitLab CI and Kubernetes: every file parses,
every ``runbook`` command line in them parses against the real command (so a renamed option
turns this red), every cron expression is valid, and the CronJobs carry what running them
unattended and safely takes."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from croniter import croniter

from runbook.cli import app
from runbook.config import TARGET_VARIABLES

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "runbook.yml"
GITLAB = ROOT / ".gitlab-ci.yml"
CRONJOBS = ROOT / "deploy" / "kubernetes" / "runbook-cronjobs.yaml"
DOCKERFILE = ROOT / "Dockerfile"
OPERATORS = set(";&|()")


def load(path: Path) -> list[Any]:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents, f"{path} holds no YAML document"
    return documents


def shell_commands(script: str) -> Iterator[list[str]]:
    """Each simple command of a shell script as its words (``a; b && c`` is three)."""
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in lexer:
            if set(token) <= OPERATORS:
                if words:
                    yield words
                words = []
            else:
                words.append(token)
        if words:
            yield words


def runbook_argv(words: list[str]) -> list[str] | None:
    """The arguments of a ``runbook`` invocation (after ``exec``, ``tini --`` or
    ``NAME=value``), or None."""
    while words and (words[0] in ("exec", "tini", "--")
                     or re.fullmatch(r"[A-Za-z_]\w*=.*", words[0])):
        words = words[1:]
    if words and Path(words[0]).name == "runbook":
        return words[1:]
    return None


def runbook_lines(scripts: list[str]) -> list[list[str]]:
    found = [argv for script in scripts for words in shell_commands(script)
             if (argv := runbook_argv(words)) is not None]
    return found


def parse(argv: list[str]) -> str:
    """Parse ``runbook ARGV`` with the real Typer app, as it does before running a command
    (click's ``make_context``, strict parsing: Typer 0.29 carries its own copy of click),
    and return the command's path under ``runbook`` (``check``, ``sandbox status``, ``drill
    run`` for ``drill SECTION``). Raises on an unknown command or option."""
    command: Any = typer.main.get_command(app)
    parent = command.context_class(command, info_name="runbook", resilient_parsing=False)
    name, args, path = "runbook", list(argv), []
    while hasattr(command, "resolve_command"):  # a group: runbook, runbook sandbox ...
        resolved, sub, args = command.resolve_command(parent, args)
        assert resolved is not None and sub is not None
        context = command.context_class(sub, info_name=resolved, parent=parent)
        name, command, parent = resolved, sub, context
        path.append(resolved)
    command.make_context(name, args, parent=parent.parent, resilient_parsing=False)
    return " ".join(path)


# -- what each file runs ---------------------------------------------------------------------


def workflow_scripts() -> list[str]:
    workflow = load(WORKFLOW)[0]
    return [step["run"] for job in workflow["jobs"].values()
            for step in job["steps"] if "run" in step]


def gitlab_jobs() -> dict[str, dict[str, Any]]:
    document = load(GITLAB)[0]
    return {name: job for name, job in document.items()
            if isinstance(job, dict) and not name.startswith(".") and "script" in job}


def gitlab_scripts() -> list[str]:
    document = load(GITLAB)[0]
    return [line for job in document.values() if isinstance(job, dict)
            for key in ("before_script", "script", "after_script")
            for line in job.get(key) or []]


def cronjobs() -> list[dict[str, Any]]:
    found = [d for d in load(CRONJOBS) if d.get("kind") == "CronJob"]
    assert found, "no CronJob in the manifest"
    return found


def container(cronjob: dict[str, Any]) -> dict[str, Any]:
    containers = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def entrypoint() -> list[str]:
    line = next(line for line in DOCKERFILE.read_text().splitlines()
                if line.startswith("ENTRYPOINT"))
    words: list[str] = json.loads(line.removeprefix("ENTRYPOINT"))
    return words


def container_scripts(cronjob: dict[str, Any]) -> list[str]:
    """The shell text a CronJob's container runs: its ``sh -c`` script, or the image's
    entry point (``runbook``) with its args."""
    spec = container(cronjob)
    command = spec.get("command") or entrypoint()
    if command[-2:] == ["sh", "-c"]:
        return list(spec["args"])
    return [shlex.join([*command, *spec.get("args", [])])]


def cronjob_scripts() -> list[str]:
    return [script for cronjob in cronjobs() for script in container_scripts(cronjob)]


SCRIPTS = {"github": workflow_scripts, "gitlab": gitlab_scripts, "kubernetes": cronjob_scripts}


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [WORKFLOW, GITLAB, CRONJOBS], ids=lambda p: p.name)
def test_every_schedule_file_parses(path: Path) -> None:
    assert all(isinstance(document, dict) for document in load(path))


@pytest.mark.parametrize("where", sorted(SCRIPTS))
def test_every_runbook_command_line_parses_against_the_real_command(where: str) -> None:
    lines = runbook_lines(SCRIPTS[where]())
    commands = {parse(argv) for argv in lines}
    assert {"check", "drill run"} <= commands, f"{where}: runbook lines found: {lines}"
    if where != "kubernetes" or any("report" in argv for argv in lines):
        assert "report" in commands
    for argv in (argv for argv in lines if argv[0] in ("check", "drill")):
        assert "--target" in argv and argv[argv.index("--target") + 1] == "env", (
            f"{where}: {shlex.join(argv)} must name --target env, or a missing variable"
            " would start a sandbox instead of failing")
        if argv[0] == "drill":
            assert argv[argv.index("--allow-drills") + 1] == "staging"


def test_a_renamed_option_or_command_turns_the_parse_red() -> None:
    assert parse(["check", "--target", "env", "--cadence", "weekly", "--workers", "2"]) == "check"
    assert parse(["sandbox", "status", "--json"]) == "sandbox status"
    # drill's default command is run: a section, an option or nothing first runs drills.
    assert parse(["drill"]) == parse(["drill", "service-down"]) == "drill run"
    assert parse(["drill", "run", "service-down", "--target", "env"]) == "drill run"
    assert parse(["drill", "sign", "r.json", "--by", "alice"]) == "drill sign"
    assert parse(["drill", "verify", "reports/drills"]) == "drill verify"
    with pytest.raises(typer.TyperException, match="Missing parameter: by"):
        parse(["drill", "sign", "r.json"])
    with pytest.raises(typer.TyperException, match="No such option: --cadance"):
        parse(["check", "--cadance", "weekly"])
    with pytest.raises(typer.BadParameter, match="integer"):
        parse(["check", "--workers", "two"])
    with pytest.raises(typer.TyperException, match="No such command"):
        parse(["chek"])
    with pytest.raises(typer.TyperException, match="No such option: --allow-drill"):
        parse(["drill", "--allow-drill", "staging"])


def test_every_cron_expression_is_valid_and_each_starts_its_run() -> None:
    workflow = load(WORKFLOW)[0]
    github = [entry["cron"] for entry in workflow[True]["schedule"]]  # YAML 1.1: on -> True
    plan = workflow["jobs"]["plan"]["steps"][0]["run"]
    for expression in github:
        assert f'"{expression}")' in plan, f"the plan job maps no run to {expression!r}"
    gitlab = load(GITLAB)[0][".schedules"]
    jobs = gitlab_jobs()
    for name, entry in gitlab.items():
        rules = " ".join(rule["if"] for rule in jobs[name]["rules"])
        assert f'$RUNBOOK_SCHEDULE == "{entry["RUNBOOK_SCHEDULE"]}"' in rules
    kubernetes = [cronjob["spec"]["schedule"] for cronjob in cronjobs()]
    for expression in [*github, *(e["cron"] for e in gitlab.values()), *kubernetes]:
        # Five fields: croniter would also take a sixth (seconds) that none of them reads.
        assert len(expression.split()) == 5 and croniter.is_valid(expression), expression
    assert len(github) == len(gitlab) == len(kubernetes) == 5


def test_the_cronjobs_run_unattended_safely() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    claims = {d["metadata"]["name"] for d in load(CRONJOBS)
              if d.get("kind") == "PersistentVolumeClaim"}
    for cronjob in cronjobs():
        name, spec = cronjob["metadata"]["name"], cronjob["spec"]
        job = spec["jobTemplate"]["spec"]
        pod = job["template"]["spec"]
        assert spec["concurrencyPolicy"] == "Forbid", name
        assert spec["startingDeadlineSeconds"] > 0, name
        assert job["activeDeadlineSeconds"] > 0 and job["backoffLimit"] == 0, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        box = container(cronjob)
        assert box["securityContext"]["allowPrivilegeEscalation"] is False, name
        assert box["image"].endswith(f":{version}"), f"{name}: image {box['image']}"
        secrets = [source["secretRef"]["name"] for source in box["envFrom"]]
        env = {variable["name"]: variable["value"] for variable in box["env"]}
        (argv,) = [argv for argv in runbook_lines(container_scripts(cronjob))
                   if argv[0] in ("check", "drill")]
        reports = argv[argv.index("--reports") + 1].replace("$REPORTS", env.get("REPORTS", ""))
        mount = next(m for m in box["volumeMounts"] if reports.startswith(m["mountPath"]))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert "emptyDir" in volume or volume["persistentVolumeClaim"]["claimName"] in claims
        if argv[0] == "drill":
            assert env["RUNBOOK_ENVIRONMENT"] == "staging" and secrets == ["runbook-staging"]
        else:
            assert env["RUNBOOK_ENVIRONMENT"] == "production" and secrets == [
                "runbook-production"]
            assert "--allow-operations" not in argv and "--tags" not in argv, name


def test_the_dockerfile_builds_the_image_the_cronjobs_run() -> None:
    text = DOCKERFILE.read_text()
    images = {container(cronjob)["image"] for cronjob in cronjobs()}
    assert len(images) == 1
    assert f"docker build -t {images.pop()} ." in text
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert "pip install --no-deps ." in text and "-e ." not in text, \
        "the package ships its scenarios: installed as a wheel is, not from the source tree"
    # The dependencies are installed from pyproject.toml and the pinned constraints alone,
    # before the source is copied: a change to the source does not reinstall them.
    slim = text[text.index("AS runbook-slim"):]
    assert slim.index("COPY pyproject.toml constraints.txt ./") \
        < slim.index("pip install -c constraints.txt -r") \
        < slim.index("COPY . .") < slim.index("pip install --no-deps .")
    assert entrypoint()[-1] == "runbook"
    assert re.search(r"^USER 10001", text, re.MULTILINE), "the image runs as non-root"


def test_the_workflow_maps_every_target_variable_and_guards_its_runs() -> None:
    workflow = load(WORKFLOW)[0]
    job = workflow["jobs"]["runbook"]
    for variable in TARGET_VARIABLES:
        assert job["env"].get(variable) == f"${{{{ secrets.{variable} }}}}", variable
    assert "drills" in job["environment"] and "staging" in job["environment"]
    assert job["concurrency"]["cancel-in-progress"] is False
    for name, each in workflow["jobs"].items():
        assert each["timeout-minutes"] > 0, name
        for step in each["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w./-]+@v\d+(\.\d+)*", step["uses"]), step["uses"]
