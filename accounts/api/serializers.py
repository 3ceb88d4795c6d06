from __future__ import annotations

import copy
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts import policy
from accounts.models import ApiToken, AuditEvent, Membership, Role, Team
from tsubame.api.base import StrictModelSerializer, StrictSerializer

ROLE_BY_GROUP = {role.group_name: role.value for role in Role}


@extend_schema_field(
    {"type": "string", "description": "viewer, operator, manager, or a custom role group's name"}
)
class RoleField(serializers.Field):
    """A role by name (viewer, operator, manager); custom roles are groups by their name."""

    default_error_messages = {"invalid": "Unknown role {value!r}."}

    def to_representation(self, group: Group) -> str:
        return ROLE_BY_GROUP.get(group.name, group.name)

    def to_internal_value(self, data: Any) -> Group:
        name = Role(data).group_name if data in Role.values else data
        roles = policy.assignable_roles(self.context["request"].user)
        group = roles.filter(name=name).first() if isinstance(name, str) else None
        if group is None:
            self.fail("invalid", value=data)
        return group


class TeamSerializer(StrictModelSerializer):
    """A team; its retention settings are changed with PATCH by whoever may change the team
    (accounts.change_team: superusers, by default)."""

    role = serializers.SerializerMethodField(help_text="Your role in this team.")

    class Meta:
        model = Team
        fields = [
            "id",
            "name",
            "description",
            "role",
            "created_at",
            "output_retention_days",
            "execution_retention_days",
            "failed_execution_retention_days",
            "keep_last_runs",
            "pruned_at",
        ]
        read_only_fields = ["name", "description", "pruned_at"]
        extra_kwargs = {"pruned_at": {"help_text": "When a worker last applied the retention."}}

    def get_role(self, team: Team) -> str | None:
        mine = getattr(team, "my_memberships", [])
        return RoleField().to_representation(mine[0].role) if mine else None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The model's rule, on the team as it would be: the admin asks the same (Team.clean).
        candidate = copy.copy(self.instance) if self.instance is not None else Team()
        for name, value in attrs.items():
            setattr(candidate, name, value)
        try:
            candidate.clean_retention()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        return attrs


class MembershipSerializer(StrictModelSerializer):
    user = serializers.SlugRelatedField(
        slug_field="username", queryset=get_user_model().objects.filter(is_active=True)
    )
    role = RoleField()

    class Meta:
        model = Membership
        fields = ["user", "role"]


class MembershipChangeSerializer(StrictSerializer):
    role = RoleField()


class ApiTokenSerializer(StrictModelSerializer):
    active = serializers.BooleanField(source="is_active", read_only=True)
    expires_at = serializers.DateTimeField(
        required=False,
        help_text="At most API_TOKEN_MAX_DAYS from now, and never after the token used for "
        "this request. Omitted: as late as allowed.",
    )

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "lookup",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "active",
        ]
        read_only_fields = ["lookup", "created_at", "last_used_at", "revoked_at"]


def made_with(request: Any) -> ApiToken | None:
    """The token that authenticated the request (None for a session)."""
    return request.auth if isinstance(request.auth, ApiToken) else None


class NewApiTokenSerializer(ApiTokenSerializer):
    token = serializers.CharField(
        read_only=True, help_text="The token itself. Shown only in this response: store it now."
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "at",
            "actor_name",
            "team",
            "action",
            "source",
            "object_type",
            "object_id",
            "object_repr",
            "details",
        ]
