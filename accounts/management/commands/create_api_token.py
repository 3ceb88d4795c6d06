from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import services
from accounts.models import ApiToken, Source, expiry_in_days


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
        token = ApiToken(
            user=user,
            name=str(options["name"]),
            expires_at=expiry_in_days(options["expires_days"]),
        )
        try:
            secret = services.issue_token(token, source=Source.SYSTEM)
        except ValidationError as exc:  # the expiry: accounts.models.token_expiry
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(secret)
