from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from accounts.ownership import TeamOwned
from servers.ssh import INTERPRETER_PATTERN

if TYPE_CHECKING:
    from servers.models import Server


class Job(TeamOwned, models.Model):
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="jobs")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    interpreter = models.CharField(
        max_length=255,
        default="/bin/bash",
        validators=[
            RegexValidator(
                f"^{INTERPRETER_PATTERN}$",
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
        help_text="Default targets: where the job runs unless the run names others. "
        "Only servers of the job's team.",
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
    use_terminal = models.BooleanField(
        "run in a terminal",
        default=False,
        help_text="Run under a pseudo-terminal: programs show colours and progress, and "
        "stdout and stderr come as one stream in the exact order written. Without one they "
        "are kept apart, in the order they arrive.",
    )
    enabled = models.BooleanField(default=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="job_unique_name")]
        permissions = [("run_job", "Can run the job")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Browsers send textareas with CRLF line ends; bash would then run `cd /tmp\r`.
        self.script = self.script.replace("\r\n", "\n")
        super().save(*args, **kwargs)

    def clean_targets(self, servers: list[Server]) -> None:
        """A job runs only on servers of its own team, whoever asks."""
        foreign = sorted(s.name for s in servers if s.team_id != self.team_id)
        if foreign:
            raise ValidationError(
                f"not servers of team {self.team}: {', '.join(foreign)}", code="foreign_server"
            )
