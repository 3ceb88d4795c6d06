import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.models import Team


class Command(BaseCommand):
    help = (
        "Create an initial superuser 'admin' if there is no superuser, printing its password "
        "once, and a first team if there is none (servers and jobs belong to a team)."
    )

    def handle(self, *args: object, **options: object) -> None:
        if not Team.objects.exists():
            Team.objects.create(name="default", description="Created on first start.")
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(16)
        users.objects.create_superuser("admin", email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created superuser 'admin' with password: {password}\n"
                "It is shown only this once; change it in the admin."
            )
        )
