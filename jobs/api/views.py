from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from executions import services
from executions.api.serializers import ExecutionSerializer
from executions.models import Execution, Trigger
from jobs.api.serializers import JobSerializer, RunSerializer
from jobs.filters import JobFilter
from jobs.models import Job
from jobs.services import delete_job, save_job
from tsubame.api.base import TeamScopedViewSet
from tsubame.api.mixins import ServiceWriteMixin


class JobViewSet(
    ServiceWriteMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet
):
    queryset = Job.objects.select_related("team").prefetch_related("servers")
    serializer_class = JobSerializer
    save_service = staticmethod(save_job)
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
        try:
            execution = services.start_execution(
                job,
                trigger=Trigger.API,
                triggered_by=request.user,
                servers=body.validated_data.get("servers"),
            )
        except services.ExecutionError as exc:
            raise ValidationError({"non_field_errors": [str(exc)]}) from exc
        execution = Execution.objects.with_details().get(pk=execution.pk)
        data = ExecutionSerializer(execution, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_201_CREATED)
