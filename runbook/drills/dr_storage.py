"""Disaster Recovery > Complete Infrastructure Loss: the copies that must live OUTSIDE the
infrastructure that is lost, and putting them back into a new one.

``$RUNBOOK_HOME/backup-storage/<drill id>/`` (0700; outside ``sandbox/``, which the disaster
destroys, so it stands for off-site backup storage):

* ``db/<backup>.dump`` and ``.json``: the latest database backup, copied and its SHA-256
  checked against the original's;
* ``s3/manifest.json`` and ``s3/objects/<sha256>``: every current object of the bucket
  (key, SHA-256, size, content type, version id). The runbook's Complete Infrastructure
  Loss procedure says nothing about S3; the sandbox's S3 keeps its objects in memory and
  loses them all with its process, so without this copy the videos would be gone;
* ``secrets.json`` (0600): the service secrets, standing for the team's secret store
  (Railway variables re-entered into the new project). The new infrastructure gets the
  same ``API_SECRET`` and passwords, so the restored users' password hashes and the tokens
  it signs still fit. Never attached to a report.

Everything here is data or secrets: files 0600, directories 0700, nothing printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.config import Target
from runbook.drills.canaries import object_state
from runbook.errors import SandboxError
from runbook.probes.storage import client
from runbook.results import Record, Result
from runbook.sandbox import Sandbox
from runbook.sandbox.backups import BackupInfo, file_sha256
from runbook.sandbox.credentials import rotation_file
from runbook.sandbox.layout import write_json_atomic
from runbook.timeouts import Timeouts

STORAGE_DIR = "backup-storage"


def storage_root(home: Path) -> Path:
    """``$RUNBOOK_HOME/backup-storage``: survives ``Sandbox.destroy``."""
    return Path(home) / STORAGE_DIR


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _private_copy(source: Path, destination: Path) -> None:
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as handle:
        shutil.copyfileobj(handle, out, 1024 * 1024)
        out.flush()
        os.fsync(out.fileno())


@dataclass(frozen=True)
class ObjectCopy:
    """One object of the bucket as copied: its key, digest, size, type and version id."""

    key: str
    sha256: str
    size: int
    content_type: str
    version_id: str

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "sha256": self.sha256, "size": self.size,
                "content_type": self.content_type, "version_id": self.version_id}


@dataclass(frozen=True)
class OffsiteCopy(Record):
    """Where the off-site copies of one drill are, and what they hold."""

    directory: Path
    backup: BackupInfo
    bucket: str
    objects: tuple[ObjectCopy, ...]
    evidence_properties = ("variables_store_copied",)

    @property
    def secrets(self) -> Path:
        return self.directory / "secrets.json"

    @property
    def variables_store_copied(self) -> bool:
        return self.secrets.exists()

    def object_path(self, item: ObjectCopy) -> Path:
        return self.directory / "s3" / "objects" / item.sha256

    @classmethod
    def load(cls, directory: Path) -> OffsiteCopy:
        """Read a copy back (the guard does, after a crash). Raises ``SandboxError``."""
        try:
            manifest = json.loads((directory / "s3" / "manifest.json").read_text("utf-8"))
            metadata = next((directory / "db").glob("*.json"))
        except (OSError, ValueError, StopIteration) as exc:
            raise SandboxError(f"the off-site copy in {directory} is incomplete"
                               f" ({type(exc).__name__})") from None
        return cls(directory, BackupInfo.load(metadata), str(manifest["bucket"]),
                   tuple(ObjectCopy(**o) for o in manifest["objects"]))


def copy_offsite(sandbox: Sandbox, target: Target, timeouts: Timeouts, backup: BackupInfo,
                 directory: Path) -> OffsiteCopy:
    """Copy ``backup`` (checked by SHA-256), every current object of ``S3_BUCKET`` and the
    secrets into ``directory``. Raises ``SandboxError`` when the backup is damaged or its
    copy differs, botocore errors when S3 cannot be read."""
    damaged = backup.verify()
    if damaged:
        raise SandboxError(f"refused: {damaged}")
    db = _private_dir(directory / "db")
    dump = db / backup.path.name
    _private_copy(backup.path, dump)
    _private_copy(backup.metadata_path, db / backup.metadata_path.name)
    if file_sha256(dump) != backup.sha256:
        raise SandboxError(f"the copy of {backup.name} differs from the original")
    _private_copy(sandbox.layout.secrets, directory / "secrets.json")
    rotated = rotation_file(sandbox.layout.secrets)  # when each was rotated travels with them
    if rotated.exists():
        _private_copy(rotated, rotation_file(directory / "secrets.json"))
    bucket = target.require("S3_BUCKET")
    s3 = client(target, timeouts)
    objects_dir = _private_dir(directory / "s3" / "objects")
    copied: list[ObjectCopy] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            got = s3.get_object(Bucket=bucket, Key=entry["Key"])
            body = got["Body"].read()
            digest = hashlib.sha256(body).hexdigest()
            path = objects_dir / digest
            if not path.exists():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(body)
            version = got.get("VersionId") or ""
            copied.append(ObjectCopy(entry["Key"], digest, len(body),
                                     got.get("ContentType") or "binary/octet-stream",
                                     "" if version == "null" else version))
    write_json_atomic(directory / "s3" / "manifest.json",
                      {"bucket": bucket, "objects": [o.to_json() for o in copied]}, mode=0o600)
    return OffsiteCopy(directory, BackupInfo.load(db / backup.metadata_path.name), bucket,
                       tuple(copied))


def install_secrets(sandbox: Sandbox, copy: OffsiteCopy) -> None:
    """Give a new (not yet started) sandbox the secrets from the store (0600)."""
    sandbox.layout.create()
    _private_copy(copy.secrets, sandbox.layout.secrets)
    if rotation_file(copy.secrets).exists():
        _private_copy(rotation_file(copy.secrets), rotation_file(sandbox.layout.secrets))


def secrets_match(sandbox: Sandbox, copy: OffsiteCopy) -> bool:
    """Whether the sandbox runs with the stored secrets (the admin token aside)."""
    try:
        current = json.loads(sandbox.layout.secrets.read_text("utf-8"))
        stored = json.loads(copy.secrets.read_text("utf-8"))
    except (OSError, ValueError):
        return False
    current.pop("admin_token", None)
    stored.pop("admin_token", None)
    return bool(current == stored)


@dataclass(frozen=True)
class RestoredObject(Record):
    """One object put back: its key, the version id copied, the new version id, and whether
    the SHA-256 read back matches."""

    key: str
    copied_version_id: str
    new_version_id: str
    sha256_matches: bool


@dataclass(frozen=True)
class ObjectsRestore(Result):
    """Objects put back from the copy (``restored``), those already intact, and the objects
    that could not be (``errors``). ok when none failed and every one read back the same."""

    restored: tuple[RestoredObject, ...]
    already_intact: int
    errors: tuple[str, ...] = ()

    @property
    def problems(self) -> tuple[str, ...]:
        return (*self.errors, *(f"{o.key}: the SHA-256 read back differs" for o in self.restored
                               if not o.sha256_matches))


def restore_objects(target: Target, timeouts: Timeouts, copy: OffsiteCopy) -> ObjectsRestore:
    """Put every copied object that is missing or different back into ``S3_BUCKET`` and read
    it back (SHA-256). A failed object is a problem, the rest still go."""
    bucket = target.require("S3_BUCKET")
    s3 = client(target, timeouts)
    restored: list[RestoredObject] = []
    problems: list[str] = []
    intact = 0
    for item in copy.objects:
        try:
            now = object_state(s3, bucket, item.key)
            if now.present and now.sha256 == item.sha256:
                intact += 1
                continue
            body = copy.object_path(item).read_bytes()
            put = s3.put_object(Bucket=bucket, Key=item.key, Body=body,
                                ContentType=item.content_type)
            after = object_state(s3, bucket, item.key)
            restored.append(RestoredObject(item.key, item.version_id,
                                           str(put.get("VersionId") or ""),
                                           after.sha256 == item.sha256))
        except Exception as exc:  # one object must not stop the others
            problems.append(f"{item.key}: {type(exc).__name__}")
    return ObjectsRestore(tuple(restored), intact, tuple(problems))


def check_objects(target: Target, timeouts: Timeouts, objects: Sequence[ObjectCopy]
                  ) -> list[dict[str, Any]]:
    """Each copied object as the bucket holds it now: present, SHA-256, version id."""
    bucket = target.require("S3_BUCKET")
    s3 = client(target, timeouts)
    found = []
    for item in objects:
        state = object_state(s3, bucket, item.key)
        found.append({**state.evidence(), "expected_sha256": item.sha256,
                      "copied_version_id": item.version_id,
                      "intact": state.present and state.sha256 == item.sha256})
    return found


def remove_offsite(copy: OffsiteCopy | Path) -> None:
    """Delete one drill's off-site copies."""
    directory = copy.directory if isinstance(copy, OffsiteCopy) else copy
    shutil.rmtree(directory, ignore_errors=True)


__all__ = [
    "STORAGE_DIR",
    "ObjectCopy",
    "ObjectsRestore",
    "OffsiteCopy",
    "check_objects",
    "copy_offsite",
    "install_secrets",
    "remove_offsite",
    "restore_objects",
    "secrets_match",
    "storage_root",
]
