import django_filters

from accounts import policy
from accounts.models import Team
from executions.models import Execution, Status
from jobs.models import Job


class ExecutionFilter(django_filters.FilterSet):
    """Shared by the API list and the UI list."""

    team = django_filters.ModelChoiceFilter(queryset=policy.visible_to_request(Team))
    job = django_filters.ModelChoiceFilter(queryset=policy.visible_to_request(Job))
    status = django_filters.MultipleChoiceFilter(choices=Status.choices)
    server = django_filters.NumberFilter(field_name="host_runs__server", distinct=True)
    # By the name each run kept: also finds the runs of a server deleted since.
    server_name = django_filters.CharFilter(field_name="host_runs__server_name", distinct=True)
    triggered_by = django_filters.CharFilter(field_name="triggered_by__username")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Execution
        fields = [
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
