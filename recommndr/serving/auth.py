"""Admin endpoints' guard: a JWT bearer token (signature, issuer, audience and expiry checked,
HS256 with a key from the settings, which Key Vault fills on Azure) and an allowed client IP."""

from __future__ import annotations

import ipaddress
from typing import Any

import jwt

from recommndr.errors import RecommndrError


class UnauthorizedError(RecommndrError):
    code = "unauthorized"
    http_status = 401


class ForbiddenError(RecommndrError):
    code = "forbidden"
    http_status = 403


def check_admin(
    authorization: str | None,
    client_ip: str | None,
    secret: str | None,
    issuer: str,
    audience: str,
    allowed_networks: list[str],
) -> dict[str, Any]:
    """The token's claims, or UnauthorizedError / Forbidden naming what is wrong."""
    if not secret:
        raise ForbiddenError(
            "admin endpoints are disabled: no admin key is configured (RECOMMNDR_ADMIN_JWT_SECRET)"
        )
    try:
        ip = ipaddress.ip_address(client_ip or "")
    except ValueError as exc:
        raise ForbiddenError("the client address is unknown") from exc
    if not any(ip in ipaddress.ip_network(net, strict=False) for net in allowed_networks):
        raise ForbiddenError(f"client {ip} is not allowed to use admin endpoints")
    if not authorization or not authorization.lower().startswith("bearer "):
        raise UnauthorizedError("a bearer token is required (Authorization: Bearer <JWT>)")
    token = authorization.split(" ", 1)[1].strip()
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=issuer,
            audience=audience,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise UnauthorizedError("the token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise UnauthorizedError(f"invalid token: {exc}") from exc
    return claims
