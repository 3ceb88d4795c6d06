"""Installations whose role groups exist already: the manager role gets the secret variable
permissions that accounts.roles gives it on a new installation."""

from django.db import migrations

from accounts.grants import grant

CODENAMES = [f"{verb}_secretvariable" for verb in ("view", "add", "change", "delete")]


def grant_to_managers(apps, schema_editor):
    grant(apps, "Team manager", "jobs", CODENAMES)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0005_parameters_and_secrets"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant_to_managers, migrations.RunPython.noop)]
