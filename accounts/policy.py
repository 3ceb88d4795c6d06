"""Who may see and do what: the one access policy for admin, API, UI and WebSockets.

Two questions, asked the same way everywhere:
- Which objects may this user see (or act on)? `restrict(queryset, user, perm)`.
- May this user do X to this object? `user.has_perm(perm, obj)` (accounts.backends).
Both follow the path each team-owned model declares to its team (accounts.ownership).
Objects of a team the user cannot see do not exist for that user: faces answer 404, and
only a visible object the user may not change gets a 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404

from accounts.backends import team_permissions
from accounts.models import Team
from accounts.ownership import is_team_owned, view_permission
from accounts.roles import role_groups

M = TypeVar("M", bound=Model)


def teams_with(user: Any, perm: str) -> list[int]:
    return [team for team, perms in team_permissions(user).items() if perm in perms]


def holds_somewhere(user: Any, perm: str) -> bool:
    """Whether some team of the user's grants `perm` (for links to a page of such objects),
    from the roles already read for the request: no query of Django's global permissions."""
    return bool(user.is_active and user.is_superuser) or bool(teams_with(user, perm))


def restrict(queryset: QuerySet[M], user: Any, perm: str) -> QuerySet[M]:
    """The part of `queryset` in teams where `user` holds `perm` (all of it for superusers).

    The model says how its rows reach their team (accounts.ownership.TeamOwned); the
    object check `user.has_perm(perm, obj)` follows the same path.
    """
    model = queryset.model
    if not is_team_owned(model):
        raise TypeError(f"{model._meta.label} is not team-owned: it declares no team_path")
    if user.is_active and user.is_superuser:
        return queryset
    return queryset.filter(**{f"{model.team_path}__in": teams_with(user, perm)})


def visible(queryset: QuerySet[M], user: Any) -> QuerySet[M]:
    """What the user may see: the rows in teams where they hold the model's view permission."""
    return restrict(queryset, user, view_permission(queryset.model))


def get_visible_or_404(queryset: QuerySet[M], user: Any, **lookup: Any) -> M:
    """For views: an object the user may see, or 404 (existence is never revealed)."""
    obj = visible(queryset, user).filter(**lookup).first()
    if obj is None:
        raise Http404("No such object.")
    return obj


def require(user: Any, perm: str, obj: Model) -> None:
    """For views: 403 unless the user's role in the object's team grants `perm`."""
    if not user.has_perm(perm, obj):
        raise PermissionDenied("Your role in this team does not allow this.")


def assignable_roles(user: Any) -> QuerySet[Group]:
    """The groups a manager may give as a team role: the built-in roles only. Any other group
    (one a superuser made) could carry permissions that are checked globally."""
    if user.is_active and user.is_superuser:
        return Group.objects.all()
    return role_groups()


def visible_to_request(model: type[M]) -> Callable[[Any], QuerySet[M]]:
    """A queryset for a filter's choices (django-filter calls it with the request): another
    team's id is then as unknown as one that does not exist, instead of a tell-tale error."""

    def choices(request: Any) -> QuerySet[M]:
        if request is None:
            return model._default_manager.none()
        return visible(model._default_manager.all(), request.user)

    return choices


def for_editing(
    queryset: QuerySet[M], user: Any, pk: int | None
) -> tuple[M | None, QuerySet[Team]]:
    """For an edit-or-create page: the object to change (404 if unseen, 403 if the role may
    not change it) or None to create one, and the teams it may be put in (403 if none)."""
    meta = queryset.model._meta
    obj = None
    if pk is not None:
        obj = get_visible_or_404(queryset, user, pk=pk)
        require(user, f"{meta.app_label}.change_{meta.model_name}", obj)
    teams = teams_for(user, f"{meta.app_label}.add_{meta.model_name}")
    if obj is None and not teams.exists():
        raise PermissionDenied(f"Your roles do not allow creating a {meta.verbose_name} anywhere.")
    return obj, teams


def teams_for(user: Any, perm: str) -> QuerySet[Team]:
    """The teams in which the user holds `perm`: the choices when creating something."""
    return restrict(Team.objects.all(), user, perm)
