"""The scheduler: starts the runs of schedules whose slot has come.

Every worker calls `fire_due_schedules` every SCHEDULE_TICK_SECONDS (executions' `worker`
command): no extra process, and any number of workers may tick at once. A slot fires by
moving its schedule's `next_run_at` on with an update guarded by the value it read, in the
transaction that starts the run, so of any number of ticks exactly one wins the slot.

A slot fired more than SCHEDULE_MISFIRE_GRACE_SECONDS after its time was missed (no worker
was running, or the workers were too busy). However many slots a schedule missed, the next
tick handles them once, never a flood: under `skip` they are recorded as one missed run;
under `run_once` the latest of them runs, if its time is within the schedule's start
deadline, and is recorded as missed otherwise.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import repeat

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from executions import services
from executions.models import Execution, Trigger
from jobs import schedules
from jobs.models import MissedRuns, Schedule

logger = logging.getLogger(__name__)

# Counting the slots a long outage missed stops here (an every-minute schedule down a year
# has half a million); the summary then says "more than".
COUNT_LIMIT = 10_000


def due_schedules(now: datetime, limit: int) -> list[Schedule]:
    """Enabled schedules of enabled jobs whose next slot has come: one query when none are,
    six when some are (their jobs come along; their and their jobs' targets and the jobs'
    secret variables are prefetched, so that starting each run reads none of them again)."""
    due = Schedule.objects.filter(enabled=True, job__enabled=True, next_run_at__lte=now)
    return list(
        due.select_related("job")
        .prefetch_related(
            "servers", "target_tags", "job__servers", "job__target_tags", "job__secret_variables"
        )
        .order_by("next_run_at", "id")[:limit]
    )


def fire_due_schedules(now: datetime | None = None, batch: int = 50) -> list[int]:
    """Fire every due slot, `batch` schedules per transaction; the ids of the executions
    started or recorded as missed. Safe to call from any number of processes at once.

    One transaction per batch rather than per schedule: a thousand schedules due in the same
    minute would otherwise wait for a thousand commits (each a disk flush). Each schedule's
    guard and its run still commit together. With SCHEDULE_FIRE_THREADS above 1 (PostgreSQL),
    that many threads fire at once, each on its own connection: firing waits mostly for the
    database's answers, not for this process. Each job's schedules stay in one thread, whose
    transaction locks the job's row (start_execution) until it commits: two threads sharing
    jobs could each hold one the other waits for.
    """
    now = now or timezone.now()
    # Inside a caller's transaction, other connections would wait for rows it holds.
    threads = 1 if connection.in_atomic_block else settings.SCHEDULE_FIRE_THREADS
    started = []
    while due := due_schedules(now, batch * threads):
        shares: list[list[Schedule]] = [[] for _ in range(threads)]
        for schedule in due:
            shares[schedule.job_id % threads].append(schedule)
        shares = [share for share in shares if share]
        if len(shares) == 1:
            started += _fire_share(shares[0], now, batch)
        else:
            with ThreadPoolExecutor(len(shares)) as pool:
                fired = pool.map(_fire_share_on_own_connection, shares, repeat(now), repeat(batch))
                for ids in fired:
                    started += ids
        if len(due) < batch * threads:
            break
    return started


def _fire_share(schedules: list[Schedule], now: datetime, batch: int) -> list[int]:
    started = []
    for start in range(0, len(schedules), batch):
        started += _fire_batch(schedules[start : start + batch], now)
    return started


def _fire_share_on_own_connection(
    schedules: list[Schedule], now: datetime, batch: int
) -> list[int]:
    try:
        return _fire_share(schedules, now, batch)
    finally:
        connection.close()  # this thread's own; the pool's threads end with the call


@dataclass(frozen=True)
class Due:
    """A schedule's due slots, worked out before any transaction (it can take a while after
    a long outage, and SQLite's write lock would be held meanwhile)."""

    schedule: Schedule
    first: datetime
    latest: datetime
    previous: datetime | None
    count: int
    following: datetime | None


def _fire_batch(schedules: list[Schedule], now: datetime) -> list[int]:
    """Fire the schedules in one transaction; if that fails, each in its own, so that one
    schedule that cannot fire (for a reason other than its run's) blocks no other."""
    plans = [plan for schedule in schedules if (plan := _due(schedule, now))]
    try:
        with transaction.atomic():
            return [pk for plan in plans for pk in _fire(plan, now)]
    except Exception:
        logger.exception("firing %s schedules at once failed; firing them one by one", len(plans))
    started = []
    for plan in plans:
        try:
            with transaction.atomic():
                started += _fire(plan, now)
        except Exception as exc:
            logger.exception("schedule %s: its slot %s failed", plan.schedule.pk, plan.latest)
            # Moved on all the same: a slot that fails every time must not block the next.
            Schedule.objects.filter(pk=plan.schedule.pk, next_run_at=plan.first).update(
                next_run_at=plan.following,
                last_slot_at=plan.latest,
                last_error=f"{plan.latest:%Y-%m-%d %H:%M} UTC: {exc}",
            )
    return started


