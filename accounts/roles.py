"""The permissions each built-in role grants within a team."""

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db.models import Q, QuerySet

from accounts.models import Role

VIEWER = [
    "accounts.view_team",
    "servers.view_server",
    "jobs.view_job",
    "executions.view_execution",
]
OPERATOR = [
    *VIEWER,
    "jobs.run_job",
    "executions.cancel_execution",
    "servers.test_connection",
]
MANAGER = [
    *OPERATOR,
    "servers.add_server",
    "servers.change_server",
    "servers.delete_server",
    "servers.trust_host_key",
    "jobs.add_job",
    "jobs.change_job",
    "jobs.delete_job",
    "jobs.view_secretvariable",
    "jobs.add_secretvariable",
    "jobs.change_secretvariable",
    "jobs.delete_secretvariable",
    "jobs.add_schedule",
    "jobs.change_schedule",
    "jobs.delete_schedule",
    "jobs.view_webhook",
    "jobs.add_webhook",
    "jobs.change_webhook",
    "jobs.delete_webhook",
    "accounts.manage_members",
    "accounts.view_team_audit",
    *(
        f"notifications.{verb}_{model}"
        for model in ("notificationchannel", "notificationrule")
        for verb in ("view", "add", "change", "delete")
    ),
]
DEFAULT_PERMISSIONS = {Role.VIEWER: VIEWER, Role.OPERATOR: OPERATOR, Role.MANAGER: MANAGER}


def ensure_role_groups(**kwargs: object) -> None:
    """Create the role groups with their default permissions if they are missing.

    Runs after every migrate (and test database flush); groups that exist are left alone,
    so permissions a superuser changed in the admin stay as they are.
    """
    # post_migrate runs app by app: make sure the permissions named above exist already.
    for label in {name.split(".")[0] for names in DEFAULT_PERMISSIONS.values() for name in names}:
        create_permissions(apps.get_app_config(label), verbosity=0)
    for role, names in DEFAULT_PERMISSIONS.items():
        group, created = Group.objects.get_or_create(name=role.group_name)
        if created:
            query = Q()
            for name in names:
                app_label, codename = name.split(".")
                query |= Q(content_type__app_label=app_label, codename=codename)
            group.permissions.set(Permission.objects.filter(query))


def role_group(role: Role) -> Group:
    return Group.objects.get(name=role.group_name)


ROLE_GROUP_NAMES = frozenset(role.group_name for role in Role)


def role_groups() -> QuerySet[Group]:
    """The groups that are team roles: held through memberships, never directly."""
    return Group.objects.filter(name__in=ROLE_GROUP_NAMES)
