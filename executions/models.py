from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone

from accounts.models import Source
from accounts.ownership import TeamOwned
from executions.fields import ByteCountField, OutputField
from jobs.parameters import environment_value
from tsubame.crypto import SecretTextField


class Status(models.TextChoices):
    """Statuses shared by executions and their host runs."""

    # Of a job whose runs queue (Job.concurrency): held back until the job's run before it
    # finishes; no task exists for it until then.
    WAITING = "waiting", "Waiting"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"
    LOST = "lost", "Lost"
    # Never ran: its job's runs do not overlap and one was queued or running.
    SKIPPED = "skipped", "Skipped"
    # Never ran: a schedule's slot that passed while no scheduler could start it in time.
    MISSED = "missed", "Missed"


ACTIVE_STATUSES = (Status.WAITING, Status.QUEUED, Status.RUNNING)
FINISHED_STATUSES = tuple(s for s in Status if s not in ACTIVE_STATUSES)


# What started an execution is the same vocabulary as the source of an audit event.
Trigger = Source


class ExecutionQuerySet(models.QuerySet["Execution"]):
    def with_details(self) -> ExecutionQuerySet:
        """What a list or detail page shows, in a constant number of queries."""
        return self.select_related(
            "team", "job", "triggered_by", "cancel_requested_by"
        ).prefetch_related(
            models.Prefetch("host_runs", queryset=HostRun.objects.order_by("server_name", "id"))
        )

    def with_children(self) -> ExecutionQuerySet:
        """Each one's chained runs (jobs.chains), the runs its end started, in one query."""
        children = Execution.objects.only("pk", "parent_id", "job_name").order_by("id")
        return self.prefetch_related(models.Prefetch("children", queryset=children))


class Execution(TeamOwned, models.Model):
    """One run of a job. What ran is a snapshot: editing the job later changes nothing here."""

    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="executions")
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="executions"
    )
    job_name = models.CharField(max_length=100)
    script = models.TextField()
    interpreter = models.CharField(max_length=255)
    timeout_seconds = models.PositiveIntegerField(null=True, blank=True)
    max_parallel = models.PositiveIntegerField()
    use_terminal = models.BooleanField(default=False)
    # The parameters as the job defined them when the run started, and the values it ran
    # with; a secret parameter's value is None here and lives in `secret_parameters`.
    parameter_definitions = models.JSONField(default=list, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    # Encrypted JSON of the secret parameters' values, kept only while a run may still need
    # them (erased when the execution finishes).
    secret_parameters = SecretTextField(blank=True, null=True)
    # Names of the team's secret variables the script receives (their values are read when
    # the worker starts the run, and never stored here).
    secret_variables = models.JSONField(default=list, blank=True)
    # The tags the run was asked to target, resolved into host runs when it started.
    target_tags = models.JSONField(default=list, blank=True)
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns"
    )
    # A chained run: the run whose end started it, and how many links lie above it.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    chain_depth = models.PositiveSmallIntegerField(default=0)
    # A retry: the first attempt, and which attempt this is (the first is 1).
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    attempt = models.PositiveSmallIntegerField(default=1)
    # Set on a failed attempt that will be retried: when the scheduler's tick starts the next.
    retry_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # A retry was due but could not start (the job disabled, its servers gone): this failed
    # attempt is the last one after all.
    retry_abandoned = models.BooleanField(default=False)

    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    # A scheduled run: its schedule, and the slot (the time the schedule named) it is for.
    schedule = models.ForeignKey(
        "jobs.Schedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    scheduled_for = models.DateTimeField(null=True, blank=True)
    # A scheduled run that no worker has claimed by then is recorded as missed instead of
    # starting late (the schedule's start deadline after its slot).
    start_by = models.DateTimeField(null=True, blank=True)
    webhook = models.ForeignKey(
        "jobs.Webhook", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="executions",
    )

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    summary = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When retention removed its output (executions.retention): the run itself is kept, and
    # its pages say why there is no output.
    output_pruned_at = models.DateTimeField(null=True, blank=True)

    # When a task for it was last handed to the broker, None if the broker could not take it;
    # see services.requeue_waiting_executions.
    enqueued_at = models.DateTimeField(null=True, default=timezone.now)
    # Set by the worker that claimed the execution; the reaper marks it lost when the
    # heartbeat stops.
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = ExecutionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["status", "enqueued_at"]),
            # The lists' order, for a superuser and for a team's members (the dashboard's
            # last 30 days too): read newest first from the index, never sorted.
            models.Index(fields=["-created_at", "-id"], name="execution_newest_first"),
            models.Index(fields=["team", "-created_at", "-id"], name="execution_team_newest"),
        ]
        constraints = [
            # A reaction runs at least once: these make what it starts happen once.
            models.UniqueConstraint(
                fields=["parent", "job"],
                condition=models.Q(parent__isnull=False),
                name="one_chained_run_per_parent_and_job",
            ),
            models.UniqueConstraint(
                fields=["retry_of", "attempt"],
                condition=models.Q(retry_of__isnull=False),
                name="one_run_per_attempt",
            ),
        ]
        permissions = [("cancel_execution", "Can cancel an execution")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.job_name}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def shown_parameters(self) -> list[tuple[str, str, str]]:
        """(name, label, value as text) of each parameter the run was given, for pages; a
        secret's value is never kept here and shows as "(secret)"."""
        shown = []
        for definition in self.parameter_definitions:
            name = definition["name"]
            if name not in self.parameters:
                continue
            value = self.parameters[name]
            if definition["type"] == "secret":
                text = "(secret)"
            elif isinstance(value, list):
                text = ", ".join(value)
            else:
                text = environment_value(value)
            shown.append((name, definition["label"] or name, text))
        return shown


