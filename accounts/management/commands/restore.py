from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tsubame import backup


class Command(BaseCommand):
    help = (
        "Restore a backup made by `manage.py backup`: check every file against its manifest, "
        "then replace the database and the key files in TSUBAME_DATA_DIR. Stop the web "
        "server and workers first."
    )
    # Before the restore there may be no database for checks to look at.
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("src", type=Path)
        parser.add_argument(
            "--force",
            action="store_true",
            help="Replace a database that already has tables (all its data is lost).",
        )

    def handle(self, *args: object, **options: object) -> None:
        try:
            outcome = backup.restore(options["src"], force=bool(options["force"]))
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from exc
        for note in outcome.notes:
            self.stdout.write(self.style.SUCCESS(note))
        for warning in outcome.warnings:
            self.stderr.write(self.style.WARNING(f"Warning: {warning}"))
