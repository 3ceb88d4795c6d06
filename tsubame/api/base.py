"""What every API viewset shares: the access policy, strict input, bounded bodies, JSON errors."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import DataError
from django.db.models import Model, QuerySet
from rest_framework import exceptions, serializers, viewsets
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from accounts import policy
from tsubame.api.permissions import PolicyPermission

logger = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every error is JSON with a `detail` message; field errors also come under `errors`."""
    if isinstance(exc, OverflowError | DataError):
        # A value (in practice: a filter's) that the database cannot compare: an id past
        # 64 bits or a date past year 9999 (SQLite), a time zone offset past ±16 hours
        # (PostgreSQL). The request is wrong, not the server.
        logger.info("refused a value the database cannot use: %s", exc)
        exc = exceptions.ValidationError(
            {"non_field_errors": [f"A value in the request is out of range: {exc}"]}
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": "The request is not valid.", "errors": response.data}
    elif not isinstance(response.data, dict) or "detail" not in response.data:
        response.data = {"detail": str(response.data)}
    return response


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, instead of silently ignoring a typo.

    Reported together with the other fields' errors: "nmae: Unknown field." explains
    "name: This field is required." better than that error alone. Text with NUL characters
    is refused for every field before any of them is looked up in the database, which
    PostgreSQL would answer with an error.
    """

    def to_internal_value(self, data: Any) -> Any:
        names = set(data) if isinstance(data, Mapping) else set()
        unknown = {name: ["Unknown field."] for name in sorted(names - set(self.fields))}
        nul = {
            name: ["Null characters are not allowed."]
            for name in sorted(names & set(self.fields))
            if _has_nul(data[name])
        }
        if nul:  # before any field looks its value up in the database
            raise serializers.ValidationError({**nul, **unknown})
        try:
            attrs = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if unknown and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **unknown}) from exc
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return attrs


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
