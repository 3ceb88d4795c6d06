"""Who may see and do what: the one access policy for admin, API, UI and WebSockets.

Every face asks these functions instead of checking permissions itself.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from executions.models import Execution

User = AbstractBaseUser | AnonymousUser


def executions_visible_to(user: User) -> QuerySet[Execution]:
    if user.is_active and user.has_perm("executions.view_execution"):
        return Execution.objects.all()
    return Execution.objects.none()


def can_cancel(user: User, execution: Execution) -> bool:
    return user.is_active and user.has_perm("executions.change_execution")
