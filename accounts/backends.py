"""Per-team permissions for Django's auth system.

`user.has_perm("jobs.run_job", job)` is true when the user's role in the job's team grants
it; without an object it is true when some team of the user grants it (so the admin shows
the models and `{{ perms }}` works in templates). Superusers are answered by Django before
any backend.

A role grants only permissions on team-owned models (accounts.ownership): a permission on
anything else, such as `auth.change_user` added to a role group, would be checked without
a team and so hold everywhere; memberships never grant it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import BaseBackend

from accounts.models import Membership
from accounts.ownership import model_is_team_owned, team_id_of

CACHE_ATTRIBUTE = "_tsubame_team_permissions"


def team_permissions(user: Any) -> dict[int, frozenset[str]]:
    """{team id: permission names} for the user, read once per user object."""
    if not user.is_active or user.is_anonymous:
        return {}
    cached = getattr(user, CACHE_ATTRIBUTE, None)
    if cached is None:
        found: dict[int, set[str]] = {}
        rows = Membership.objects.filter(user=user).values_list(
            "team_id",
            "role__permissions__content_type__app_label",
            "role__permissions__content_type__model",
            "role__permissions__codename",
        )
        for team_id, app_label, model_name, codename in rows:
            perms = found.setdefault(team_id, set())
            if codename and model_is_team_owned(app_label, model_name):
                perms.add(f"{app_label}.{codename}")
        cached = {team_id: frozenset(perms) for team_id, perms in found.items()}
        setattr(user, CACHE_ATTRIBUTE, cached)
    return cached


class TeamRoleBackend(BaseBackend):
    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        by_team = team_permissions(user_obj)
        if obj is None:
            return set().union(*by_team.values()) if by_team else set()
        return set(by_team.get(team_id_of(obj), ()))

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        return perm in self.get_all_permissions(user_obj, obj)

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        # The admin index lists an app's models only to people with a permission in it.
        return any(perm.startswith(f"{app_label}.") for perm in self.get_all_permissions(user_obj))
