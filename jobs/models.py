from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.urls import reverse

from accounts.ownership import TeamOwned
from jobs import parameters
from jobs.schedules import validate_cron, validate_zone
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


# No retry waits longer than a day, however the back-off grows.
MAX_RETRY_DELAY_SECONDS = 24 * 3600


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
    retry_attempts = models.PositiveSmallIntegerField(
        "retries",
        default=0,
        validators=[MaxValueValidator(10)],
        help_text="How many times a failed, timed-out or lost run is tried again (0-10), on "
        "the servers that did not succeed. A cancelled run is never retried.",
    )
    retry_delay_seconds = models.PositiveIntegerField(
        default=60,
        validators=[MaxValueValidator(MAX_RETRY_DELAY_SECONDS)],
        help_text="Seconds before the first retry (at most a day).",
    )
    retry_backoff = models.FloatField(
        default=2.0,
        validators=[MinValueValidator(1.0), MaxValueValidator(10.0)],
        help_text="Each further retry waits this many times longer than the one before.",
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


class ChainWhen(models.TextChoices):
    """Which ends of a job's run start the next job of a chain."""

    SUCCEEDED = "succeeded", "When it succeeds"
    FAILED = "failed", "When it fails (failed, timed out or lost)"
    FINISHED = "finished", "When it finishes either way (not when cancelled)"


class ChainLink(models.Model):
    """After a run of `job` ends as `when` says, a run of `next_job` starts (jobs.chains)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="links")
    next_job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="+")
    when = models.CharField(max_length=10, choices=ChainWhen.choices)

    class Meta:
        ordering = ["job", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "next_job"], name="chain_link_once")]

    def __str__(self) -> str:
        return f"{self.job} -> {self.next_job} ({self.when})"


def default_zone() -> str:
    return settings.TIME_ZONE


class MissedRuns(models.TextChoices):
    """What a schedule does with slots that passed while no scheduler was running."""

    SKIP = "skip", "Skip them"
    RUN_ONCE = "run_once", "Run once, if within the start deadline"


class Schedule(TeamOwned, models.Model):
    """When a job runs by itself: a cron expression in a time zone, with the run's inputs.

    `next_run_at` is the next slot in UTC; the scheduler (jobs.scheduler) fires a slot by
    moving it on with a guarded update, so each slot fires once however many workers tick.
    """

    team_path = "job__team_id"
    # Whoever sees the job sees its schedules; changing them is the managers' (add/change/
    # delete_schedule).
    view_permission = "jobs.view_job"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=100, blank=True)
    cron = models.CharField(
        "cron expression",
        max_length=200,
        validators=[validate_cron],
        help_text="minute hour day-of-month month day-of-week, e.g. 30 2 * * * (02:30 daily).",
    )
    timezone = models.CharField(
        "time zone",
        max_length=64,
        default=default_zone,
        validators=[validate_zone],
        help_text="The zone the expression's times are in, e.g. Europe/Berlin.",
    )
    parameters = models.JSONField(
        default=dict,
        blank=True,
        help_text="Parameter values for each run; secret ones are kept encrypted instead.",
    )
    secret_parameters = SecretTextField(blank=True, null=True)
    servers = models.ManyToManyField(
        "servers.Server",
        blank=True,
        related_name="+",
        help_text="Targets of its runs; with none and no tags, the job's default targets.",
    )
    target_tags = models.ManyToManyField("servers.Tag", blank=True, related_name="+")
    enabled = models.BooleanField(default=True, help_text="A paused schedule starts nothing.")
    missed_runs = models.CharField(
        max_length=10,
        choices=MissedRuns.choices,
        default=MissedRuns.SKIP,
        help_text="Slots that passed while tsubame's workers were down (or more than "
        "SCHEDULE_MISFIRE_GRACE_SECONDS late) are recorded as missed; with run once, the "
        "latest of them runs once if that is within the start deadline of its time.",
    )
    start_deadline_seconds = models.PositiveIntegerField(
        default=3600,
        validators=[MinValueValidator(1)],
        help_text="How late after its time a run may still start: one that no worker has "
        "started by then (a busy queue, or a missed slot under run once) is recorded as "
        "missed instead.",
    )
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_slot_at = models.DateTimeField(null=True, blank=True)
    # Why the last slot started nothing (the job disabled, a parameter no longer valid...).
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["job", "id"]

    def __str__(self) -> str:
        return self.name or f"{self.cron} ({self.timezone})"

    def secret_values(self) -> dict[str, Any]:
        """The secret parameters' values it runs with, decrypted."""
        return json.loads(self.secret_parameters or "{}")

    def set_values(self, values: dict[str, Any], secret_names: set[str]) -> None:
        """Keep the values (checked), the secret ones encrypted apart."""
        self.parameters = {n: v for n, v in values.items() if n not in secret_names}
        secrets = {n: v for n, v in values.items() if n in secret_names}
        self.secret_parameters = json.dumps(secrets) if secrets else None


class WebhookMode(models.TextChoices):
    STANDARD = "standard", "Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature)"
    GITHUB = "github", "GitHub (X-Hub-Signature-256, X-GitHub-Delivery)"


class Webhook(TeamOwned, models.Model):
    """A URL that starts a job when a signed request arrives (jobs.webhooks)."""

    team_path = "job__team_id"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="webhooks")
    name = models.CharField(max_length=100)
    # The unguessable part of the URL /hooks/<key>/.
    key = models.CharField(max_length=64, unique=True)
    mode = models.CharField(
        max_length=10, choices=WebhookMode.choices, default=WebhookMode.STANDARD
    )
    # whsec_<base64>; during a rotation the previous one is accepted too, until retired.
    secret = SecretTextField(blank=True, null=True)
    previous_secret = SecretTextField(blank=True, null=True)
    # {"PARAMETER": "dotted.path.in.the.body"}
    parameter_map = models.JSONField(default=dict, blank=True)
    filter_path = models.CharField(max_length=200, blank=True)
    filter_value = models.CharField(max_length=1000, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1)]
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["job", "name"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="webhook_unique_name")]

    def __str__(self) -> str:
        return self.name

    def new_secret(self) -> str:
        """Give the webhook a new signing secret (Standard Webhooks form: whsec_ and 32 random
        bytes in base64); the caller shows it once, only the ciphertext stays."""
        self.secret = f"whsec_{base64.b64encode(secrets.token_bytes(32)).decode()}"
        return self.secret

    def receive_path(self) -> str:
        return reverse("webhook-receive", args=[self.key])


class WebhookDelivery(TeamOwned, models.Model):
    """One request to a webhook's URL, accepted or not, for its managers to see."""

    team_path = "webhook__job__team_id"
    view_permission = "jobs.view_webhook"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    # The sender's delivery id (webhook-id or X-GitHub-Delivery), "" if it sent none.
    delivery_id = models.CharField(max_length=200, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    accepted = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField()
    reason = models.TextField(blank=True)
    execution = models.ForeignKey(
        "executions.Execution", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["webhook", "received_at"])]
        constraints = [
            # A delivery id starts at most one run: the second of two at once fails here.
            models.UniqueConstraint(
                fields=["webhook", "delivery_id"],
                condition=models.Q(accepted=True),
                name="webhook_delivery_once",
            )
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.delivery_id or 'delivery'} to {self.webhook}"
