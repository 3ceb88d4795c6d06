from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from rest_framework import serializers

from accounts.models import Team
from jobs.models import Job, validate_script_size
from servers.models import Server
from tsubame.api.base import StrictModelSerializer, StrictSerializer, VisibleRelatedField


class JobSerializer(StrictModelSerializer):
    team = VisibleRelatedField(queryset=Team.objects.all())
    servers = VisibleRelatedField(many=True, queryset=Server.objects.all(), required=False)
    script = serializers.CharField(trim_whitespace=False, validators=[validate_script_size])

    class Meta:
        model = Job
        fields = [
            "id",
            "team",
            "name",
            "description",
            "interpreter",
            "script",
            "servers",
            "timeout_seconds",
            "max_parallel",
            "use_terminal",
            "enabled",
            "created_at",
            "updated_at",
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        team = attrs.get("team", getattr(self.instance, "team", None))
        servers = attrs.get("servers", self.instance.servers.all() if self.instance else [])
        try:
            Job(team=team).clean_targets(list(servers))
        except ValidationError as exc:
            raise serializers.ValidationError({"servers": exc.messages}) from exc
        return attrs


class RunSerializer(StrictSerializer):
    """Which servers to run on: the job's default targets unless a subset is named."""

    servers = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=Server.objects.all(),
        required=False,
        help_text="Server ids, all of the job's team. Default: the job's targets.",
    )

    def __init__(self, *args: Any, job: Job | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if job is not None:
            # Other teams' servers do not exist here: naming one is "invalid pk", not a leak.
            self.fields["servers"].child_relation.queryset = Server.objects.filter(team=job.team_id)
