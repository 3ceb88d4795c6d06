"""Changes to jobs shared by the admin, the API and the UI; running them is executions.services."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from accounts import audit, policy
from accounts.models import Source
from executions.models import ACTIVE_STATUSES, Execution, Status
from jobs.models import Job, SecretVariable
from servers.models import Server, Tag


def save_job(
    job: Job,
    *,
    actor: Any,
    source: Source,
    servers: Iterable[Server] | None = None,
    target_tags: Iterable[Tag | str] | None = None,
    secret_variables: Iterable[SecretVariable] | None = None,
    changed_fields: Iterable[str] = (),
) -> Job:
    """Create or change a job (and set its default targets and the secret variables it
    receives, if given) with its audit row. A tag given by name is created if need be."""
    created = job._state.adding
    with transaction.atomic():
        job.save()
        if servers is not None:
            job.servers.set(servers)
        if target_tags is not None:
            job.target_tags.set([Tag.named(tag) for tag in target_tags])
        if secret_variables is not None:
            job.secret_variables.set(secret_variables)
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
    from executions.services import cancel_execution  # executions.services imports jobs

    with transaction.atomic():
        # A waiting run starts when its job's run before it ends; without its job, never.
        for execution in job.executions.filter(status=Status.WAITING):
            cancel_execution(execution, by=actor, source=source)
        audit.record("delete", job, actor=actor, source=source)
        job.delete()


def save_secret_variable(
    variable: SecretVariable, *, actor: Any, source: Source, changed_fields: Iterable[str] = ()
) -> SecretVariable:
    """Create or change a secret variable with its audit row, which names the fields that
    changed and never the value."""
    created = variable._state.adding
    with transaction.atomic():
        variable.save()
        audit.record_saved(
            variable, created=created, actor=actor, source=source, changed_fields=changed_fields
        )
    return variable


def delete_secret_variable(variable: SecretVariable, *, actor: Any, source: Source) -> None:
    """Jobs that listed it stop receiving it; their runs still queued fail with its name."""
    with transaction.atomic():
        audit.record("delete", variable, actor=actor, source=source)
        variable.delete()
