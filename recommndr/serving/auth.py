"""Admin endpoints' guard: a JWT bearer token (signature, issuer, audience, expiry and a capped
lifetime checked, HS256 with a key of at least 32 bytes from the settings, which Key Vault fills
on Azure) and an allowed client IP; the alert webhook's guard, a static bearer secret (what
Alertmanager can send), compared in constant time.

The client IP is the socket's peer, except behind a proxy that is trusted: a configured
``trusted_proxies`` network, or the Azure Functions host, which hands requests to the app
in-process (no socket peer) after its front end appended the caller's address to
``X-Forwarded-For``. Only the last hop is believed: earlier entries are whatever the caller sent."""

from __future__ import annotations

import hashlib
import hmac
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


def _host(entry: str) -> str:
    """The address of one ``X-Forwarded-For`` entry: ``1.2.3.4``, ``1.2.3.4:5678``, ``[::1]:5678``
    or ``::1``."""
    entry = entry.strip()
    if entry.startswith("["):
        return entry[1 : entry.find("]")] if "]" in entry else entry
    if entry.count(":") == 1:  # IPv4 with a port (a bare IPv6 address has several colons)
        return entry.split(":", 1)[0]
    return entry


def client_address(
    peer: str | None, forwarded_for: str | None, trusted_proxies: list[str], functions_host: bool = False
) -> str | None:
    """The caller's address: the socket peer, or the last ``X-Forwarded-For`` hop when the peer is
    a trusted proxy, or absent inside the Functions host (``functions_host``). Without a peer
    elsewhere, or without a hop from a trusted proxy, it is unknown (None: refused)."""
    if peer is None and not functions_host:
        return None
    trusted = peer is None
    if peer is not None and trusted_proxies:
        try:
            ip = ipaddress.ip_address(peer)
            trusted = any(ip in ipaddress.ip_network(n, strict=False) for n in trusted_proxies)
        except ValueError:
            trusted = False
    if not trusted:
        return peer
    hops = [h for h in (forwarded_for or "").split(",") if h.strip()]
    return _host(hops[-1]) if hops else None


def check_admin(
    authorization: str | None,
    client_ip: str | None,
    secret: str | None,
    issuer: str,
    audience: str,
    allowed_networks: list[str],
    max_lifetime_s: int = 3600,
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
            options={"require": ["exp", "iat", "iss", "aud"]},
            leeway=30,
        )
    except jwt.ExpiredSignatureError as exc:
        raise UnauthorizedError("the token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise UnauthorizedError(f"invalid token: {exc}") from exc
    lifetime = float(claims["exp"]) - float(claims["iat"])
    if lifetime > max_lifetime_s:
        raise UnauthorizedError(
            f"the token lives {lifetime:.0f} s (exp - iat); at most {max_lifetime_s} s are accepted"
        )
    return claims


def check_webhook(authorization: str | None, secret: str | None) -> None:
    """The alert webhook's caller holds the configured secret, or UnauthorizedError / Forbidden.
    Both sides are hashed first, so the comparison takes the same time whatever the lengths."""
    if not secret:
        raise ForbiddenError(
            "the alert webhook is disabled: no token is configured (RECOMMNDR_ALERT_WEBHOOK_TOKEN)"
        )
    if not authorization or not authorization.lower().startswith("bearer "):
        raise UnauthorizedError("a bearer token is required (Authorization: Bearer <webhook token>)")
    given = hashlib.sha256(authorization.split(" ", 1)[1].strip().encode()).digest()
    if not hmac.compare_digest(given, hashlib.sha256(secret.encode()).digest()):
        raise UnauthorizedError("wrong webhook token")
