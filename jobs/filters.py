import django_filters

from accounts import policy
from accounts.models import Team
from jobs.models import Job, Schedule, SecretVariable, Webhook, WebhookDelivery


class JobFilter(django_filters.FilterSet):
    """Shared by the API list and the UI list."""

    team = django_filters.ModelChoiceFilter(queryset=policy.visible_to_request(Team))
    name = django_filters.CharFilter(lookup_expr="icontains")
    server = django_filters.NumberFilter(field_name="servers", distinct=True)

    class Meta:
        model = Job
        fields = ["team", "name", "enabled", "server"]


class SecretVariableFilter(django_filters.FilterSet):
    """Shared by the API list and the UI list."""

    team = django_filters.ModelChoiceFilter(queryset=policy.visible_to_request(Team))
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = SecretVariable
        fields = ["team", "name"]


class ScheduleFilter(django_filters.FilterSet):
    job = django_filters.ModelChoiceFilter(queryset=policy.visible_to_request(Job))

    class Meta:
        model = Schedule
        fields = ["job", "enabled"]


class WebhookFilter(django_filters.FilterSet):
    job = django_filters.ModelChoiceFilter(queryset=policy.visible_to_request(Job))

    class Meta:
        model = Webhook
        fields = ["job", "mode", "enabled"]


class WebhookDeliveryFilter(django_filters.FilterSet):
    webhook = django_filters.ModelChoiceFilter(queryset=policy.visible_to_request(Webhook))

    class Meta:
        model = WebhookDelivery
        fields = ["webhook", "accepted"]
