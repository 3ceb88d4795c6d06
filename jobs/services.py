"""Changes to jobs shared by the admin, the API and the UI; running them is executions.services."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from accounts import audit
from accounts.models import Source
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


def delete_job(job: Job, *, actor: Any, source: Source) -> None:
    with transaction.atomic():
        audit.record("delete", job, actor=actor, source=source)
        job.delete()
