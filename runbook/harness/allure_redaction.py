"""Allure results written through the redactor: nothing reaches the results directory raw.

allure-pytest-bdd writes results with ``AllureFileLogger``; Allure's "masked" parameters
still store the raw value in the JSON. This logger takes its place and passes every result,
container and text attachment through the run's ``Redactor`` before it touches the disk.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import allure_commons
from allure_commons import hookimpl
from allure_commons.logger import AllureFileLogger
from attr import asdict

from runbook.redact import Redactor


class RedactingFileLogger(AllureFileLogger):  # type: ignore[misc]
    """``AllureFileLogger`` with every byte of text redacted first."""

    def __init__(self, report_dir: str | Path, redact: Redactor) -> None:
        super().__init__(report_dir, clean=False)
        self._redact = redact

    def _write(self, file_name: str, body: bytes) -> None:
        tmp = self._report_dir / f"{file_name}.tmp"
        tmp.write_bytes(body)
        os.replace(tmp, self._report_dir / file_name)

    def _text(self, body: bytes) -> bytes:
        try:
            return self._redact(body.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            return body  # binary (a screenshot): nothing we print goes in there

    def _report_item(self, item: Any) -> None:
        data = asdict(item, filter=lambda _, v: v or v is False)
        text = json.dumps(self._redact.data(data), ensure_ascii=False)
        self._write(item.file_pattern.format(prefix=uuid.uuid4()), text.encode("utf-8"))

    @hookimpl  # type: ignore[misc]
    def report_result(self, result: Any) -> None:
        self._report_item(result)

    @hookimpl  # type: ignore[misc]
    def report_container(self, container: Any) -> None:
        self._report_item(container)

    @hookimpl  # type: ignore[misc]
    def report_globals(self, globals_item: Any) -> None:
        self._report_item(globals_item)

    @hookimpl  # type: ignore[misc]
    def report_attached_file(self, source: str, file_name: str) -> None:
        self._write(file_name, self._text(Path(source).read_bytes()))

    @hookimpl  # type: ignore[misc]
    def report_attached_data(self, body: str | bytes, file_name: str) -> None:
        raw = body.encode("utf-8") if isinstance(body, str) else body
        self._write(file_name, self._text(raw))


def install(redact: Redactor, add_cleanup: Callable[[Callable[[], None]], None]
            ) -> Path | None:
    """Put a redacting logger in place of every ``AllureFileLogger`` registered; returns the
    results directory (``None`` when Allure is not writing results in this run).

    ``add_cleanup`` is pytest's ``config.add_cleanup``: at the end the original logger is put
    back (unused by then) so allure-pytest-bdd's own cleanup finds what it registered.
    """
    manager = allure_commons.plugin_manager
    directory: Path | None = None
    for plugin in list(manager.get_plugins()):
        if isinstance(plugin, AllureFileLogger) and not isinstance(plugin, RedactingFileLogger):
            directory = plugin._report_dir
            name = manager.get_name(plugin)
            manager.unregister(plugin)
            ours = RedactingFileLogger(directory, redact)
            manager.register(ours)

            def restore(ours: RedactingFileLogger = ours, original: Any = plugin,
                        name: str | None = name) -> None:
                manager.unregister(ours)
                manager.register(original, name=name)

            add_cleanup(restore)
    return directory
