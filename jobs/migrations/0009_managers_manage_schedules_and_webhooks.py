"""Installations whose role groups exist already: the manager role gets the schedule and
webhook permissions that accounts.roles gives it on a new installation."""

from django.db import migrations

from accounts.grants import grant

CODENAMES = [
    "add_schedule",
    "change_schedule",
    "delete_schedule",
    *(f"{verb}_webhook" for verb in ("view", "add", "change", "delete")),
]


def grant_to_managers(apps, schema_editor):
    grant(apps, "Team manager", "jobs", CODENAMES)


class Migration(migrations.Migration):
    dependencies = [("jobs", "0008_schedules_and_webhooks")]

    operations = [migrations.RunPython(grant_to_managers, migrations.RunPython.noop)]
