"""What every API viewset shares: the access policy, strict input, bounded bodies, JSON errors."""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from rest_framework import exceptions, serializers, viewsets
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from accounts import policy
from accounts.api.permissions import PolicyPermission


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every error is JSON with a `detail` message; field errors also come under `errors`."""
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": "The request is not valid.", "errors": response.data}
    elif not isinstance(response.data, dict) or "detail" not in response.data:
        response.data = {"detail": str(response.data)}
    return response


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, instead of silently ignoring a typo."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(getattr(self, "initial_data", {}) or {}) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({name: "Unknown field." for name in sorted(unknown)})
        return super().validate(attrs)


class StrictModelSerializer(StrictSerializer, serializers.ModelSerializer):
    pass


class VisibleRelatedField(serializers.PrimaryKeyRelatedField):
    """A reference to an object the requesting user can see; others "do not exist"."""

    def get_queryset(self) -> QuerySet[Any]:
        return policy.visible(super().get_queryset(), self.context["request"].user)


class TeamScopedViewSet(viewsets.GenericViewSet):
    permission_classes = [PolicyPermission]
    lookup_value_regex = r"\d+"
    # Set per action with @action(required_perm=...): what acting on the object needs.
    required_perm: str | None = None

    def get_queryset(self) -> QuerySet[Any]:
        return policy.visible(super().get_queryset(), self.request.user)

    def require(self, perm: str, obj: Model) -> None:
        if not self.request.user.has_perm(perm, obj):
            raise exceptions.PermissionDenied(f"Your role in team {obj} does not allow this.")
