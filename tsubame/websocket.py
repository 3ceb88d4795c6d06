"""WebSocket plumbing every consumer shares: which pages may open a socket.

A browser sends the session cookie with a WebSocket handshake from any site, so the Origin
header is what keeps another site (another port on the same host included) from reading live
output with a visitor's session. The rule is Django's own for unsafe requests
(CsrfViewMiddleware): the origin must be this site as the request addressed it (scheme, host
and port of its Host header), or one of CSRF_TRUSTED_ORIGINS (`https://*.example.com` covers
the subdomains).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

# Accepted, then closed with this code: a refusal before accept() reaches the client as a bare
# HTTP 403, which it cannot tell from a broken server.
CLOSE_FORBIDDEN_ORIGIN = 4403


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


class SameOriginMiddleware:
    """Lets only WebSockets opened by this site's own pages through to the application."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket" or origin_allowed(scope):
            return await self.application(scope, receive, send)
        if (await receive())["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": CLOSE_FORBIDDEN_ORIGIN})
        return None