def fire(schedule: Schedule, now: datetime) -> list[int]:
    """Fire the schedule's due slots if no other tick has; see the module's docstring."""
    plan = _due(schedule, now)
    if plan is None:
        return []
    with transaction.atomic():
        return _fire(plan, now)


def _due(schedule: Schedule, now: datetime) -> Due | None:
    first = schedule.next_run_at
    assert first is not None
    try:
        return Due(schedule, first, *_due_slots(schedule, first, now))
    except Exception as exc:
        # A database edited by hand, a time zone gone from the system, a date past what a
        # datetime holds: this schedule stops, and says why, rather than stop every tick.
        logger.exception("schedule %s: cannot compute its next run", schedule.pk)
        Schedule.objects.filter(pk=schedule.pk, next_run_at=first).update(
            next_run_at=None, last_error=f"cannot compute its next run: {exc}"
        )
        return None


def _fire(plan: Due, now: datetime) -> list[int]:
    """In the caller's transaction: win the slot by the guard, then start or record."""
    schedule, first, latest = plan.schedule, plan.first, plan.latest
    on_time = now - latest <= timedelta(seconds=settings.SCHEDULE_MISFIRE_GRACE_SECONDS)
    catch_up = schedule.missed_runs == MissedRuns.RUN_ONCE and now - latest <= timedelta(
        seconds=schedule.start_deadline_seconds
    )
    won = Schedule.objects.filter(pk=schedule.pk, next_run_at=first, enabled=True).update(
        next_run_at=plan.following, last_slot_at=latest, last_error=""
    )
    if not won:
        return []  # another tick fired it, or it was paused or changed meanwhile
    recorded = []
    try:
        if on_time:
            if plan.count > 1:  # a late tick after an outage that ended just in time
                assert plan.previous is not None
                reason = _missed_reason(schedule, first, plan.previous, plan.count - 1, now)
                recorded.append(_start(schedule, plan.previous, missed=reason))
            recorded.append(_start(schedule, latest))
        elif catch_up:  # one run for them all
            recorded.append(_start(schedule, latest))
        else:
            reason = _missed_reason(schedule, first, latest, plan.count, now)
            recorded.append(_start(schedule, latest, missed=reason))
    except services.ExecutionError as exc:
        logger.warning("schedule %s: its run of %s did not start: %s", schedule.pk, latest, exc)
        Schedule.objects.filter(pk=schedule.pk).update(
            last_error=f"{latest:%Y-%m-%d %H:%M} UTC: {exc}"
        )
    return [execution.pk for execution in recorded]


def _due_slots(
    schedule: Schedule, first: datetime, now: datetime
) -> tuple[datetime, datetime | None, int, datetime | None]:
    """From the first due slot: the latest due one, the one before it, how many are due, and
    the first one after `now` (None if there is none)."""
    latest, previous, count = first, None, 1
    for later in schedules.slots(schedule.cron, schedule.timezone, first):
        if later > now:
            return latest, previous, count, later
        latest, previous, count = later, latest, count + 1
        if count > COUNT_LIMIT:
            latest, previous = schedules.last_slots(schedule.cron, schedule.timezone, now)
            return (
                latest,
                previous,
                count,
                schedules.next_slot(schedule.cron, schedule.timezone, now),
            )
    return latest, previous, count, None


def _missed_reason(
    schedule: Schedule, first: datetime, last: datetime, count: int, now: datetime
) -> str:
    zone = schedules.zone(schedule.timezone)
    when = f"{last.astimezone(zone):%Y-%m-%d %H:%M %Z}"
    if count > 1:
        more = "more than " if count > COUNT_LIMIT else ""
        when = f"{more}{count:,} runs from {first.astimezone(zone):%Y-%m-%d %H:%M %Z} to {when}"
    else:
        when = f"the run of {when}"
    late = int((now - last).total_seconds())
    return f"missed: {when} could not start in time (no worker fired it until {late:,} s later)"


def _start(schedule: Schedule, slot: datetime, missed: str = "") -> Execution:
    values = {**schedule.parameters, **schedule.secret_values()}
    servers = list(schedule.servers.all())
    tags = [tag.name for tag in schedule.target_tags.all()]
    targeted = bool(servers or tags)
    return services.start_execution(
        schedule.job,
        trigger=Trigger.SCHEDULE,
        servers=servers if targeted else None,
        tags=tags if targeted else None,
        parameters=values,
        schedule=schedule,
        scheduled_for=slot,
        start_by=slot + timedelta(seconds=schedule.start_deadline_seconds),
        missed=missed,
    )
