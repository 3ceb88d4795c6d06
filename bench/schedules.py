"""How fast the scheduler starts many schedules due at once, and what its tick costs.

    .venv/bin/python bench/schedules.py            # SQLite + the ORM broker
    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/schedules.py

1,000 schedules (on 100 jobs) are made due at the same moment while `manage.py worker` runs
with its default settings; the figure is how long after their slot each run was started
(recorded queued, its task handed to the broker), against the target of 10 s. There is no
reference tool for this: cron starts a process per line and records nothing. The tick's
database queries are counted in this process with 10 and with 1,000 schedules.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import timedelta

from common import WORK, wait_for  # sets Django up: before the app's modules
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from accounts.models import Team
from executions.models import Execution
from jobs import scheduler
from jobs.models import Job, Schedule
from servers.models import Server
from tsubame.tests.processes import app_environment, spawn, stop

SCHEDULES, JOBS = 1000, 100
TARGET_SECONDS = 10.0


def make_schedules(team: Team, count: int, jobs: int) -> list[Job]:
    server = Server.objects.create(team=team, name="nowhere", host="127.0.0.1", username="bench")
    made = []
    for n in range(jobs):
        job = Job.objects.create(team=team, name=f"job-{n}", script="true")
        job.servers.add(server)
        made.append(job)
    Schedule.objects.bulk_create(
        Schedule(job=made[n % jobs], cron="0 3 * * *", timezone="Europe/Berlin")
        for n in range(count)
    )
    return made


def tick_queries(now_due: bool) -> int:
    """Queries of one tick in this process; rolled back, so nothing stays started."""
    from django.db import transaction

    slot = timezone.now()
    counted = [0]

    def count(execute, sql, params, many, context):
        counted[0] += 1
        return execute(sql, params, many, context)

    with transaction.atomic():
        Schedule.objects.update(next_run_at=slot if now_due else slot + timedelta(days=1))
        with connection.execute_wrapper(count):
            scheduler.fire_due_schedules(now=slot + timedelta(seconds=1))
        transaction.set_rollback(True)
    return counted[0]


def query_counts() -> None:
    team = Team.objects.create(name="queries")
    make_schedules(team, 10, 10)
    idle_10, due_10 = tick_queries(False), tick_queries(True)
    Schedule.objects.all().delete()
    make_schedules(Team.objects.create(name="more"), SCHEDULES, JOBS)
    idle_1000, due_1000 = tick_queries(False), tick_queries(True)
    print(f"tick, none due:     {idle_10} queries with 10 schedules, {idle_1000} with {SCHEDULES}")
    print(
        f"tick, all due:      {due_10 / 10:.1f} queries per started run with 10, "
        f"{due_1000 / SCHEDULES:.1f} with {SCHEDULES}"
    )
    Schedule.objects.all().delete()
    Execution.objects.all().delete()


def start_worker() -> object:
    return spawn([sys.executable, "manage.py", "worker"], app_environment(), WORK / "worker.log")


def main() -> None:
    call_command("migrate", verbosity=0)
    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[1]
    broker = "redis" if settings.REDIS_URL else "orm"
    print(f"tsubame scheduler benchmark: {database} database, {broker} broker")
    query_counts()

    make_schedules(Team.objects.create(name="bench"), SCHEDULES, JOBS)
    worker = start_worker()
    try:
        time.sleep(5)  # the worker's cluster is up and ticking
        slot = (timezone.now() + timedelta(seconds=3)).replace(microsecond=0)
        Schedule.objects.update(next_run_at=slot)
        wait_for(
            lambda: Execution.objects.filter(scheduled_for=slot).count() >= SCHEDULES,
            timeout=120,
            every=0.2,
        )
    finally:
        stop([worker])
    late = sorted(
        (created - slot).total_seconds()
        for created in Execution.objects.filter(scheduled_for=slot).values_list(
            "created_at", flat=True
        )
    )
    p95 = late[int(len(late) * 0.95) - 1]
    print(
        f"{SCHEDULES} schedules due at once: all started {late[-1]:.2f} s after their slot "
        f"(median {statistics.median(late):.2f} s, p95 {p95:.2f} s); target {TARGET_SECONDS:.0f} s "
        f"({late[-1] / TARGET_SECONDS:.2f}x of it)"
    )


if __name__ == "__main__":
    main()
