from typing import Any

import django_filters
from django.db.models import QuerySet

from accounts import policy
from accounts.models import AuditEvent, Team


def audited_teams(request: Any) -> QuerySet[Team]:
    """The teams whose trail the user may read: any other team's id is as unknown as one
    that does not exist (see policy.visible_to_request)."""
    if request is None:
        return Team.objects.none()
    return policy.teams_for(request.user, "accounts.view_team_audit")


class AuditEventFilter(django_filters.FilterSet):
    team = django_filters.ModelChoiceFilter(queryset=audited_teams)
    actor = django_filters.CharFilter(field_name="actor_name")
    at_after = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    at_before = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["team", "action", "source", "object_type", "actor", "at_after", "at_before"]
