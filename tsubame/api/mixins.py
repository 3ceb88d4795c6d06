"""Create, update and delete for team-owned objects, with the policy and the audit trail."""

from __future__ import annotations

from typing import Any

from rest_framework import mixins
from rest_framework.serializers import BaseSerializer

from accounts import audit
from accounts.models import Source


class AuditedWriteMixin(mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin):
    """Creating needs the add permission in the chosen team; moving needs it in the new one."""

    def _add_perm(self) -> str:
        meta = self.get_queryset().model._meta
        return f"{meta.app_label}.add_{meta.model_name}"

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        self.require(self._add_perm(), serializer.validated_data["team"])
        obj = serializer.save()
        audit.record("create", obj, actor=self.request.user, source=Source.API)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        team = serializer.validated_data.get("team")
        if team is not None and team.pk != serializer.instance.team_id:
            self.require(self._add_perm(), team)
        obj = serializer.save()
        changed = sorted(serializer.validated_data)
        audit.record(
            "change", obj, actor=self.request.user, source=Source.API, details={"fields": changed}
        )

    def perform_destroy(self, instance: Any) -> None:
        audit.record("delete", instance, actor=self.request.user, source=Source.API)
        instance.delete()
