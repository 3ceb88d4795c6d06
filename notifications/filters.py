import django_filters

from accounts import policy
from accounts.models import Team
from executions.models import Execution
from jobs.models import Job
from notifications.models import Delivery, NotificationChannel, NotificationRule


class NotificationChannelFilter(django_filters.FilterSet):
    team = django_filters.ModelChoiceFilter(queryset=policy.visible_to_request(Team))

    class Meta:
        model = NotificationChannel
        fields = ["team", "enabled"]


class NotificationRuleFilter(django_filters.FilterSet):
    channel = django_filters.ModelChoiceFilter(
        queryset=policy.visible_to_request(NotificationChannel)
    )
    job = django_filters.ModelChoiceFilter(queryset=policy.visible_to_request(Job))

    class Meta:
        model = NotificationRule
        fields = ["channel", "job", "enabled"]


class DeliveryFilter(django_filters.FilterSet):
    channel = django_filters.ModelChoiceFilter(
        queryset=policy.visible_to_request(NotificationChannel)
    )
    execution = django_filters.ModelChoiceFilter(queryset=policy.visible_to_request(Execution))

    class Meta:
        model = Delivery
        fields = ["channel", "execution", "status", "event"]
