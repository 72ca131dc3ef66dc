"""HS256 JWTs signed with ``API_SECRET``: user tokens (``sub``, ``role``, ``tv`` = the user's
token version, ``iat``, ``exp``) and service tokens (the worker calling the API).

Used by the API, the worker and the process manager (which mints the sandbox's
``ADMIN_TOKEN`` with :func:`issue_user_token`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
ISSUER = "legacyvideo-api"
USER_TOKEN = "user"
SERVICE_TOKEN = "service"
#: Clock skew tolerated between the services, in seconds.
LEEWAY_S = 5


class TokenError(Exception):
    """The token is malformed, signed with another secret, expired or of the wrong kind."""


@dataclass(frozen=True)
class UserClaims:
    """What a verified user token says."""

    user_id: str
    role: str
    token_version: int
    issued_at: int
    expires_at: int


@dataclass(frozen=True)
class ServiceClaims:
    """What a verified service token says."""

    service: str
    issued_at: int
    expires_at: int


def issue_user_token(
    secret: str,
    user_id: str,
    role: str,
    token_version: int,
    ttl_s: int = 3600,
    *,
    now: float | None = None,
) -> str:
    """A user token valid for ``ttl_s`` seconds from ``now`` (default: the current time)."""
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": user_id,
        "role": role,
        "tv": int(token_version),
        "typ": USER_TOKEN,
        "iss": ISSUER,
        "iat": issued,
        "exp": issued + int(ttl_s),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def issue_service_token(secret: str, service: str = "worker", ttl_s: int = 300) -> str:
    """A short-lived token for a LegacyVideo service calling the API's internal endpoints."""
    issued = int(time.time())
    claims = {
        "sub": service,
        "typ": SERVICE_TOKEN,
        "iss": ISSUER,
        "iat": issued,
        "exp": issued + int(ttl_s),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _decode(secret: str, token: str, kind: str) -> dict[str, object]:
    try:
        claims: dict[str, object] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            leeway=LEEWAY_S,
            options={"require": ["sub", "iat", "exp", "typ"]},
        )
    except jwt.PyJWTError as exc:
        raise TokenError(f"{type(exc).__name__}: {exc}") from None
    if claims.get("typ") != kind:
        raise TokenError(f"expected a {kind} token, got {claims.get('typ')!r}")
    return claims


def verify_user_token(secret: str, token: str) -> UserClaims:
    """The claims of a valid user token; raises TokenError otherwise. Does not check the
    token version against the database: the API does that."""
    claims = _decode(secret, token, USER_TOKEN)
    try:
        return UserClaims(
            user_id=str(claims["sub"]),
            role=str(claims["role"]),
            token_version=int(claims["tv"]),  # type: ignore[call-overload]
            issued_at=int(claims["iat"]),  # type: ignore[call-overload]
            expires_at=int(claims["exp"]),  # type: ignore[call-overload]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenError(f"malformed user token claims: {type(exc).__name__}") from None


def verify_service_token(secret: str, token: str) -> ServiceClaims:
    """The claims of a valid service token; raises TokenError otherwise."""
    claims = _decode(secret, token, SERVICE_TOKEN)
    try:
        return ServiceClaims(
            service=str(claims["sub"]),
            issued_at=int(claims["iat"]),  # type: ignore[call-overload]
            expires_at=int(claims["exp"]),  # type: ignore[call-overload]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenError(f"malformed service token claims: {type(exc).__name__}") from None
