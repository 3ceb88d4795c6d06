"""The audit trail: who created, changed, deleted, ran, cancelled or trusted what, from where."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Model

from accounts.models import AuditEvent, Source
from accounts.ownership import team_id_of


def record(
    action: str,
    obj: Model,
    *,
    actor: Any,
    source: Source | str,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    user = actor if getattr(actor, "pk", None) else None
    return AuditEvent.objects.create(
        actor=user,
        actor_name=user.get_username() if user else "",
        team_id=team_id_of(obj),
        action=action,
        source=source,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk or ""),
        object_repr=str(obj)[:200],
        details=details or {},
    )


def record_saved(
    obj: Model,
    *,
    created: bool,
    actor: Any,
    source: Source | str,
    changed_fields: Iterable[str] = (),
) -> AuditEvent:
    """The row for a create, or for a change with the names of the fields it changed."""
    if created:
        return record("create", obj, actor=actor, source=source)
    details = {"fields": sorted(changed_fields)}
    return record("change", obj, actor=actor, source=source, details=details)
