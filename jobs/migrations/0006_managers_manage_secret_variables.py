"""Installations whose role groups exist already: the manager role gets the secret variable
permissions that accounts.roles gives it on a new installation. Other groups are left alone."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

CODENAMES = [f"{verb}_secretvariable" for verb in ("view", "add", "change", "delete")]


def grant(apps, schema_editor):
    # Permissions are normally created after migrating; this one needs them now.
    config = apps.get_app_config("jobs")
    config.models_module = True
    try:
        create_permissions(config, apps=apps, verbosity=0)
    finally:
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.filter(content_type__app_label="jobs", codename__in=CODENAMES)
    for group in Group.objects.filter(name="Team manager"):
        group.permissions.add(*permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0005_parameters_and_secrets"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
