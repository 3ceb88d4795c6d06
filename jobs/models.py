from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from accounts.ownership import TeamOwned
from jobs import parameters
from servers.models import Server
from servers.ssh import INTERPRETER_PATTERN
from tsubame.crypto import SecretTextField


def normalized_script(script: str) -> str:
    # Browsers send textareas with CRLF line ends; bash would then run `cd /tmp\r`.
    return script.replace("\r\n", "\n")


def validate_script_size(script: str) -> None:
    """One limit for every face (UI, admin, API), checked on the script as it will be stored."""
    size, limit = len(normalized_script(script).encode()), settings.JOB_SCRIPT_MAX_BYTES
    if size > limit:
        raise ValidationError(
            f"This script is {size:,} bytes; a job's script can be at most {limit:,} bytes.",
            code="script_too_large",
        )


def validate_max_parallel(value: int) -> None:
    # A function rather than MaxValueValidator(settings...): the limit is read when a job is
    # validated, not frozen into a migration when the field was last changed.
    limit = settings.EXECUTION_MAX_PARALLEL
    if value > limit:
        raise ValidationError(
            "At most %(limit)d servers can run at the same time "
            "(the EXECUTION_MAX_PARALLEL setting of this installation).",
            code="max_value",
            params={"limit": limit},
        )


def validate_parameters(definitions: object) -> None:
    parameters.clean_definitions(definitions)


class SecretVariable(TeamOwned, models.Model):
    """A named secret of a team that the jobs which list it receive as an environment
    variable. Write-only everywhere: its value is never shown again, and it is masked in
    every run's output."""

    team = models.ForeignKey(
        "accounts.Team", on_delete=models.PROTECT, related_name="secret_variables"
    )
    name = models.CharField(
        max_length=64,
        validators=[parameters.validate_name],
        help_text="The environment variable the job's script reads, e.g. DB_PASSWORD.",
    )
    value = SecretTextField(blank=True, null=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="secret_variable_unique_name")
        ]

    def __str__(self) -> str:
        return self.name

    def clean_name_for_jobs(self) -> None:
        """A job that lists it must not also have a parameter of its (new) name."""
        if self.pk is None:
            return
        clashing = sorted(
            job.name
            for job in Job.objects.filter(secret_variables=self)
            if self.name in {p["name"] for p in job.parameters}
        )
        if clashing:
            raise ValidationError(
                f"The jobs {', '.join(clashing)} list this secret and have a parameter named "
                f"{self.name}; rename one of them.",
                code="name_clash",
            )


class Concurrency(models.TextChoices):
    """What a new run of a job does while another run of it is queued or running."""

    ALLOW = "allow", "Run alongside"
    SKIP = "skip", "Skip the new run"
    QUEUE = "queue", "Queue the new run"


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
    script = models.TextField(
        validators=[validate_script_size], help_text="Run on each server with the interpreter."
    )
    servers = models.ManyToManyField(
        "servers.Server",
        blank=True,
        related_name="jobs",
        help_text="Default targets: where the job runs unless the run names others. "
        "Only servers of the job's team.",
    )
    target_tags = models.ManyToManyField(
        "servers.Tag",
        blank=True,
        related_name="jobs",
        help_text="Default targets too: every server of the team with one of these tags when "
        "the run starts.",
    )
    parameters = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_parameters],
        help_text="What a run asks for; each value reaches the script as an environment "
        "variable of the parameter's name.",
    )
    secret_variables = models.ManyToManyField(
        SecretVariable,
        blank=True,
        related_name="jobs",
        help_text="The team's secret variables this job's script receives.",
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
        validators=[MinValueValidator(1), validate_max_parallel],
        help_text="How many servers run at the same time, up to the installation's limit "
        "(EXECUTION_MAX_PARALLEL, 50 unless configured).",
    )
    use_terminal = models.BooleanField(
        "run in a terminal",
        default=False,
        help_text="Run under a pseudo-terminal: programs show colours and progress, and "
        "stdout and stderr come as one stream in the exact order written. Without one they "
        "are kept apart, in the order they arrive.",
    )
    concurrency = models.CharField(
        max_length=10,
        choices=Concurrency.choices,
        default=Concurrency.ALLOW,
        help_text="While a run of this job is queued or running, a new one (from a person, "
        "the API, a schedule or a webhook) runs alongside it, is skipped (recorded as "
        "skipped), or waits for it to finish (at most one waits; later ones join it).",
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
        self.script = normalized_script(self.script)
        super().save(*args, **kwargs)

    def clean_targets(self, servers: list[Server]) -> None:
        """A job runs only on servers of its own team, whoever asks."""
        foreign = sorted(s.name for s in servers if s.team_id != self.team_id)
        if foreign:
            raise ValidationError(
                f"not servers of team {self.team}: {', '.join(foreign)}", code="foreign_server"
            )

    def clean_secret_variables(self, variables: list[SecretVariable]) -> None:
        """Only the team's own secrets, and none named like a parameter (neither could win)."""
        foreign = sorted(v.name for v in variables if v.team_id != self.team_id)
        if foreign:
            raise ValidationError(
                f"not secret variables of team {self.team}: {', '.join(foreign)}",
                code="foreign_secret_variable",
            )
        clash = sorted({v.name for v in variables} & {p["name"] for p in self.parameters})
        if clash:
            raise ValidationError(
                f"{', '.join(clash)}: both a parameter and a secret variable; rename one.",
                code="name_clash",
            )

    def servers_tagged(self, tag_names: list[str]) -> list[Server]:
        """The team's servers with any of the tags named, as they are now."""
        if not tag_names:
            return []
        servers = Server.objects.filter(team=self.team_id, tags__name__in=tag_names)
        return list(servers.distinct())
