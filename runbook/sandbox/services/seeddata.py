"""The sandbox's seed data, shared by ``migrate.seed`` (database rows) and the S3 stand-in
(the objects of the seeded videos). Fixed ids keep seeding idempotent."""

from __future__ import annotations

from dataclasses import dataclass

ADMIN_EMAIL = "admin@legacyvideo.test"
USER_EMAIL = "user@legacyvideo.test"
#: The user the runbook's reversible operations act on (lock then unlock, revoke).
CANARY_EMAIL = "canary@legacyvideo.test"


@dataclass(frozen=True)
class SeedUser:
    id: str
    email: str
    name: str
    role: str


@dataclass(frozen=True)
class SeedVideo:
    id: str
    owner_email: str
    title: str
    s3_key: str
    content_type: str
    status: str


@dataclass(frozen=True)
class SeedRelease:
    id: str
    video_id: str
    requested_by_email: str
    status: str


@dataclass(frozen=True)
class SeedAudit:
    id: str
    user_email: str | None
    action: str
    ip: str
    metadata: dict[str, str]


USERS = (
    SeedUser("00000000-0000-4000-8000-000000000001", ADMIN_EMAIL, "Sandbox Admin", "ADMIN"),
    SeedUser("00000000-0000-4000-8000-000000000002", USER_EMAIL, "Demo User", "USER"),
    SeedUser("00000000-0000-4000-8000-000000000003", CANARY_EMAIL, "Runbook Canary", "USER"),
)

VIDEOS = (
    SeedVideo(
        "00000000-0000-4000-8000-000000000101", USER_EMAIL, "Welcome to LegacyVideo",
        "videos/seed/00000000-0000-4000-8000-000000000101/welcome.mp4", "video/mp4", "READY",
    ),
    SeedVideo(
        "00000000-0000-4000-8000-000000000102", USER_EMAIL, "Family reunion 1998",
        "videos/seed/00000000-0000-4000-8000-000000000102/reunion.mp4", "video/mp4", "READY",
    ),
    SeedVideo(
        "00000000-0000-4000-8000-000000000103", CANARY_EMAIL, "Canary clip",
        "videos/seed/00000000-0000-4000-8000-000000000103/canary.webm", "video/webm", "READY",
    ),
)

RELEASES = (
    SeedRelease(
        "00000000-0000-4000-8000-000000000201", VIDEOS[0].id, USER_EMAIL, "COMPLETED",
    ),
    SeedRelease(
        "00000000-0000-4000-8000-000000000202", VIDEOS[1].id, USER_EMAIL, "COMPLETED",
    ),
)

AUDIT = (
    SeedAudit("00000000-0000-4000-8000-000000000301", ADMIN_EMAIL, "LOGIN_SUCCESS", "127.0.0.1",
              {"source": "seed"}),
    SeedAudit("00000000-0000-4000-8000-000000000302", USER_EMAIL, "LOGIN_SUCCESS", "127.0.0.1",
              {"source": "seed"}),
    SeedAudit("00000000-0000-4000-8000-000000000303", None, "LOGIN_FAILURE", "127.0.0.1",
              {"source": "seed", "email": "nobody@legacyvideo.test", "reason": "bad_credentials"}),
    SeedAudit("00000000-0000-4000-8000-000000000304", USER_EMAIL, "RELEASE_REQUESTED",
              "127.0.0.1", {"source": "seed", "releaseId": RELEASES[0].id}),
)


def placeholder_bytes(video: SeedVideo) -> bytes:
    """The small stand-in object stored for a seeded video."""
    return f"LegacyVideo sandbox placeholder for {video.title!r} ({video.id})\n".encode()
