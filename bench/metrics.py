"""What one /metrics scrape costs over a big history: 100k executions, 1M output chunks.

    .venv/bin/python bench/metrics.py            # SQLite
    DATABASE_URL=postgres://... .venv/bin/python bench/metrics.py

The history: 5 teams of 20 jobs, 100,000 executions over 90 days in every ending and a few
triggers, some queued and running, each with 10 chunks of output and its OutputTotal (as
the output writer keeps it). The figure is the median of 9 scrapes (Django's test client:
the server's whole work, no network) and the queries of one. BENCH_EXECUTIONS scales the
history down for a quick look.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import timedelta

from common import WORK  # sets Django up: before the app's modules
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import Team
from executions.models import Execution, HostRun, LogChunk, OutputTotal, Status, Trigger
from jobs.models import Job

EXECUTIONS = int(os.getenv("BENCH_EXECUTIONS", "100000"))
CHUNKS_PER_RUN = 10
TEAMS, JOBS_PER_TEAM = 5, 20
TOKEN = "bench-metrics-token"
ENDINGS = [Status.SUCCEEDED] * 8 + [Status.FAILED, Status.TIMED_OUT]
TRIGGERS = [Trigger.SCHEDULE] * 6 + [Trigger.API, Trigger.UI, Trigger.WEBHOOK, Trigger.RETRY]


def make_history() -> None:
    now = timezone.now()
    teams = [Team.objects.create(name=f"team-{t}") for t in range(TEAMS)]
    jobs = [
        Job.objects.create(team=team, name=f"job-{t}-{j}", script="true")
        for t, team in enumerate(teams)
        for j in range(JOBS_PER_TEAM)
    ]
    made, batch = 0, 2000
    while made < EXECUTIONS:
        count = min(batch, EXECUTIONS - made)
        executions = []
        for n in range(made, made + count):
            job = jobs[n % len(jobs)]
            started = now - timedelta(seconds=(EXECUTIONS - n) * 90 * 86400 / EXECUTIONS)
            status = ENDINGS[n % len(ENDINGS)] if n < EXECUTIONS - 50 else Status.RUNNING
            executions.append(
                Execution(
                    team_id=job.team_id,
                    job=job,
                    job_name=job.name,
                    script="true",
                    interpreter="/bin/bash",
                    max_parallel=10,
                    trigger=TRIGGERS[n % len(TRIGGERS)],
                    status=status,
                    started_at=started,
                    finished_at=None
                    if status == Status.RUNNING
                    else started + timedelta(seconds=n % 4000),
                    enqueued_at=None,
                )
            )
        executions = Execution.objects.bulk_create(executions)
        with connection.cursor() as cursor:  # auto_now_add: as if each waited n % 90 s
            cursor.executemany(
                f"UPDATE {Execution._meta.db_table} SET created_at = %s WHERE id = %s",
                [(e.started_at - timedelta(seconds=e.pk % 90), e.pk) for e in executions],
            )
        runs = HostRun.objects.bulk_create(
            HostRun(execution=e, server_name="web-1", address="10.0.0.1", status=e.status)
            for e in executions
        )
        data = b"Started session 42 of user deploy; GET /api/v1/items 200 1532 0.012\n" * 2
        LogChunk.objects.bulk_create(
            (
                LogChunk(
                    execution=e,
                    host_run=run,
                    seq=seq,
                    stream=LogChunk.Stream.STDOUT,
                    data=data,
                    created_at=e.started_at,
                )
                for e, run in zip(executions, runs, strict=True)
                for seq in range(CHUNKS_PER_RUN)
            ),
            batch_size=5000,
        )
        OutputTotal.objects.bulk_create(
            OutputTotal(execution=e, bytes=CHUNKS_PER_RUN * len(data)) for e in executions
        )
        made += count
        print(f"  {made} executions", end="\r", flush=True)
    Execution.objects.create(
        team=teams[0], job=jobs[0], job_name=jobs[0].name, script="true",
        interpreter="/bin/bash", max_parallel=1, trigger=Trigger.API,
    )  # fmt: skip
    print()


def main() -> None:
    settings.ALLOWED_HOSTS.append("testserver")  # the test client's host name
    settings.METRICS_TOKEN = TOKEN
    call_command("migrate", verbosity=0)
    print(f"data: {WORK}  database: {connection.vendor}")
    began = time.perf_counter()
    make_history()
    print(f"history made in {time.perf_counter() - began:.0f} s: "
          f"{Execution.objects.count()} executions, {LogChunk.objects.count()} chunks")  # fmt: skip
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    times, queries = [], [0]

    def count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        queries[0] += 1
        return execute(sql, params, many, context)

    for _ in range(9):
        queries[0] = 0
        with connection.execute_wrapper(count):
            start = time.perf_counter()
            response = client.get("/metrics")
            times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.status_code
    lines = response.content.decode().splitlines()
    samples = [line for line in lines if line and not line.startswith("#")]
    print(f"one scrape: median {statistics.median(times):.1f} ms "
          f"(min {min(times):.1f}, max {max(times):.1f}), {queries[0]} queries, "
          f"{len(samples)} samples, {len(response.content)} bytes")  # fmt: skip


if __name__ == "__main__":
    main()
