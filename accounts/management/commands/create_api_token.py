from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts import services
from accounts.models import ApiToken, Source


class Command(BaseCommand):
    help = "Create a personal API token for a user (for automation) and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="automation")
        parser.add_argument(
            "--expires-days",
            type=int,
            default=None,
            help="Days until it expires: at most API_TOKEN_MAX_DAYS, which is the default.",
        )

    def handle(self, *args: object, **options: object) -> None:
        try:
            user = get_user_model().objects.get_by_natural_key(options["username"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user {options['username']!r}") from None
        days = options["expires_days"]
        most = settings.API_TOKEN_MAX_DAYS
        if days is not None and not 1 <= days <= most:
            raise CommandError(f"--expires-days must be between 1 and {most}")
        token = ApiToken(
            user=user,
            name=str(options["name"]),
            expires_at=timezone.now() + timedelta(days=days) if days else None,
        )
        secret = services.issue_token(token, source=Source.SYSTEM)
        self.stdout.write(secret)
