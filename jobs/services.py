"""Changes to jobs shared by the admin, the API and the UI; running them is executions.services."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from accounts import audit, policy
from accounts.models import Source
from executions.models import ACTIVE_STATUSES, Execution
from jobs.models import Job
from servers.models import Server


def save_job(
    job: Job,
    *,
    actor: Any,
    source: Source,
    servers: Iterable[Server] | None = None,
    changed_fields: Iterable[str] = (),
) -> Job:
    """Create or change a job (and set its default targets, if given) with its audit row."""
    created = job._state.adding
    with transaction.atomic():
        job.save()
        if servers is not None:
            job.servers.set(servers)
        audit.record_saved(
            job, created=created, actor=actor, source=source, changed_fields=changed_fields
        )
    return job


@dataclass(frozen=True)
class JobDeletion:
    """What deleting a job touches, as far as one person may see: shown before they confirm.

    Its executions are snapshots: they stay, under the job's name, and running ones finish.
    """

    running: list[Execution]
    runs: int  # every run in its history, the running ones included


def deletion_effects(job: Job, user: Any) -> JobDeletion:
    runs = policy.visible(job.executions.all(), user)
    return JobDeletion(running=list(runs.filter(status__in=ACTIVE_STATUSES)), runs=runs.count())


def delete_job(job: Job, *, actor: Any, source: Source) -> None:
    with transaction.atomic():
        audit.record("delete", job, actor=actor, source=source)
        job.delete()
