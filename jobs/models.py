from __future__ import annotations

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models


class Job(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    interpreter = models.CharField(
        max_length=255,
        default="/bin/bash",
        validators=[
            RegexValidator(
                r"^/[A-Za-z0-9._/+-]+$",
                "An absolute path to the interpreter on the server, e.g. /bin/bash.",
            )
        ],
        help_text="Absolute path of the program that runs the script on each server.",
    )
    script = models.TextField(help_text="Run on each server with the interpreter.")
    servers = models.ManyToManyField(
        "servers.Server",
        blank=True,
        related_name="jobs",
        help_text="Default targets: where the job runs unless the run names others.",
    )
    timeout_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Per server: a run still going after this long is stopped (timed out). "
        "Empty means no limit.",
    )
    max_parallel = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1)],
        help_text="How many servers run at the same time.",
    )
    enabled = models.BooleanField(default=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
