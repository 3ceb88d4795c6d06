from datetime import timedelta

from django.conf import settings
from django.db import migrations, models


def expire_unlimited_tokens(apps: object, schema_editor: object) -> None:
    # Tokens made when they could live for ever now end API_TOKEN_MAX_DAYS after creation.
    ApiToken = apps.get_model("accounts", "ApiToken")
    ApiToken.objects.filter(expires_at=None).update(
        expires_at=models.F("created_at") + timedelta(days=settings.API_TOKEN_MAX_DAYS)
    )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [
        migrations.RunPython(expire_unlimited_tokens, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(blank=True),
        ),
    ]
