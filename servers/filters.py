import django_filters

from accounts import policy
from accounts.models import Team
from servers.models import Server


class ServerFilter(django_filters.FilterSet):
    """Shared by the API list and the UI list."""

    team = django_filters.ModelChoiceFilter(queryset=policy.visible_to_request(Team))
    name = django_filters.CharFilter(lookup_expr="icontains")
    host = django_filters.CharFilter(lookup_expr="icontains")
    tag = django_filters.CharFilter(field_name="tags__name", distinct=True)

    class Meta:
        model = Server
        fields = ["team", "name", "host", "tag", "auth_method", "last_check_status"]
