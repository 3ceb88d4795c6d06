from typing import Any

import django_filters
from django.db.models import Exists, OuterRef, QuerySet
from django_filters.fields import MultipleChoiceField

from accounts import policy
from accounts.models import Team
from executions import logs
from executions.models import Execution, Status
from jobs.models import Job


class AnyOfField(MultipleChoiceField):
    """Choices, where an empty one (the UI's "any") adds no condition instead of being invalid."""

    def to_python(self, value: Any) -> list[str]:
        return [choice for choice in super().to_python(value) if choice]


class AnyOfFilter(django_filters.MultipleChoiceFilter):
    field_class = AnyOfField


class ExecutionFilter(django_filters.FilterSet):
    """Shared by the API list and the UI list."""

    q = django_filters.CharFilter(
        method="filter_output",
        label="Output contains",
        help_text="Text in the output of any host (a match split across two stored pieces of "
        "output is missed).",
    )
    team = django_filters.ModelChoiceFilter(queryset=policy.visible_to_request(Team))
    job = django_filters.ModelChoiceFilter(queryset=policy.visible_to_request(Job))
    status = AnyOfFilter(choices=Status.choices)
    server = django_filters.NumberFilter(field_name="host_runs__server", distinct=True)
    # By the name each run kept: also finds the runs of a server deleted since.
    server_name = django_filters.CharFilter(field_name="host_runs__server_name", distinct=True)
    triggered_by = django_filters.CharFilter(field_name="triggered_by__username")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Execution
        fields = [
            "q",
            "team",
            "job",
            "status",
            "trigger",
            "server",
            "server_name",
            "triggered_by",
            "created_after",
            "created_before",
        ]

    def filter_output(
        self, queryset: QuerySet[Execution], name: str, value: str
    ) -> QuerySet[Execution]:
        matching = logs.chunks_containing(value).filter(execution=OuterRef("pk"))
        return queryset.filter(Exists(matching))
