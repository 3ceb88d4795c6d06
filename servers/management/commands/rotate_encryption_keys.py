from django.core.management.base import BaseCommand, CommandError

from tsubame.crypto import RotationError, rotate_keys


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the newest key in ENCRYPTION_KEYS, so that the "
        "older keys can be dropped. All or nothing: if any secret cannot be decrypted with "
        "the configured keys, nothing is changed."
    )

    def handle(self, *args: object, **options: object) -> None:
        try:
            counts = rotate_keys()
        except RotationError as error:
            raise CommandError(str(error)) from None
        for label, rows in counts.items():
            self.stdout.write(f"{label}: {rows} re-encrypted with the newest key")
