"""WebSocket plumbing every consumer shares: who opened a socket, and from which page.

A browser sends the session cookie with a WebSocket handshake from any site, so the Origin
header is what keeps another site (another port on the same host included) from reading live
output with a visitor's session. The rule is Django's own for unsafe requests
(CsrfViewMiddleware): the origin must be this site as the request addressed it (scheme, host
and port of its Host header), or one of CSRF_TRUSTED_ORIGINS (`https://*.example.com` covers
the subdomains).

A handshake with `Authorization: Bearer <token>` is not a browser's (a page cannot set that
header on a WebSocket): the API token alone says who opened it, by the API's own rules, and
no cookie or Origin counts. A token that is not valid is refused; it never falls back to a
session the same handshake may carry.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain
from rest_framework.exceptions import AuthenticationFailed

from accounts.api.authentication import token_for_bearer

# Accepted, then closed with this code: a refusal before accept() reaches the client as a bare
# HTTP 403, which it cannot tell from a broken server.
CLOSE_FORBIDDEN_ORIGIN = 4403
# The consumers' "signed out": a bearer token that is not (or no longer) valid gets it too.
CLOSE_UNAUTHENTICATED = 4401


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


def site_origin(scope: dict[str, Any]) -> str | None:
    """`scheme://host[:port]` of this site as the request addressed it; None for a host
    outside ALLOWED_HOSTS."""
    secure = scope.get("scheme") in ("wss", "https")
    host = _header(scope, b"host")
    if host is None and scope.get("server"):
        # As Django's HttpRequest.get_host(): the server's own address, default port omitted.
        name, port = scope["server"]
        host = name if port == (443 if secure else 80) else f"{name}:{port}"
    if not host:
        return None
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django does in DEBUG
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, allowed):
        return None
    return f"{'https' if secure else 'http'}://{host}"


def origin_allowed(scope: dict[str, Any]) -> bool:
    origin = _header(scope, b"origin")
    if not origin:
        return False  # browsers always send it; without it nothing vouches for the page
    if origin == site_origin(scope):
        return True
    try:
        scheme, netloc = urlsplit(origin)[:2]
    except ValueError:
        return False
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        if "*" not in trusted:
            if origin == trusted:
                return True
            continue
        trusted_scheme, trusted_netloc = urlsplit(trusted)[:2]
        if scheme == trusted_scheme and is_same_domain(netloc, trusted_netloc.lstrip("*")):
            return True
    return False


async def refuse(receive: Any, send: Any, code: int) -> None:
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": code})


class SameOriginMiddleware:
    """Lets only WebSockets opened by this site's own pages through to the application."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket" or origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await refuse(receive, send, CLOSE_FORBIDDEN_ORIGIN)


def bearer_secret(scope: dict[str, Any]) -> str | None:
    """The token of the handshake's `Authorization: Bearer` header; None without one."""
    scheme, _, secret = (_header(scope, b"authorization") or "").partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else None


@database_sync_to_async
def bearer_user(scope: dict[str, Any]) -> Any | None:
    """The user of the handshake's bearer token as the token stands now; None when the token
    is not valid (any more): consumers ask again on each access check."""
    try:
        return token_for_bearer(bearer_secret(scope) or "").user
    except AuthenticationFailed:
        return None


class BearerTokenMiddleware:
    """Sends a handshake with a bearer token to `application` as the token's user
    (`scope["user"]`), and every other one to `otherwise` (the Origin check and the session)."""

    def __init__(self, application: Any, otherwise: Any) -> None:
        self.application = application
        self.otherwise = otherwise

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket" or bearer_secret(scope) is None:
            return await self.otherwise(scope, receive, send)
        user = await bearer_user(scope)
        if user is None:
            return await refuse(receive, send, CLOSE_UNAUTHENTICATED)
        return await self.application(scope | {"user": user}, receive, send)
