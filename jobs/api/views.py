from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from executions import services
from executions.api.serializers import ExecutionSerializer
from executions.api.views import refused_as_400, started
from executions.models import Trigger
from jobs.api.serializers import JobSerializer, RunSerializer, SecretVariableSerializer
from jobs.filters import JobFilter, SecretVariableFilter
from jobs.models import Job, SecretVariable
from jobs.services import delete_job, delete_secret_variable, save_job, save_secret_variable
from tsubame.api.base import TeamScopedViewSet
from tsubame.api.mixins import ServiceWriteMixin


class JobViewSet(
    ServiceWriteMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet
):
    queryset = Job.objects.select_related("team").prefetch_related(
        "servers", "target_tags", "secret_variables", "links"
    )
    serializer_class = JobSerializer
    save_service = staticmethod(save_job)
    # The serializer's `then`: the job's links, set by the service with the job.
    service_fields = frozenset({"links"})
    delete_service = staticmethod(delete_job)
    filterset_class = JobFilter
    ordering_fields = ["name", "created_at", "updated_at"]
    ordering = ["name"]

    @extend_schema(request=RunSerializer, responses={201: ExecutionSerializer})
    @action(detail=True, methods=["post"], required_perm="jobs.run_job")
    def run(self, request: Request, pk: str) -> Response:
        """Start an execution on the job's targets, or on a subset of its team's servers.

        The response carries the execution and `websocket_url`, where its output streams live.
        """
        job = self.get_object()
        body = RunSerializer(data=request.data, job=job)
        body.is_valid(raise_exception=True)
        with refused_as_400():
            execution = services.start_execution(
                job,
                trigger=Trigger.API,
                triggered_by=request.user,
                servers=body.validated_data.get("servers"),
                tags=body.validated_data.get("tags"),
                parameters=body.validated_data.get("parameters"),
            )
        return started(execution, self.get_serializer_context())


class SecretVariableViewSet(
    ServiceWriteMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet
):
    queryset = SecretVariable.objects.select_related("team")
    serializer_class = SecretVariableSerializer
    save_service = staticmethod(save_secret_variable)
    delete_service = staticmethod(delete_secret_variable)
    filterset_class = SecretVariableFilter
    ordering_fields = ["name", "created_at", "updated_at"]
    ordering = ["name"]
