"""Changes to jobs shared by the admin, the API and the UI; running them is executions.services."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts import audit, policy
from accounts.models import Source
from executions.models import ACTIVE_STATUSES, Execution, Status
from jobs import chains, schedules
from jobs import parameters as job_parameters
from jobs.models import Job, Schedule, SecretVariable, Webhook
from servers.models import Server, Tag


def save_job(
    job: Job,
    *,
    actor: Any,
    source: Source,
    servers: Iterable[Server] | None = None,
    target_tags: Iterable[Tag | str] | None = None,
    secret_variables: Iterable[SecretVariable] | None = None,
    links: Iterable[chains.Link] | None = None,
    changed_fields: Iterable[str] = (),
) -> Job:
    """Create or change a job (and set its default targets, the secret variables it
    receives and the jobs it starts next (`links`, jobs.chains), if given) with its audit row.
    A tag given by name is created if need be; links that would make a cycle, or lead to
    another team's job, are refused (ValidationError) and nothing is saved."""
    created = job._state.adding
    with transaction.atomic():
        job.save()
        if servers is not None:
            job.servers.set(servers)
        if target_tags is not None:
            job.target_tags.set([Tag.named(tag) for tag in target_tags])
        if secret_variables is not None:
            job.secret_variables.set(secret_variables)
        if "team" in changed_fields:
            chains.drop_links_across_teams(job)
            # Rules name jobs of their channel's team: its old team's rules for it go.
            job.notification_rules.exclude(channel__team_id=job.team_id).delete()
        if links is not None:
            chains.set_links(job, links)
        if "enabled" in changed_fields and job.enabled:
            # Slots that passed while the job was disabled were not missed: nothing was due.
            for schedule in job.schedules.filter(enabled=True):
                schedule.next_run_at = next_run(schedule)
                schedule.save(update_fields=["next_run_at"])
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


def next_run(schedule: Schedule) -> datetime | None:
    """The schedule's first slot from now on, and after the last one fired (a tick may
    have fired one a moment ahead of this clock); None while it is paused."""
    if not schedule.enabled:
        return None
    after = max(timezone.now(), schedule.last_slot_at or timezone.now())
    return schedules.next_slot(schedule.cron, schedule.timezone, after)


def save_schedule(
    schedule: Schedule,
    *,
    actor: Any,
    source: Source,
    parameters: Mapping[str, Any] | None = None,
    servers: Iterable[Server] | None = None,
    target_tags: Iterable[Tag | str] | None = None,
    changed_fields: Iterable[str] = (),
) -> Schedule:
    """Create or change a schedule with its audit row. Its next run is computed from now:
    a new schedule never fires at once, and a paused one resumes at its next slot.

    `parameters` (values by name, secret ones included) are checked against the job's
    parameters as for a run (ParameterErrors) and again when each run starts; the secret
    ones are kept encrypted.
    """
    created = schedule._state.adding
    if parameters is not None:
        definitions = schedule.job.parameters
        schedule.set_values(
            job_parameters.clean_values(definitions, parameters),
            set(job_parameters.secret_names(definitions)),
        )
    if servers is not None:
        servers = list(servers)
        schedule.job.clean_targets(servers)
    with transaction.atomic():
        if not created:
            # Locked, and what the scheduler writes read afresh: a tick that fired a slot
            # while this was being edited keeps its record, and the slot is not fired again.
            fired = Schedule.objects.select_for_update().filter(pk=schedule.pk)
            schedule.last_slot_at, schedule.last_error = fired.values_list(
                "last_slot_at", "last_error"
            ).get()
        schedule.next_run_at = next_run(schedule)
        schedule.save()
        if servers is not None:
            schedule.servers.set(servers)
        if target_tags is not None:
            schedule.target_tags.set([Tag.named(tag) for tag in target_tags])
        audit.record_saved(
            schedule, created=created, actor=actor, source=source, changed_fields=changed_fields
        )
    return schedule


def delete_schedule(schedule: Schedule, *, actor: Any, source: Source) -> None:
    """Its runs stay, naming the schedule no more."""
    with transaction.atomic():
        audit.record("delete", schedule, actor=actor, source=source)
        schedule.delete()


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


def save_webhook(
    webhook: Webhook, *, actor: Any, source: Source, changed_fields: Iterable[str] = ()
) -> Webhook:
    """Create or change a webhook with its audit row, which never names a secret.

    A new webhook gets its unguessable URL key and, unless given one, its first secret: the
    caller shows `webhook.secret` once, to whoever created it.
    """
    created = webhook._state.adding
    if created:
        webhook.key = secrets.token_urlsafe(32)
        if not webhook.secret:
            webhook.new_secret()
    with transaction.atomic():
        webhook.save()
        audit.record_saved(
            webhook, created=created, actor=actor, source=source, changed_fields=changed_fields
        )
    return webhook


def delete_webhook(webhook: Webhook, *, actor: Any, source: Source) -> None:
    """Its deliveries go with it; its runs stay, naming the webhook no more."""
    with transaction.atomic():
        audit.record("delete", webhook, actor=actor, source=source)
        webhook.delete()


def rotate_webhook_secret(webhook: Webhook, *, actor: Any, source: Source) -> str:
    """Give the webhook a new secret and return it (show it once); the current one becomes
    the previous one, still accepted until retired, so senders can switch without a gap.
    A previous secret still unretired is dropped."""
    with transaction.atomic():
        # Locked: of two rotations at once, the second keeps the first's new secret as the
        # previous one, which its caller has seen, rather than the one both replaced.
        current = Webhook.objects.select_for_update().only("secret").get(pk=webhook.pk)
        webhook.previous_secret = current.secret
        secret = webhook.new_secret()
        webhook.save(update_fields=["secret", "previous_secret", "updated_at"])
        audit.record("rotate_secret", webhook, actor=actor, source=source)
    return secret


def retire_previous_secret(webhook: Webhook, *, actor: Any, source: Source) -> bool:
    """Stop accepting the previous secret; False (and nothing recorded) if there was none."""
    with transaction.atomic():
        retired = Webhook.objects.filter(pk=webhook.pk, previous_secret__isnull=False).update(
            previous_secret=None, updated_at=timezone.now()
        )
        webhook.previous_secret = None
        if retired:
            audit.record("retire_previous_secret", webhook, actor=actor, source=source)
    return bool(retired)
