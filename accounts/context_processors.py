from typing import Any

from django.http import HttpRequest

from accounts.models import Membership


def memberships(request: HttpRequest) -> dict[str, Any]:
    """The user's teams and roles, for the user menu; read only when a template uses it."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "my_memberships": lambda: list(
            Membership.objects.filter(user=user).select_related("team", "role").order_by("team")
        )
    }
