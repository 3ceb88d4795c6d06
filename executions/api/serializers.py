from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import serializers

from executions.consumers import chunk_message
from executions.models import Execution, HostRun, LogChunk
from tsubame.api.base import StrictSerializer


class HostRunSerializer(serializers.ModelSerializer):
    duration = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = HostRun
        fields = [
            "id",
            "server",
            "server_name",
            "address",
            "status",
            "exit_code",
            "error",
            "started_at",
            "finished_at",
            "duration",
        ]


class ExecutionSerializer(serializers.ModelSerializer):
    host_runs = HostRunSerializer(many=True, read_only=True)
    triggered_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    cancel_requested_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    duration = serializers.FloatField(read_only=True, allow_null=True)
    websocket_url = serializers.SerializerMethodField(
        help_text="Path of the WebSocket that streams this execution's output live."
    )
    log_url = serializers.SerializerMethodField()
    parameters = serializers.JSONField(
        read_only=True, help_text="The values the run was given by name; a secret's is null."
    )
    parent = serializers.PrimaryKeyRelatedField(
        read_only=True,
        help_text="A chained run (trigger chain): the run whose end started it.",
    )
    children = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, help_text="The chained runs this run's end started."
    )
    output_pruned_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="When the team's retention removed this run's output (null: not removed).",
    )

    class Meta:
        model = Execution
        fields = [
            "id",
            "team",
            "job",
            "job_name",
            "status",
            "summary",
            "trigger",
            "triggered_by",
            "parent",
            "chain_depth",
            "children",
            "created_at",
            "started_at",
            "finished_at",
            "duration",
            "output_pruned_at",
            "cancel_requested_at",
            "cancel_requested_by",
            "interpreter",
            "script",
            "timeout_seconds",
            "max_parallel",
            "use_terminal",
            "parameters",
            "secret_variables",
            "target_tags",
            "rerun_of",
            "retry_of",
            "attempt",
            "retry_due_at",
            "schedule",
            "scheduled_for",
            "webhook",
            "host_runs",
            "websocket_url",
            "log_url",
        ]

    def get_websocket_url(self, execution: Execution) -> str:
        return f"/ws/executions/{execution.pk}/"

    def get_log_url(self, execution: Execution) -> str:
        return reverse("api:execution-log", args=[execution.pk])


class RerunSerializer(StrictSerializer):
    only_failed = serializers.BooleanField(
        default=False, help_text="Only the servers whose host did not succeed."
    )
    parameters = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        help_text="The secret parameters' values, by name: they are not kept after a run.",
    )


class LogQuerySerializer(StrictSerializer):
    after = serializers.IntegerField(
        default=-1, min_value=-1, help_text="Return chunks after this sequence number."
    )
    host_run = serializers.IntegerField(
        required=False, min_value=1, help_text="Only this host run's output."
    )
    limit = serializers.IntegerField(default=200, min_value=1, max_value=1000)


class LogChunkSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    host_run = serializers.IntegerField()
    stream = serializers.ChoiceField(choices=["stdout", "stderr"])
    text = serializers.CharField(help_text="The bytes as UTF-8, invalid bytes replaced.")
    b64 = serializers.CharField(
        required=False, help_text="The exact bytes, base64, present when they are not UTF-8."
    )

    def to_representation(self, chunk: LogChunk) -> dict[str, Any]:
        return chunk_message(chunk)


class LogPageSerializer(serializers.Serializer):
    chunks = LogChunkSerializer(many=True)
    next_after = serializers.IntegerField(
        help_text="Pass as `after` to get the next page (the last seq returned)."
    )
    complete = serializers.BooleanField(
        help_text="True once the execution has finished and no chunk follows this page."
    )
