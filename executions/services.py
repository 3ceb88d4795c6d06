"""The one place where executions start, change state and finish.

Admin actions, the API, the UI, schedules and webhooks call `start_execution` and
`cancel_execution`; the worker calls the rest. Every transition is a conditional UPDATE on
the current status, so a duplicated task, a second worker or a late reaper can never move
an execution twice; the one that wins writes an ExecutionEvent in the same transaction,
and whatever reacts to it does so in executions.reactions.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.db.models.functions import Now
from django.utils import timezone
from django_q.brokers import Broker, get_broker
from django_q.conf import Conf
from django_q.tasks import async_task

from accounts import audit
from accounts.models import Source
from executions import live
from executions.models import ACTIVE_STATUSES, Execution, ExecutionEvent, HostRun, Status, Trigger
from jobs import parameters as job_parameters
from jobs.models import Concurrency, Job, Schedule, Webhook
from servers.models import Server

logger = logging.getLogger(__name__)


class ExecutionError(Exception):
    """A run that cannot be started or changed; the message is meant for the user."""


class InvalidParameters(ExecutionError):
    """Values a run cannot start with; `errors` has a message list per parameter name."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{name}: {' '.join(m)}" for name, m in errors.items()))
        self.errors = errors


def start_execution(
    job: Job,
    *,
    trigger: Trigger,
    triggered_by: object | None = None,
    servers: Iterable[Server] | None = None,
    tags: Iterable[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    rerun_of: Execution | None = None,
    retry_of: Execution | None = None,
    parent: Execution | None = None,
    schedule: Schedule | None = None,
    scheduled_for: datetime | None = None,
    start_by: datetime | None = None,
    webhook: Webhook | None = None,
    missed: str = "",
) -> Execution:
    """Snapshot the job, its targets and its parameter values into a queued execution and
    hand it to a worker.

    Targets: the servers and every server of the job's team with one of the tags, resolved
    now; with neither given, the job's own default servers and tags. Parameter values are
    checked by `jobs.parameters.clean_values` (InvalidParameters names the bad ones) and
    nothing starts unless all of them are valid.

    While a run of the job is waiting, queued or running, the job's `concurrency` decides:
    `allow` starts this one too; `skip` records it as skipped (finished at once, never
    run); `queue` makes it wait until the job has no queued or running run, and a request
    while one already waits joins that one: the waiting execution is returned unchanged,
    with the targets and parameter values of the request that created it. A later request
    does not replace them: what was asked first, and audited, is what runs.

    A schedule's slot that cannot start in time is recorded with `missed`, the reason: a
    finished execution with status missed, whatever the job's other runs are doing.

    A chained run names its `parent`, the run whose end started it (jobs.chains); it lies
    one link deeper than its parent, and a retry at the depth of the run it retries.
    """
    if not job.enabled:
        raise ExecutionError(f"job {job.name!r} is disabled")
    try:
        values = job_parameters.clean_values(job.parameters, parameters)
    except job_parameters.ParameterErrors as exc:
        raise InvalidParameters(exc.by_name) from exc
    if servers is None and tags is None:
        # .all(): what the caller prefetched (the scheduler does) costs no query.
        servers, tags = job.servers.all(), [tag.name for tag in job.target_tags.all()]
    tag_names = sorted(set(tags or ()))
    tagged = job.servers_tagged(tag_names)
    targets = {*(servers or ()), *tagged}
    if not targets:
        if tag_names:
            raise ExecutionError(
                f"no server of team {job.team} is tagged {' or '.join(tag_names)}, and no "
                "other server was chosen"
            )
        raise ExecutionError(f"job {job.name!r} has no target servers")
    try:
        job.clean_targets(list(targets))
    except ValidationError as exc:
        raise ExecutionError(exc.messages[0]) from exc
    secret_names = set(job_parameters.secret_names(job.parameters))
    secrets = {name: value for name, value in values.items() if name in secret_names}

    with transaction.atomic():
        # Locked until the new run is recorded: of two requests at the same moment, the
        # second sees the first's run. PostgreSQL locks the row; SQLite's transactions are
        # IMMEDIATE (settings), so the database is locked from the transaction's start.
        locked = Job.objects.select_for_update().filter(pk=job.pk)
        concurrency = locked.values_list("concurrency", flat=True).first()
        if concurrency is None:
            raise ExecutionError(f"job {job.name!r} was deleted")
        in_the_way = None
        if concurrency != Concurrency.ALLOW and not missed:
            in_the_way = _runs_in_the_way(job.pk)
        details: dict[str, Any] = {"job": job.pk, "servers": sorted(s.pk for s in targets)}
        if tag_names:
            details["tags"] = tag_names
        if values:
            details["parameters"] = sorted(values)  # names only: values may be secret
        if rerun_of is not None:
            details["rerun_of"] = rerun_of.pk
        if retry_of is not None:
            details["retry_of"] = retry_of.pk
        if parent is not None:
            details["parent"] = parent.pk
        if schedule is not None:
            details["schedule"] = schedule.pk
            details["scheduled_for"] = scheduled_for.isoformat() if scheduled_for else None
        if webhook is not None:
            details["webhook"] = webhook.pk
        waiting = next((r for r in in_the_way or () if r.status == Status.WAITING), None)
        if concurrency == Concurrency.QUEUE and waiting is not None:
            details["joined"] = waiting.pk
            audit.record("run", waiting, actor=triggered_by, source=trigger, details=details)
            return Execution.objects.get(pk=waiting.pk)
        status, summary, finished_at = Status.QUEUED, "", None
        if missed:
            status, summary, finished_at, secrets = Status.MISSED, missed, timezone.now(), {}
        elif in_the_way and concurrency == Concurrency.SKIP:
            status, finished_at = Status.SKIPPED, timezone.now()
            summary = f"skipped: run #{in_the_way[0].pk} of this job was {in_the_way[0].status}"
            secrets = {}  # never needed: erased with the outcome, as for every run
            details["skipped_for"] = in_the_way[0].pk
        elif in_the_way:
            status, summary = Status.WAITING, f"waiting for run #{in_the_way[-1].pk} to finish"
            details["waiting_for"] = in_the_way[-1].pk
        execution = Execution.objects.create(
            status=status,
            summary=summary,
            finished_at=finished_at,
            enqueued_at=timezone.now() if status == Status.QUEUED else None,
            team_id=job.team_id,
            job=job,
            job_name=job.name,
            script=job.script,
            interpreter=job.interpreter,
            timeout_seconds=job.timeout_seconds,
            max_parallel=job.max_parallel,
            use_terminal=job.use_terminal,
            parameter_definitions=job.parameters,
            parameters={name: None if name in secret_names else v for name, v in values.items()},
            secret_parameters=json.dumps(secrets) if secrets else None,
            secret_variables=sorted(variable.name for variable in job.secret_variables.all()),
            target_tags=tag_names,
            rerun_of=rerun_of,
            # Every attempt links to the first one.
            retry_of_id=(retry_of.retry_of_id or retry_of.pk) if retry_of else None,
            attempt=retry_of.attempt + 1 if retry_of else 1,
            parent=parent,
            chain_depth=(
                parent.chain_depth + 1 if parent else retry_of.chain_depth if retry_of else 0
            ),
            schedule=schedule,
            scheduled_for=scheduled_for,
            start_by=start_by,
            webhook=webhook,
            trigger=trigger,
            triggered_by=triggered_by if getattr(triggered_by, "pk", None) else None,
        )
        HostRun.objects.bulk_create(
            HostRun(
                execution=execution,
                server=server,
                server_name=server.name,
                address=server.address,
                status=status if status in (Status.SKIPPED, Status.MISSED) else Status.QUEUED,
                finished_at=finished_at,
            )
            for server in sorted(targets, key=lambda s: s.name)
        )
        audit.record("run", execution, actor=triggered_by, source=trigger, details=details)
        if status in (Status.SKIPPED, Status.MISSED):
            ExecutionEvent.objects.create(execution=execution, kind=status)
        elif status == Status.QUEUED:
            transaction.on_commit(lambda: _enqueue(execution.pk))
    return execution


def _runs_in_the_way(job_id: int) -> list[Execution]:
    """The job's waiting, queued and running executions, oldest first."""
    return list(
        Execution.objects.filter(job_id=job_id, status__in=ACTIVE_STATUSES)
        .only("pk", "status")
        .order_by("created_at", "id")
    )


def start_waiting_execution(job_id: int) -> int | None:
    """Hand the job's waiting execution to a worker if no run of the job is queued or
    running any more; its id, or None if there was none to start (or another call started it).
    """
    with transaction.atomic():
        # The lock start_execution takes: a run it is about to make wait is seen here.
        if not Job.objects.select_for_update().filter(pk=job_id).exists():
            return None
        active = _runs_in_the_way(job_id)
        if not active or any(run.status != Status.WAITING for run in active):
            return None
        execution_id = active[0].pk
        if not Execution.objects.filter(pk=execution_id, status=Status.WAITING).update(
            status=Status.QUEUED, enqueued_at=Now(), summary=""
        ):
            return None
        live.ring_after_commit(execution_id)
        transaction.on_commit(lambda: _enqueue(execution_id))
    return execution_id


def rerun_execution(
    execution: Execution,
    *,
    trigger: Trigger,
    triggered_by: object | None = None,
    only_failed: bool = False,
    secret_parameters: Mapping[str, Any] | None = None,
    retry: bool = False,
    start_by: datetime | None = None,
) -> Execution:
    """Start the execution's job again with the same parameter values and servers (or only
    the servers whose host did not succeed). Secret values are not kept after a run, so the
    secret parameters it was given must be given again. A `retry` is the next attempt of the
    same run (executions.retries) rather than a new run."""
    job = execution.job
    if job is None:
        raise ExecutionError("the job of this execution was deleted")
    host_runs = execution.host_runs.all()
    if only_failed:
        host_runs = host_runs.exclude(status=Status.SUCCEEDED)
    server_ids = list(host_runs.exclude(server=None).values_list("server_id", flat=True))
    if not server_ids:
        if only_failed and not host_runs.exists():
            raise ExecutionError("every host of this execution succeeded: nothing to run again")
        raise ExecutionError("the servers of this execution were deleted")
    given = dict(secret_parameters or {})
    secret_names = job_parameters.secret_names(execution.parameter_definitions)
    others = sorted(set(given) - set(secret_names), key=str)
    if others:
        # A run again is the same run: only what was not kept may be given.
        raise InvalidParameters(
            {str(name)[:80]: ["Only secret parameters are given again."] for name in others}
        )
    missing = [
        name for name in secret_names if name in execution.parameters and not given.get(name)
    ]
    if missing:
        raise InvalidParameters(
            {name: ["A secret is not kept after a run: give its value again."] for name in missing}
        )
    values = {name: v for name, v in execution.parameters.items() if name not in secret_names}
    return start_execution(
        job,
        trigger=trigger,
        triggered_by=triggered_by,
        servers=Server.objects.filter(pk__in=server_ids),
        tags=(),
        parameters={**values, **given},
        rerun_of=None if retry else execution,
        retry_of=execution if retry else None,
        start_by=start_by,
    )


# How a queued execution whose task the broker could not take says so (UI, API, live view).
WAITING_FOR_QUEUE = "waiting for the task queue"


def _broker() -> Broker:
    """This process's broker, made once for its configuration: django-q2 makes a new one
    (for Redis, a new client and connection, whose handshake reads package metadata) for
    every task otherwise, which cost 3 of the 11 ms of starting a run on PostgreSQL + Redis.
    A forked process makes its own."""
    settings_of_broker = (Conf.BROKER_CLASS, Conf.ORM, Conf.REDIS, Conf.DJANGO_REDIS)
    key = (os.getpid(), repr(settings_of_broker))  # Conf.REDIS may be a dict
    if key not in _brokers:
        _brokers.clear()
        _brokers[key] = get_broker()
    return _brokers[key]


_brokers: dict[tuple[int, str], Broker] = {}


def _enqueue(execution_id: int) -> bool:
    """Hand the execution's task to the broker. False if the broker could not take it.

    A broker that blinks must not fail a run: the execution stays queued, says what it waits
    for, and `requeue_waiting_executions` hands it over again on every round.
    """
    try:
        async_task(
            "executions.tasks.run_execution",
            execution_id,
            task_name=f"execution-{execution_id}",
            broker=_broker(),
        )
    except Exception as exc:
        logger.warning("could not queue execution %s: %s", execution_id, exc)
        waiting = Execution.objects.filter(pk=execution_id, status=Status.QUEUED).update(
            enqueued_at=None, summary=f"{WAITING_FOR_QUEUE}: {exc}"
        )
        if waiting:
            live.ring_after_commit(execution_id)
        return False
    return True


def cancel_execution(
    execution: Execution, *, by: object | None = None, source: Source = Source.SYSTEM
) -> bool:
    """Ask for a stop. Returns False if the execution had already finished.

    A queued execution is cancelled at once (its task will find nothing to claim); a running
    one is flagged, and its worker stops the remote processes within seconds.
    """
    user = by if getattr(by, "pk", None) else None
    with transaction.atomic():
        if _finish_unstarted(execution.pk, Status.CANCELLED, "cancelled before it started", user):
            audit.record("cancel", execution, actor=user, source=source)
            return True
        flagged = Execution.objects.filter(
            pk=execution.pk, status=Status.RUNNING, cancel_requested_at=None
        ).update(cancel_requested_at=timezone.now(), cancel_requested_by=user)
        if flagged:
            audit.record("cancel", execution, actor=user, source=source)
            live.ring_after_commit(execution.pk)
            return True
    # Already flagged by an earlier request: still a cancel in progress, not a refusal.
    return Execution.objects.filter(pk=execution.pk, status=Status.RUNNING).exists()


def _finish_unstarted(
    execution_id: int, status: Status, summary: str, user: object | None = None
) -> bool:
    return _finish(
        execution_id,
        status,
        summary,
        guard=Q(status__in=[Status.WAITING, Status.QUEUED]),
        cancel_requested_at=timezone.now() if status == Status.CANCELLED else None,
        cancel_requested_by=user,
    )


def _finish(
    execution_id: int,
    status: Status,
    summary: str,
    *,
    guard: Q,
    host_status: Status | None = None,
    host_error: str = "",
    **fields: object,
) -> bool:
    """The one way an execution finishes. True if this call finished it, False if it lost.

    `guard` is what must still be true (still queued; still running; still without a
    heartbeat). It is checked by the same UPDATE that sets the outcome, so of any number of
    competitors (the worker, the reaper, a cancel, a duplicate) exactly one wins, and only
    the winner closes the host runs left open, writes the outcome's event (what reactions
    such as starting the job's waiting run react to) and rings the doorbell.
    """
    now = timezone.now()
    with transaction.atomic():
        # A secret parameter's value is needed no longer than its run: erased with the outcome.
        won = Execution.objects.filter(guard, pk=execution_id).update(
            status=status, summary=summary, finished_at=now, secret_parameters=None, **fields
        )
        if won:
            HostRun.objects.filter(execution_id=execution_id, status__in=ACTIVE_STATUSES).update(
                status=host_status or status, finished_at=now, error=host_error
            )
            ExecutionEvent.objects.create(execution_id=execution_id, kind=status)
            live.ring_after_commit(execution_id)
    return bool(won)


# --- worker side ---------------------------------------------------------------------


def claim_execution(execution_id: int, worker: str) -> Execution | None:
    """Take a queued execution for this worker; None if anyone else has or had it."""
    # Times that the reaper compares come from the database's clock, so clock skew between
    # worker machines cannot make a live execution look dead.
    with transaction.atomic():
        in_time = Q(start_by=None) | Q(start_by__gte=Now())
        claimed = Execution.objects.filter(in_time, pk=execution_id, status=Status.QUEUED).update(
            status=Status.RUNNING, started_at=Now(), heartbeat_at=Now(), worker=worker
        )
        if not claimed:
            _finish(
                execution_id,
                Status.MISSED,
                "missed: no worker could start it within its schedule's start deadline",
                guard=Q(status=Status.QUEUED, start_by__lt=Now()),
            )
            return None
        ExecutionEvent.objects.create(execution_id=execution_id, kind=ExecutionEvent.Kind.STARTED)
        live.ring_after_commit(execution_id)
    return Execution.objects.get(pk=execution_id)


def heartbeat(execution_id: int) -> bool:
    """Prove the worker is alive. False means the execution is no longer ours to run.

    That is how a worker learns that the reaper gave its execution up (or it was deleted):
    the worker then stops its hosts, and its own finish loses to the recorded outcome.
    """
    return bool(
        Execution.objects.filter(pk=execution_id, status=Status.RUNNING).update(heartbeat_at=Now())
    )


def is_cancel_requested(execution_id: int) -> bool:
    return Execution.objects.filter(pk=execution_id, cancel_requested_at__isnull=False).exists()


def start_host_run(host_run: HostRun) -> bool:
    return host_run.pk in start_host_runs([host_run])


def start_host_runs(host_runs: list[HostRun]) -> set[int]:
    """Mark queued host runs running, in one transaction; the ids of those that were queued.

    A host run that was closed meanwhile (its execution cancelled, reaped or finished) is
    not started again.
    """
    now = timezone.now()
    with transaction.atomic():
        # Locked, so that what this selects as queued is what the update below changes.
        queued = set(
            HostRun.objects.select_for_update()
            .filter(pk__in=[host_run.pk for host_run in host_runs], status=Status.QUEUED)
            .values_list("pk", flat=True)
        )
        HostRun.objects.filter(pk__in=queued, status=Status.QUEUED).update(
            status=Status.RUNNING, started_at=now
        )
        for execution_id in {h.execution_id for h in host_runs if h.pk in queued}:
            live.ring_after_commit(execution_id)
    for host_run in host_runs:
        if host_run.pk in queued:
            host_run.status, host_run.started_at = Status.RUNNING, now
    return queued


@dataclass
class HostEnd:
    """How one host run ended, for `finish_host_runs`."""

    host_run: HostRun
    status: Status
    exit_code: int | None = None
    error: str = ""


def finish_host_run(
    host_run: HostRun, status: Status, *, exit_code: int | None = None, error: str = ""
) -> bool:
    return finish_host_runs([HostEnd(host_run, status, exit_code, error)])[0]


def finish_host_runs(ends: list[HostEnd]) -> list[bool]:
    """Record how host runs ended, in one transaction; for each, whether it was still open.

    One that was closed already (by the reaper, a cancel or the execution's finish) keeps
    the outcome recorded first.
    """
    now = timezone.now()
    finished = []
    with transaction.atomic():
        for end in ends:
            won = HostRun.objects.filter(pk=end.host_run.pk, status__in=ACTIVE_STATUSES).update(
                status=end.status, exit_code=end.exit_code, error=end.error, finished_at=now
            )
            if won:
                live.ring_after_commit(end.host_run.execution_id)
            finished.append(bool(won))
    return finished


def finish_execution(execution_id: int) -> bool:
    """Close a running execution with a status derived from its host runs.

    False if it was not running any more: the reaper (or a duplicate) finished it first,
    and that outcome stands.
    """
    execution = Execution.objects.get(pk=execution_id)
    counts = Counter(
        dict(
            execution.host_runs.values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
    )
    # A host whose end the worker could not record (its writer lost the database) failed.
    unrecorded = sum(counts.pop(status, 0) for status in ACTIVE_STATUSES)
    if unrecorded:
        counts[Status.FAILED] += unrecorded
    if execution.cancel_requested_at and counts.get(Status.CANCELLED):
        status = Status.CANCELLED
    elif counts.get(Status.TIMED_OUT):
        status = Status.TIMED_OUT
    elif set(counts) == {Status.SUCCEEDED}:
        status = Status.SUCCEEDED
    else:
        status = Status.FAILED
    summary = ", ".join(f"{n} {Status(s).label.lower()}" for s, n in sorted(counts.items()))
    return _finish(
        execution_id,
        status,
        summary,
        guard=Q(status=Status.RUNNING),
        host_status=Status.FAILED,
        host_error="the worker could not record how this host ended",
    )


def reap_lost_executions() -> list[int]:
    """Mark running executions whose worker stopped heartbeating as lost.

    Output written so far stays; only the outcome is unknown. Safe to run from any number
    of processes at once.
    """
    cutoff = Now() - timedelta(seconds=settings.EXECUTION_LOST_AFTER_SECONDS)
    reaped = []
    stale = Execution.objects.filter(status=Status.RUNNING, heartbeat_at__lt=cutoff)
    for execution_id, last_beat in stale.values_list("pk", "heartbeat_at"):
        # Still running and still stale now: a finish or a heartbeat since the select wins.
        if not _finish(
            execution_id,
            Status.LOST,
            f"the worker stopped responding (last heartbeat {last_beat:%H:%M:%S} UTC)",
            guard=Q(status=Status.RUNNING, heartbeat_at__lt=cutoff),
            host_error="the worker running this was lost",
        ):
            continue
        logger.warning("execution %s lost: no heartbeat since %s", execution_id, last_beat)
        reaped.append(execution_id)
    return reaped


def requeue_waiting_executions() -> list[int]:
    """Hand queued executions without a task in the broker to it again.

    Those whose enqueue failed (the broker was down) are retried on every round. A task can
    also vanish with the worker cluster that had fetched it (killed, or Redis restarted
    without persistence), so one that no worker claimed for a while is queued again too; the
    claim guard makes the extra task harmless if the first one still arrives.
    """
    cutoff = Now() - timedelta(seconds=settings.EXECUTION_REQUEUE_AFTER_SECONDS)
    due = Execution.objects.filter(
        Q(enqueued_at=None) | Q(enqueued_at__lt=cutoff), status=Status.QUEUED
    )
    waiting = list(due.order_by("created_at", "id").values_list("pk", flat=True))
    requeued = []
    for execution_id in waiting:
        # Still due now: claimed, cancelled or requeued by another worker's reaper since the
        # select, it is not handed over (again).
        if not due.filter(pk=execution_id).update(enqueued_at=Now()):
            continue
        if not _enqueue(execution_id):
            break  # the broker is still down: the rest wait for the next round
        # Only now: cleared before the attempt, a reader could see it waiting for nothing.
        Execution.objects.filter(
            pk=execution_id, status=Status.QUEUED, summary__startswith=WAITING_FOR_QUEUE
        ).update(summary="")
        requeued.append(execution_id)
    return requeued
