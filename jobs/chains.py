"""Chains: when a job's run ends, other jobs of its team start (ChainLink).

A link says which end of the job's run starts the next job: `succeeded`, `failed` (failed,
timed out or lost) or `finished` (either). A cancelled run starts nothing: a person stopped
it. A run that never ran (skipped, missed) starts nothing either.

Saving: a job's links are set with the job (`jobs.services.save_job`) after `clean_links`:
next jobs of the job's own team, each once, and no cycle among the team's links.
Running: the reaction to a run's end (`start_next_jobs`) starts each next job with the
values of the parameters both jobs define, on the next job's own targets, as a run with
trigger `chain` whose `parent` is the run that ended. Events are processed at least once;
the unique constraint on (parent, job) makes each chained run start once however often the
reaction runs. A run more than CHAIN_MAX_DEPTH links below the run that began the chain is
not started: the guard, at run time, against a cycle that two saves at once let through.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from graphlib import CycleError, TopologicalSorter

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q

from accounts.models import Team
from executions import services
from executions.models import Execution, ExecutionEvent, Status, Trigger
from executions.reactions import ENDED, reaction
from executions.retries import is_final_attempt
from jobs import parameters
from jobs.models import ChainLink, ChainWhen, Job

logger = logging.getLogger(__name__)

# A next job and when it starts.
Link = tuple[Job, str]

# Which links an ended run's status follows.
FOLLOWS = {
    Status.SUCCEEDED: (ChainWhen.SUCCEEDED, ChainWhen.FINISHED),
    Status.FAILED: (ChainWhen.FAILED, ChainWhen.FINISHED),
    Status.TIMED_OUT: (ChainWhen.FAILED, ChainWhen.FINISHED),
    Status.LOST: (ChainWhen.FAILED, ChainWhen.FINISHED),
}


def clean_links(job: Job, links: Iterable[Link]) -> None:
    """Refuse links the job (with its team and name as they are about to be saved) may not
    have: another team's job, a job named twice, an unknown `when`, or a cycle."""
    links = list(links)
    unknown = sorted({when for _next, when in links} - set(ChainWhen.values))
    if unknown:
        raise ValidationError(
            f"not a time to start the next job: {', '.join(unknown)} (one of "
            f"{', '.join(ChainWhen.values)})",
            code="invalid_when",
        )
    foreign = sorted(next_job.name for next_job, _when in links if next_job.team_id != job.team_id)
    if foreign:
        raise ValidationError(
            f"not jobs of team {job.team}: {', '.join(foreign)}", code="foreign_job"
        )
    names = [next_job.name for next_job, _when in links]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValidationError(
            f"each next job is named once: {', '.join(twice)} more than once", code="duplicate"
        )
    check_no_cycle(job, links)


def check_no_cycle(job: Job, links: Iterable[Link]) -> None:
    """Refuse links that close a cycle among the team's links, the job's current ones
    replaced by these; the message follows the cycle, e.g. "deploy -> test -> deploy"."""
    others = ChainLink.objects.filter(Q(job__team=job.team_id) | Q(next_job=job.pk)).exclude(
        job=job.pk
    )
    edges = {*others.values_list("job_id", "next_job_id"), *((job.pk, n.pk) for n, _ in links)}
    # Each job's predecessors are the jobs whose runs start it, so a cycle comes out in the
    # order the runs would follow each other.
    graph: dict[int | None, set[int | None]] = {}
    for before, after in edges:
        graph.setdefault(after, set()).add(before)
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        cycle = exc.args[1][:-1]  # graphlib repeats the first node at the end
        if job.pk in cycle:  # told from the job being saved, whichever node graphlib met first
            start = cycle.index(job.pk)
            cycle = cycle[start:] + cycle[:start]
        cycle.append(cycle[0])
        named = dict(Job.objects.filter(pk__in=cycle).values_list("pk", "name"))
        named[job.pk] = job.name  # the name being saved
        raise ValidationError(
            f"these links would make a cycle: {' -> '.join(named[pk] for pk in cycle)}",
            code="cycle",
        ) from exc


def set_links(job: Job, links: Iterable[Link]) -> bool:
    """Replace the saved job's links with these, checked; whether they changed. Call it in
    the transaction that saves the job."""
    links = list(links)
    # Two saves at once could each add half of a cycle: holding the team's row makes the
    # second check the first's links (on PostgreSQL; SQLite's write transactions are
    # serial anyway). The depth limit would still stop such a cycle at run time.
    Team.objects.select_for_update().filter(pk=job.team_id).exists()
    clean_links(job, links)
    wanted = {(next_job.pk, when) for next_job, when in links}
    current = set(ChainLink.objects.filter(job=job).values_list("next_job_id", "when"))
    if wanted == current:
        return False
    ChainLink.objects.filter(job=job).delete()
    ChainLink.objects.bulk_create(
        ChainLink(job=job, next_job=next_job, when=when) for next_job, when in links
    )
    return True


def drop_links_across_teams(job: Job) -> None:
    """After the job moved to another team: its links to and from its old team's jobs go."""
    ChainLink.objects.filter(Q(job=job) | Q(next_job=job)).exclude(
        job__team=F("next_job__team")
    ).delete()


@reaction(*ENDED)
def start_next_jobs(event: ExecutionEvent) -> None:
    """Start the jobs linked to the end of this run (once each, however often called)."""
    execution = event.execution
    follows = FOLLOWS.get(event.kind)
    if follows is None or execution.job_id is None or not is_final_attempt(execution):
        return  # cancelled; the job deleted; or a retry of this run is coming
    links = ChainLink.objects.filter(job=execution.job_id, when__in=follows)
    links = list(links.select_related("next_job__team"))
    if not links:
        return
    if execution.chain_depth >= settings.CHAIN_MAX_DEPTH:
        logger.warning(
            "execution %s: its next jobs (%s) not started: the chain is %s links deep "
            "(CHAIN_MAX_DEPTH)",
            execution.pk,
            ", ".join(link.next_job.name for link in links),
            execution.chain_depth,
        )
        return
    for link in links:
        start_next_job(execution, link.next_job)


def start_next_job(parent: Execution, job: Job) -> Execution | None:
    """Start `job` as the next run after `parent`; None if it started before, or cannot
    start (that is logged: trying again would not change it)."""
    if Execution.objects.filter(parent=parent, job=job).exists():
        return None
    secret = set(parameters.secret_names(parent.parameter_definitions))
    wanted = {definition["name"] for definition in job.parameters}
    values = {
        name: value
        for name, value in parent.parameters.items()
        if name in wanted and name not in secret
    }
    try:
        # A savepoint: a losing insert must not break a transaction the caller may hold.
        with transaction.atomic():
            return services.start_execution(
                job, trigger=Trigger.CHAIN, parameters=values, parent=parent
            )
    except IntegrityError:
        return None  # another processor started it since the check: once is enough
    except services.ExecutionError as exc:
        logger.warning("execution %s: next job %r not started: %s", parent.pk, job.name, exc)
        return None
