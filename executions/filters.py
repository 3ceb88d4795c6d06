from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from django_filters.fields import MultipleChoiceField

from accounts import policy
from accounts.models import Team
from executions import search
from executions.models import Execution, Status
from jobs.models import Job


class AnyOfField(MultipleChoiceField):
    """Choices, where an empty one (the UI's "any") adds no condition instead of being invalid."""

    def to_python(self, value: Any) -> list[str]:
        return [choice for choice in super().to_python(value) if choice]


class AnyOfFilter(django_filters.MultipleChoiceFilter):
    field_class = AnyOfField


class OutputSearchField(forms.CharField):
    def __init__(self, **kwargs: Any) -> None:
        # Exact means exact: a space around the text is part of what is searched for.
        super().__init__(strip=False, **kwargs)

    def validate(self, value: str) -> None:
        super().validate(value)
        if value and (problem := search.needle_problem(value)):
            raise forms.ValidationError(problem)


class OutputSearchFilter(django_filters.CharFilter):
    field_class = OutputSearchField


class ExecutionFilter(django_filters.FilterSet):
    """Shared by the API list and the UI list."""

    q = OutputSearchFilter(
        method="filter_output",
        label="Output contains",
        help_text="Text within one line of the output of any host, matched exactly (case "
        f"included); {search.MIN_NEEDLE_CHARS} characters or more.",
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
        return queryset.filter(search.executions_containing(value))
