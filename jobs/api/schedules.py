"""Schedules in the API: `/api/v1/schedules/` and its `preview` of cron expressions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from jobs import parameters as job_parameters
from jobs import schedules
from jobs.filters import ScheduleFilter
from jobs.models import Job, Schedule
from jobs.services import delete_schedule, save_schedule
from servers.api.serializers import TagNamesField
from servers.models import Server
from tsubame.api.base import (
    StrictModelSerializer,
    StrictSerializer,
    TeamScopedViewSet,
    VisibleRelatedField,
)
from tsubame.api.mixins import ServiceWriteMixin

NEXT_RUNS = 5


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class RunTimeSerializer(serializers.Serializer):
    utc = serializers.CharField(help_text="The run's time in UTC, ending in Z.")
    local = serializers.CharField(help_text="The same time in the schedule's zone, with offset.")
    dst_change = serializers.BooleanField(
        help_text="A daylight-saving change falls within an hour of it: moved out of a "
        "skipped hour, in a repeated hour, or next to one."
    )

    def to_representation(self, slot: schedules.Slot) -> dict[str, Any]:
        return {
            "utc": utc_text(slot.utc),
            "local": slot.local.isoformat(),
            "dst_change": slot.dst_change,
        }


class ScheduleSerializer(StrictModelSerializer):
    """Parameter values are checked as for a run. Secret ones are write-only: they read as
    null, and omitting `parameters` when changing a schedule keeps them."""

    job = VisibleRelatedField(queryset=Job.objects.all())
    servers = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=Server.objects.all(),
        required=False,
        help_text="Server ids of the job's team; with none and no tags, the job's targets.",
    )
    target_tags = TagNamesField(required=False)
    parameters = serializers.DictField(child=serializers.JSONField(), required=False)
    next_runs = serializers.SerializerMethodField()

    class Meta:
        model = Schedule
        fields = [
            "id",
            "job",
            "name",
            "cron",
            "timezone",
            "parameters",
            "servers",
            "target_tags",
            "enabled",
            "missed_runs",
            "start_deadline_seconds",
            "next_run_at",
            "next_runs",
            "last_slot_at",
            "last_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["next_run_at", "last_slot_at", "last_error"]

    def to_representation(self, schedule: Schedule) -> dict[str, Any]:
        data = super().to_representation(schedule)
        # Secret values are write-only: named, never shown.
        data["parameters"] = {**schedule.parameters, **dict.fromkeys(schedule.secret_values())}
        return data

    @extend_schema(responses=RunTimeSerializer(many=True))
    def get_next_runs(self, schedule: Schedule) -> list[dict[str, Any]]:
        """The next 5 runs from now (paused: when they would be)."""
        runs = schedules.preview(schedule.cron, schedule.timezone, timezone.now(), NEXT_RUNS)
        return [RunTimeSerializer(slot).data for slot in runs]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        job = attrs.get("job", getattr(self.instance, "job", None))
        if self.instance is not None and job != self.instance.job:
            raise serializers.ValidationError(
                {"job": ["A schedule stays with its job; create one on the other job."]}
            )
        servers = attrs.get("servers")
        if servers:
            try:
                job.clean_targets(list(servers))
            except ValidationError as exc:
                raise serializers.ValidationError({"servers": exc.messages}) from exc
        if "parameters" in attrs or self.instance is None:
            try:
                job_parameters.clean_values(job.parameters, attrs.get("parameters") or {})
            except job_parameters.ParameterErrors as exc:
                raise serializers.ValidationError({"parameters": exc.by_name}) from exc
            attrs.setdefault("parameters", {})
        return attrs


class PreviewSerializer(StrictSerializer):
    cron = serializers.CharField(validators=[schedules.validate_cron])
    timezone = serializers.CharField(validators=[schedules.validate_zone])
    after = serializers.DateTimeField(required=False, help_text="Default: now.")
    count = serializers.IntegerField(min_value=1, max_value=100, default=5)


class PreviewAnswerSerializer(serializers.Serializer):
    runs = RunTimeSerializer(many=True)


class ScheduleViewSet(
    ServiceWriteMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet
):
    queryset = Schedule.objects.select_related("job").prefetch_related("servers", "target_tags")
    serializer_class = ScheduleSerializer
    save_service = staticmethod(save_schedule)
    delete_service = staticmethod(delete_schedule)
    owner_field = "job"
    service_fields = frozenset({"parameters"})
    filterset_class = ScheduleFilter
    ordering_fields = ["id", "next_run_at", "created_at"]
    ordering = ["id"]

    @extend_schema(request=PreviewSerializer, responses=PreviewAnswerSerializer)
    @action(detail=False, methods=["post"])
    def preview(self, request: Request) -> Response:
        """The next runs of a cron expression in a time zone, DST changes marked."""
        body = PreviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        runs = schedules.preview(
            data["cron"], data["timezone"], data.get("after") or timezone.now(), data["count"]
        )
        return Response({"runs": [RunTimeSerializer(slot).data for slot in runs]})
