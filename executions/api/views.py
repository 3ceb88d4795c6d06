from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, renderers
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Source
from executions import logs, services
from executions.api.serializers import (
    ExecutionSerializer,
    LogChunkSerializer,
    LogPageSerializer,
    LogQuerySerializer,
    RerunSerializer,
)
from executions.filters import ExecutionFilter
from executions.models import Execution, HostRun
from tsubame.api.base import TeamScopedViewSet


@contextmanager
def refused_as_400() -> Iterator[None]:
    """A run that cannot start is the request's fault: a 400 that names the bad parameters."""
    try:
        yield
    except services.InvalidParameters as exc:
        raise ValidationError({"parameters": exc.errors}) from exc
    except services.ExecutionError as exc:
        raise ValidationError({"non_field_errors": [str(exc)]}) from exc


def started(execution: Execution, context: dict[str, Any]) -> Response:
    """The 201 answer to a request that started `execution`."""
    execution = Execution.objects.with_details().get(pk=execution.pk)
    return Response(ExecutionSerializer(execution, context=context).data, status=201)


class OctetStreamRenderer(renderers.BaseRenderer):
    """Lets clients ask for the raw log with `Accept: application/octet-stream`."""

    media_type = "application/octet-stream"
    format = "raw"
    charset = None

    def render(self, data: Any, accepted_media_type: Any = None, context: Any = None) -> bytes:
        return renderers.JSONRenderer().render(data)  # errors stay readable


class ExecutionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    queryset = Execution.objects.with_details().with_children()
    serializer_class = ExecutionSerializer
    filterset_class = ExecutionFilter
    ordering_fields = ["created_at", "started_at", "finished_at", "status", "job_name"]
    ordering = ["-created_at", "-id"]

    @extend_schema(request=None, responses=ExecutionSerializer)
    @action(detail=True, methods=["post"], required_perm="executions.cancel_execution")
    def cancel(self, request: Request, pk: str) -> Response:
        """Stop a queued or running execution; the remote processes are killed within seconds.

        Cancelling a finished execution changes nothing and returns it as it is.
        """
        execution = self.get_object()
        services.cancel_execution(execution, by=request.user, source=Source.API)
        return Response(self.get_serializer(self.get_queryset().get(pk=execution.pk)).data)

    @extend_schema(request=RerunSerializer, responses={201: ExecutionSerializer})
    @action(detail=True, methods=["post"], required_perm="jobs.run_job")
    def rerun(self, request: Request, pk: str) -> Response:
        """Start the same job again with the same parameter values on the same servers, or
        only on those whose host did not succeed. Secret parameters must be given again."""
        execution = self.get_object()
        if execution.job is not None:
            self.require("jobs.run_job", execution.job)
        body = RerunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with refused_as_400():
            rerun = services.rerun_execution(
                execution,
                trigger=Source.API,
                triggered_by=request.user,
                only_failed=body.validated_data["only_failed"],
                secret_parameters=body.validated_data.get("parameters"),
            )
        return started(rerun, self.get_serializer_context())

    @extend_schema(parameters=[LogQuerySerializer], responses=LogPageSerializer)
    @action(detail=True, methods=["get"])
    def log(self, request: Request, pk: str) -> Response:
        """Stored output after a sequence number, in order, a page at a time (per host if
        asked). Follow `next_after` until `complete`, or use the WebSocket to follow live."""
        execution = self.get_object()
        query = LogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        host_run_id = self._host_run_id(execution, query.validated_data.get("host_run"))
        after = query.validated_data["after"]
        chunks, more = logs.read_page(
            execution.pk, after, host_run_id=host_run_id, limit=query.validated_data["limit"]
        )
        return Response(
            {
                "chunks": LogChunkSerializer(chunks, many=True).data,
                "next_after": chunks[-1].seq if chunks else after,
                "complete": execution.is_finished and not more,
            }
        )

    @extend_schema(
        parameters=[OpenApiParameter("host_run", int, description="Only this host run.")],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="The output exactly as stored. Without host_run, each host's "
                "output follows a `==> name <==` line, always one line (server names are "
                "printable text on one line). A host's output can itself contain such a line: "
                "ask with host_run for one host's exact bytes.",
            )
        },
    )
    @action(
        detail=True,
        methods=["get"],
        url_path="log/raw",
        renderer_classes=[renderers.JSONRenderer, OctetStreamRenderer],
    )
    def raw_log(self, request: Request, pk: str) -> StreamingHttpResponse:
        """Download the whole log, streamed, whatever its size."""
        execution = self.get_object()
        try:
            host_run = int(request.query_params["host_run"])
        except KeyError:
            host_run = None
        except ValueError:
            raise ValidationError({"host_run": ["A valid integer is required."]}) from None
        host_run_id = self._host_run_id(execution, host_run)
        response = StreamingHttpResponse(
            logs.raw_bytes(execution.pk, host_run_id), content_type="application/octet-stream"
        )
        suffix = f"-host-{host_run_id}" if host_run_id else ""
        response["Content-Disposition"] = (
            f'attachment; filename="execution-{execution.pk}{suffix}.log"'
        )
        return response

    def _host_run_id(self, execution: Execution, host_run: int | None) -> int | None:
        if (
            host_run is not None
            and not HostRun.objects.filter(pk=host_run, execution=execution).exists()
        ):
            raise NotFound("No such host run in this execution.")
        return host_run
