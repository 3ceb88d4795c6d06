from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import Team
from jobs import chains, parameters
from jobs.models import ChainWhen, Job, SecretVariable, validate_script_size
from servers.api.serializers import TagNamesField
from servers.models import Server
from tsubame.api.base import StrictModelSerializer, StrictSerializer, VisibleRelatedField


class ParameterDefinitionSerializer(StrictSerializer):
    """One parameter of a job (for the schema; `parameters.clean_definitions` checks them)."""

    name = serializers.RegexField(parameters.NAME.pattern, help_text="An environment variable.")
    label = serializers.CharField(required=False, allow_blank=True)
    help = serializers.CharField(required=False, allow_blank=True)
    type = serializers.ChoiceField(choices=parameters.TYPES, required=False)
    required = serializers.BooleanField(required=False)
    default = serializers.JSONField(required=False, allow_null=True)
    choices = serializers.ListField(child=serializers.CharField(), required=False)
    pattern = serializers.CharField(required=False, allow_blank=True)
    min = serializers.FloatField(required=False, allow_null=True)
    max = serializers.FloatField(required=False, allow_null=True)
    max_length = serializers.IntegerField(required=False, allow_null=True)


@extend_schema_field(ParameterDefinitionSerializer(many=True))
class ParametersField(serializers.JSONField):
    """The ordered parameter definitions, stored as `parameters.clean_definitions` shapes
    them (every key present)."""

    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        try:
            return parameters.clean_definitions(super().to_internal_value(data))
        except ValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


class SecretVariableNamesField(serializers.ListField):
    """Names of secret variables of the job's team; `JobSerializer.validate` looks them up."""

    child = serializers.CharField(max_length=64)

    def to_representation(self, variables: Any) -> list[str]:
        return [variable.name for variable in variables.all()]


class ChainLinkSerializer(StrictSerializer):
    """A job this one starts when its run ends as `when` says (jobs.chains)."""

    job = VisibleRelatedField(
        source="next_job", queryset=Job.objects.all(), help_text="A job of the same team."
    )
    when = serializers.ChoiceField(
        choices=ChainWhen.choices,
        help_text="succeeded; failed (failed, timed out or lost); finished (either, not when "
        "cancelled).",
    )


class JobSerializer(StrictModelSerializer):
    team = VisibleRelatedField(queryset=Team.objects.all())
    servers = VisibleRelatedField(many=True, queryset=Server.objects.all(), required=False)
    target_tags = TagNamesField(
        required=False,
        help_text="Tag names: the job also runs on every server of its team with one of them.",
    )
    parameters = ParametersField(required=False, help_text="Ordered parameter definitions.")
    secret_variables = SecretVariableNamesField(
        required=False, help_text="Names of the team's secret variables the script receives."
    )
    script = serializers.CharField(trim_whitespace=False, validators=[validate_script_size])
    then = ChainLinkSerializer(
        many=True,
        source="links",
        required=False,
        help_text="The jobs of its team that start when its run ends, with the values of "
        "the parameters they share (not secret ones). No cycles.",
    )

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
            "target_tags",
            "parameters",
            "secret_variables",
            "timeout_seconds",
            "max_parallel",
            "use_terminal",
            "concurrency",
            "then",
            "retry_attempts",
            "retry_delay_seconds",
            "retry_backoff",
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
        if "secret_variables" in attrs:
            attrs["secret_variables"] = self._secret_variables(team, attrs["secret_variables"])
        job = Job(
            team=team, parameters=attrs.get("parameters", getattr(self.instance, "parameters", []))
        )
        variables = attrs.get(
            "secret_variables", self.instance.secret_variables.all() if self.instance else []
        )
        try:
            job.clean_secret_variables(list(variables))
        except ValidationError as exc:
            raise serializers.ValidationError({"secret_variables": exc.messages}) from exc
        if "links" in attrs:
            attrs["links"] = [(link["next_job"], link["when"]) for link in attrs["links"]]
            job.pk = getattr(self.instance, "pk", None)
            job.name = attrs.get("name", getattr(self.instance, "name", ""))
            try:
                chains.clean_links(job, attrs["links"])
            except ValidationError as exc:
                raise serializers.ValidationError({"then": exc.messages}) from exc
        return attrs

    @staticmethod
    def _secret_variables(team: Team, names: list[str]) -> list[SecretVariable]:
        found = {v.name: v for v in SecretVariable.objects.filter(team=team, name__in=names)}
        unknown = sorted(set(names) - set(found))
        if unknown:
            raise serializers.ValidationError(
                {"secret_variables": [f"team {team} has no secret variable {', '.join(unknown)}"]}
            )
        return [found[name] for name in dict.fromkeys(names)]


class RunSerializer(StrictSerializer):
    """Where to run and with which values: the job's default targets unless servers or tags
    are named."""

    servers = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=Server.objects.all(),
        required=False,
        help_text="Server ids, all of the job's team. Default: the job's targets.",
    )
    tags = TagNamesField(
        required=False,
        help_text="Tag names: every server of the job's team with one of them, as it is when "
        "the run starts (besides any servers named).",
    )
    parameters = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        help_text="Values by parameter name, typed as JSON (numbers, true/false, a list for "
        "multichoice).",
    )

    def __init__(self, *args: Any, job: Job | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if job is not None:
            # Other teams' servers do not exist here: naming one is "invalid pk", not a leak.
            self.fields["servers"].child_relation.queryset = Server.objects.filter(team=job.team_id)


class SecretVariableSerializer(StrictModelSerializer):
    """The value is write-only: required to create, omitted to keep it when changing."""

    team = VisibleRelatedField(queryset=Team.objects.all())
    value = serializers.CharField(
        write_only=True, trim_whitespace=False, validators=[parameters.validate_secret_value]
    )
    has_value = serializers.SerializerMethodField()

    class Meta:
        model = SecretVariable
        fields = [
            "id",
            "team",
            "name",
            "description",
            "value",
            "has_value",
            "created_at",
            "updated_at",
        ]

    def get_has_value(self, variable: SecretVariable) -> bool:
        return bool(variable.value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if (
            self.instance is not None
            and attrs.get("team", self.instance.team) != self.instance.team
        ):
            # Jobs of its team list it by name: moved, it would vanish from them unseen.
            raise serializers.ValidationError(
                {"team": ["A secret variable stays in its team; create a new one in the other."]}
            )
        if self.instance is not None and "name" in attrs:
            renamed = SecretVariable(
                pk=self.instance.pk, team=self.instance.team, name=attrs["name"]
            )
            try:
                renamed.clean_name_for_jobs()
            except ValidationError as exc:
                raise serializers.ValidationError({"name": exc.messages}) from exc
        return attrs