class HostRun(TeamOwned, models.Model):
    """One server within an execution."""

    # Seen, like their output, by whoever may see the execution.
    team_path = "execution__team_id"
    view_permission = "executions.view_execution"

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="host_runs")
    server = models.ForeignKey(
        "servers.Server", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    server_name = models.CharField(max_length=100)
    address = models.CharField(max_length=400)

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["execution", "server_name", "id"]

    def __str__(self) -> str:
        return f"{self.server_name} in {self.execution}"

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class LogChunk(TeamOwned, models.Model):
    """A piece of one host run's output, exactly as the server sent it.

    `seq` counts up from 0 without gaps across the whole execution (one writer per
    execution assigns it), so a client that knows the last seq it has can ask for the rest.
    """

    team_path = "execution__team_id"
    view_permission = "executions.view_execution"

    class Stream(models.IntegerChoices):
        STDOUT = 1, "stdout"
        STDERR = 2, "stderr"

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="chunks")
    host_run = models.ForeignKey(HostRun, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveBigIntegerField()
    stream = models.PositiveSmallIntegerField(choices=Stream.choices)
    data = OutputField()
    # len(data): what retention takes off a run's OutputTotal, without reading the data.
    size = ByteCountField(of="data")
    # The unfinished last line of the previous chunk of the same stream (at most
    # search.LINE_START_BYTES of it): indexed with this chunk, so that a search finds text
    # that the writer's cut split in two.
    line_start = models.BinaryField(default=b"", blank=True)
    # Set once the chunk is in the output search index (executions/search.py).
    indexed = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["execution", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "seq"], name="logchunk_unique_seq")
        ]
        indexes = [
            models.Index(fields=["host_run", "seq"]),
            # The search indexer's queue: small, since chunks leave it within seconds.
            models.Index(
                fields=["id"], condition=models.Q(indexed=False), name="logchunk_unindexed"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.execution_id}:{self.seq}"


class ExecutionEvent(models.Model):
    """A change of an execution's status, written in the transaction that made it.

    What reacts to outcomes (a waiting run of the job starting, and later chains, retries,
    notifications, metrics) reacts to these rows, never to the status itself; see
    executions.reactions for how they are processed.
    """

    class Kind(models.TextChoices):
        STARTED = "started", "Started"
        SUCCEEDED = Status.SUCCEEDED.value, Status.SUCCEEDED.label
        FAILED = Status.FAILED.value, Status.FAILED.label
        CANCELLED = Status.CANCELLED.value, Status.CANCELLED.label
        TIMED_OUT = Status.TIMED_OUT.value, Status.TIMED_OUT.label
        LOST = Status.LOST.value, Status.LOST.label
        SKIPPED = Status.SKIPPED.value, Status.SKIPPED.label
        MISSED = Status.MISSED.value, Status.MISSED.label

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    # A processor holds the event until then (database clock); one that died meanwhile
    # leaves it to the next processor once this has passed.
    leased_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["id"], condition=models.Q(processed_at=None), name="event_unprocessed"
            )
        ]

    def __str__(self) -> str:
        return f"{self.execution_id} {self.kind}"


class OutputTotal(models.Model):
    """How many bytes of output an execution has stored, kept in the transaction that stores
    them (by its one output writer) or removes them (retention): /metrics adds these up
    instead of reading every chunk.
    """

    execution = models.OneToOneField(
        Execution, on_delete=models.CASCADE, primary_key=True, related_name="output_total"
    )
    bytes = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.execution_id}: {self.bytes} bytes"


class WorkerHeartbeatQuerySet(models.QuerySet["WorkerHeartbeat"]):
    def live(self) -> WorkerHeartbeatQuerySet:
        """Workers that beat within WORKER_HEARTBEAT_STALE_SECONDS, by the database clock:
        the one clock that every worker and web process reads alike."""
        stale = timedelta(seconds=settings.WORKER_HEARTBEAT_STALE_SECONDS)
        return self.filter(beat_at__gt=Now() - stale)


class WorkerHeartbeat(models.Model):
    """One `manage.py worker` process, while it runs: it beats on every tick and removes its
    row when it stops cleanly; the row of a killed one goes stale (see `live`)."""

    name = models.CharField(max_length=200, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)

    objects = WorkerHeartbeatQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def started(cls, host: str, pid: int) -> str:
        """Record a worker that starts; returns the name its beats go by. A row left by a
        killed process with the same host and pid is taken over."""
        name = f"{host}:{pid}"
        cls.objects.update_or_create(
            name=name, defaults={"host": host, "pid": pid, "started_at": Now(), "beat_at": Now()}
        )
        return name

    @classmethod
    def beat(cls, name: str) -> bool:
        """One cheap UPDATE per tick; False if the row is gone (forgotten as dead)."""
        return bool(cls.objects.filter(name=name).update(beat_at=Now()))

    @classmethod
    def stopped(cls, name: str) -> None:
        cls.objects.filter(name=name).delete()
