"""/metrics for Prometheus: superusers' API tokens or METRICS_TOKEN, never a browser session.

The figures show every team's jobs, so only someone who may see every team (a superuser)
or the scraper's own token may read them.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from rest_framework import authentication, permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.api.authentication import BearerTokenAuthentication
from executions.metrics import ExecutionsCollector

# Not the client's global registry: that one holds this process's own figures (its memory,
# its CPU), which say nothing about the installation when several processes answer.
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(ExecutionsCollector())

# What request.auth is for a request that bore METRICS_TOKEN.
METRICS_TOKEN = "metrics-token"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class MetricsTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <METRICS_TOKEN>`; any other bearer token is left to the API
    token authentication that comes next."""

    def authenticate(self, request: Request) -> tuple[Any, str] | None:
        if not settings.METRICS_TOKEN:
            return None
        header = authentication.get_authorization_header(request).decode(errors="replace")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        # Digests of equal length: the comparison tells nothing of the token's length either.
        if hmac.compare_digest(_digest(secret.strip()), _digest(settings.METRICS_TOKEN)):
            return AnonymousUser(), METRICS_TOKEN
        return None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="tsubame"'


class MayReadMetrics(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        if request.auth == METRICS_TOKEN:
            return True
        user = request.user
        return bool(user.is_authenticated and user.is_active and user.is_superuser)


@extend_schema(exclude=True)  # for Prometheus, not part of the API
class MetricsView(APIView):
    authentication_classes = [MetricsTokenAuthentication, BearerTokenAuthentication]
    permission_classes = [MayReadMetrics]
    throttle_classes: list[Any] = []

    def get(self, request: Request) -> HttpResponse:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return HttpResponse(encoder(REGISTRY), content_type=content_type)


metrics = MetricsView.as_view()
