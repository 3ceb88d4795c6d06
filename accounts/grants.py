"""For data migrations that give an existing installation's role group permissions that
accounts.roles gives it on a new installation. Other groups are left alone."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.management import create_permissions


def grant(apps: Any, group_name: str, app_label: str, codenames: list[str]) -> None:
    # Permissions are normally created after migrating; these are needed now.
    config = apps.get_app_config(app_label)
    config.models_module = True
    try:
        create_permissions(config, apps=apps, verbosity=0)
    finally:
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.filter(
        content_type__app_label=app_label, codename__in=codenames
    )
    for group in Group.objects.filter(name=group_name):
        group.permissions.add(*permissions)
