from __future__ import annotations

import hmac
from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.models import TOKEN_PREFIX, ApiToken, hash_token

# Recording every use would write on every request; once a minute is precise enough.
LAST_USED_PRECISION = timedelta(minutes=1)


def token_for_bearer(secret: str) -> ApiToken:
    """The usable token whose text is `secret`, for every face that takes a bearer token (the
    API and the live-output WebSocket); AuthenticationFailed says why not."""
    parts = secret.split("_", 2)  # the random part may contain "_" itself
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise exceptions.AuthenticationFailed("Malformed API token.")
    token = ApiToken.objects.select_related("user").filter(lookup=parts[1]).first()
    if token is None or not hmac.compare_digest(token.token_hash, hash_token(secret)):
        raise exceptions.AuthenticationFailed("Invalid API token.")
    if token.revoked_at:
        raise exceptions.AuthenticationFailed("This API token was revoked.")
    if token.expires_at <= timezone.now():
        raise exceptions.AuthenticationFailed("This API token has expired.")
    if not token.user.is_active:
        raise exceptions.AuthenticationFailed("The token's user is inactive.")
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer tsb_<lookup>_<secret>` with a personal API token."""

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode(errors="replace")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token_for_bearer(secret.strip())
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="tsubame"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.BearerTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "tsb_<lookup>_<secret>"}
