from __future__ import annotations

from typing import Any

from django.db.models import Model
from rest_framework import permissions
from rest_framework.request import Request


def object_perm(view: Any) -> str | None:
    """The permission an object action needs: declared on @action, or derived from the verb."""
    if getattr(view, "required_perm", None):
        return view.required_perm
    model = view.get_queryset().model._meta
    verb = {"update": "change", "partial_update": "change", "destroy": "delete"}.get(view.action)
    return f"{model.app_label}.{verb}_{model.model_name}" if verb else None


class PolicyPermission(permissions.IsAuthenticated):
    """Visible objects only (others 404 via the queryset); acting on one needs the team role."""

    def has_object_permission(self, request: Request, view: Any, obj: Model) -> bool:
        perm = object_perm(view)
        return perm is None or request.user.has_perm(perm, obj)
