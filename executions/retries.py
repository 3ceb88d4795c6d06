"""Retries: a failed, timed-out or lost run is tried again on the servers that did not succeed.

A job's `retry_attempts` says how many times (0 to 10), `retry_delay_seconds` how long
before the first retry and `retry_backoff` how much longer each further one waits. A
cancelled run is never retried: a person stopped it.

Two steps, each happening once however often it is attempted:
- The reaction to the failed attempt's event marks it with `retry_due_at`, by an update
  guarded on its being unmarked and its next attempt not existing yet.
- The scheduler's tick (`start_due_retries`, in every worker) starts each due retry: it
  unmarks the attempt by an update guarded on the time it read, in the transaction that
  starts the next attempt; the unique constraint on (first attempt, attempt number) stops
  a second start whatever happens. No worker sleeps through a delay.
Each attempt is its own execution, linked to the first (`retry_of`) and numbered
(`attempt`). Secret parameter values are erased when a run ends, so a run that had any is
not retried: its summary says so.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Exists
from django.utils import timezone

from executions import services
from executions.models import Execution, ExecutionEvent, Status, Trigger
from executions.reactions import reaction
from jobs import parameters
from jobs.models import MAX_RETRY_DELAY_SECONDS

logger = logging.getLogger(__name__)

RETRYABLE = (Status.FAILED, Status.TIMED_OUT, Status.LOST)
NOT_RETRIED = "not retried"


def will_retry(execution: Execution) -> bool:
    """Whether the job's retry settings give this ended run another attempt."""
    job = execution.job
    return (
        job is not None
        and execution.status in RETRYABLE
        and execution.attempt <= job.retry_attempts
    )


def is_final_attempt(execution: Execution) -> bool:
    """Whether no attempt follows this ended run: what reacts to a run's outcome once per
    run (a chain, a notification) reacts to this one."""
    return not will_retry(execution) or _has_secret_values(execution) or execution.retry_abandoned


def _has_secret_values(execution: Execution) -> bool:
    secret = parameters.secret_names(execution.parameter_definitions)
    return any(name in execution.parameters for name in secret)


@reaction(*RETRYABLE)
def plan_retry(event: ExecutionEvent) -> None:
    """Mark a failed attempt to be tried again when its delay has passed."""
    execution = event.execution
    if not will_retry(execution) or execution.retry_abandoned:
        return
    if _has_secret_values(execution):
        Execution.objects.filter(pk=execution.pk).exclude(summary__contains=NOT_RETRIED).update(
            summary=f"{execution.summary}; {NOT_RETRIED}: its secret values are not kept"
        )
        return
    job = execution.job
    assert job is not None
    assert execution.finished_at is not None
    delay = min(
        job.retry_delay_seconds * job.retry_backoff ** (execution.attempt - 1),
        MAX_RETRY_DELAY_SECONDS,
    )
    next_attempt = Execution.objects.filter(
        retry_of=execution.retry_of_id or execution.pk, attempt=execution.attempt + 1
    )
    Execution.objects.filter(pk=execution.pk, retry_due_at=None, retry_abandoned=False).exclude(
        Exists(next_attempt)
    ).update(retry_due_at=execution.finished_at + timedelta(seconds=delay))


def start_due_retries(now: datetime | None = None) -> list[int]:
    """Start every retry whose time has come; the ids of the attempts started. Safe to call
    from any number of processes at once."""
    now = now or timezone.now()
    due = Execution.objects.filter(retry_due_at__lte=now).select_related("job")
    started = []
    for execution in due.order_by("retry_due_at", "id"):
        attempt = start_retry(execution)
        if attempt is not None:
            started.append(attempt.pk)
    return started


def _start_by(execution: Execution) -> datetime | None:
    """A scheduled run's retry must start within the schedule's start deadline of its due
    time, as the run itself had to; a worker reaching it later records it as missed."""
    if execution.start_by is None or execution.scheduled_for is None:
        return None
    assert execution.retry_due_at is not None
    return execution.retry_due_at + (execution.start_by - execution.scheduled_for)


def start_retry(execution: Execution) -> Execution | None:
    """Start the next attempt of a marked execution, unless another tick has."""
    try:
        with transaction.atomic():
            won = Execution.objects.filter(
                pk=execution.pk, retry_due_at=execution.retry_due_at
            ).update(retry_due_at=None)
            if not won:
                return None
            attempt = services.rerun_execution(
                execution,
                trigger=Trigger.RETRY,
                only_failed=True,
                retry=True,
                start_by=_start_by(execution),
            )
            if attempt.retry_of_id is None or attempt.status == Status.SKIPPED:
                # The job's overlap rule let it join a waiting run or skipped it: no attempt
                # ran, and none will. Rolled back, and given up like any retry that cannot
                # start, so that this failure counts as the last.
                raise services.ExecutionError(f"the job's overlap rule: {attempt.summary}")
            return attempt
    except IntegrityError:
        # That attempt exists already (the constraint's doing): nothing is due any more.
        Execution.objects.filter(pk=execution.pk).update(retry_due_at=None)
        return None
    except services.ExecutionError as exc:
        logger.warning("execution %s: retry not started: %s", execution.pk, exc)
        with transaction.atomic():
            abandoned = Execution.objects.filter(
                pk=execution.pk, retry_due_at=execution.retry_due_at
            ).update(
                retry_due_at=None,
                retry_abandoned=True,
                summary=f"{execution.summary}; {NOT_RETRIED}: {exc}",
            )
            if abandoned:
                # Its outcome is final after all: what reacts to final outcomes (a chain)
                # hears it again, now as the last attempt.
                ExecutionEvent.objects.create(execution=execution, kind=execution.status)
        return None
