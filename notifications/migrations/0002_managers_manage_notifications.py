"""Installations whose role groups exist already: the manager role gets the notification
permissions that accounts.roles gives it on a new installation."""

from django.db import migrations

from accounts.grants import grant

CODENAMES = [
    f"{verb}_{model}"
    for model in ("notificationchannel", "notificationrule")
    for verb in ("view", "add", "change", "delete")
]


def grant_to_managers(apps, schema_editor):
    grant(apps, "Team manager", "notifications", CODENAMES)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_channels_rules_deliveries")]

    operations = [migrations.RunPython(grant_to_managers, migrations.RunPython.noop)]
