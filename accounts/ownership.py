"""How a row reaches the team that owns it: declared once per model, followed everywhere.

A team-owned model inherits `TeamOwned` and names the lookup from one of its rows to its
team's id in `team_path`. The policy filters lists with that lookup, and follows the same
path attribute by attribute for one object's team, so the list a user sees and the object
checks (`user.has_perm(perm, obj)`) cannot disagree. A model whose rows are seen by
whoever may see a parent names that permission in `view_permission`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.apps import apps
from django.db.models import Model


class TeamOwned:
    """Mix into a model whose rows belong to a team (see the module docstring)."""

    # A lookup from a row to its team's id: "team_id", "execution__team_id", "pk" (a team).
    team_path: ClassVar[str] = "team_id"
    # The permission that lets one see the rows; None: the model's own view permission.
    view_permission: ClassVar[str | None] = None


def is_team_owned(model: type[Model] | None) -> bool:
    return isinstance(model, type) and issubclass(model, TeamOwned)


def team_id_of(obj: Any) -> int | None:
    """The id of the team that owns `obj`; None for anything that is not team-owned."""
    if not isinstance(obj, TeamOwned):
        return None
    value: Any = obj
    for name in obj.team_path.split("__"):
        value = getattr(value, name, None)
        if value is None:
            return None
    return value


def view_permission(model: type[Model]) -> str:
    """The permission that lets one see rows of `model`."""
    declared = getattr(model, "view_permission", None)
    return declared or f"{model._meta.app_label}.view_{model._meta.model_name}"


def model_is_team_owned(app_label: str, model_name: str) -> bool:
    """For a permission's content type: does it name a team-owned model?"""
    try:
        return is_team_owned(apps.get_model(app_label, model_name))
    except LookupError:  # a content type left behind by a removed model
        return False
