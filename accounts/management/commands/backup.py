from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tsubame import backup


class Command(BaseCommand):
    help = (
        "Back up the database and the key files into DEST (a new or empty directory) while "
        "tsubame runs: SQLite with its online backup API, PostgreSQL with pg_dump. The "
        "backup holds the encryption keys; `manage.py restore DEST` puts it back."
    )
    # Checks would touch nothing a backup needs, and must not stop one.
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dest", type=Path)

    def handle(self, *args: object, **options: object) -> None:
        try:
            outcome = backup.backup(options["dest"])
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from exc
        for warning in outcome.warnings:
            self.stderr.write(self.style.WARNING(f"Note: {warning}"))
        for note in outcome.notes:
            self.stdout.write(self.style.SUCCESS(note))
