from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Source
from servers import services, ssh
from servers.api.serializers import (
    ConnectionCheckSerializer,
    HostKeySerializer,
    ServerSerializer,
    TrustHostKeySerializer,
)
from servers.filters import ServerFilter
from servers.models import Server
from tsubame.api.base import TeamScopedViewSet
from tsubame.api.mixins import ServiceWriteMixin
from tsubame.api.schema import error_response


class ServerUnavailable(APIException):
    status_code = 502
    default_code = "server_unavailable"


class ServerViewSet(
    ServiceWriteMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet
):
    queryset = Server.objects.select_related("team", "host_key_trusted_by").prefetch_related("tags")
    serializer_class = ServerSerializer
    save_service = staticmethod(services.save_server)
    delete_service = staticmethod(services.delete_server)
    filterset_class = ServerFilter
    ordering_fields = ["name", "host", "created_at", "last_check_at"]
    ordering = ["name"]

    @extend_schema(request=None, responses=ConnectionCheckSerializer)
    @action(detail=True, methods=["post"], required_perm="servers.test_connection")
    def test(self, request: Request, pk: str) -> Response:
        """Connect, log in and run `true`; reports ok, auth failure, host key problems,
        unreachable or timeout, with the latency."""
        check = services.check_connection(self.get_object())
        return Response(ConnectionCheckSerializer(check).data)

    @extend_schema(
        request=None,
        responses={
            200: HostKeySerializer,
            502: error_response("The server could not be reached, or offered no host key."),
        },
    )
    @action(
        detail=True, methods=["post"], url_path="host-key", required_perm="servers.trust_host_key"
    )
    def host_key(self, request: Request, pk: str) -> Response:
        """Fetch the host key the server offers now. Nothing is trusted by this call."""
        server = self.get_object()
        try:
            key = ssh.fetch_host_key(server.host, server.port)
        except ssh.SSHError as exc:
            raise ServerUnavailable(str(exc)) from exc
        return Response(HostKeySerializer.of(key))

    @extend_schema(
        request=TrustHostKeySerializer,
        responses={
            200: ServerSerializer,
            409: error_response("The server now offers another key: nothing was trusted."),
            502: error_response("The server could not be reached, or offered no host key."),
        },
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="host-key/trust",
        required_perm="servers.trust_host_key",
    )
    def trust_host_key(self, request: Request, pk: str) -> Response:
        """Trust the server's host key, if it still offers the one with this fingerprint."""
        server = self.get_object()
        body = TrustHostKeySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            services.trust_offered_host_key(
                server, body.validated_data["fingerprint"], by=request.user, source=Source.API
            )
        except services.FingerprintMismatch as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        except ssh.SSHError as exc:
            raise ServerUnavailable(str(exc)) from exc
        return Response(self.get_serializer(server).data)
