from __future__ import annotations

import argparse

from django.core.management.base import BaseCommand
from django.utils import timezone

from accounts.models import Team
from executions import retention


class Command(BaseCommand):
    help = (
        "Remove what the teams' retention settings no longer keep: old runs' output, and old "
        "runs. Prints per team what it removed (with --dry-run: what it would, removing "
        "nothing). Workers do this by themselves every PRUNE_EVERY_SECONDS; it is safe to run "
        "while they work: it deletes in transactions of PRUNE_BATCH_SIZE rows."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Print what would be removed; change nothing."
        )

    def handle(self, *args: object, dry_run: bool = False, **options: object) -> None:
        now = timezone.now()
        for team in Team.objects.order_by("name"):
            plan_or_prune = retention.plan_team if dry_run else retention.prune_team
            report = plan_or_prune(team, now)
            self.stdout.write(report.describe(dry_run=dry_run))
