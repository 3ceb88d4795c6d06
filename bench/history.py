"""How fast the pages and the API answer over a big history: 100k executions, 1M chunks.

    .venv/bin/python bench/history.py            # SQLite
    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/history.py

The history: 5 teams of 20 jobs, 100,000 executions over 90 days (a tenth of them failed),
each with one host run and 10 chunks of journal-like text (1,000,000 chunks, ~120 MB). A
manager of one team asks for the dashboard, the executions list, the API's executions list
and an output search (one match), each 9 times in this process (Django's test client: the
server's whole work, no network); the figure is the median against the 100 ms target
(300 ms for the search). BENCH_EXECUTIONS scales the history down for a quick look.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from datetime import timedelta

from common import WORK  # sets Django up: before the app's modules
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken, Membership, Role, Team
from accounts.roles import role_group
from executions import search
from executions.models import Execution, HostRun, LogChunk, Status, Trigger
from jobs.models import Job

EXECUTIONS = int(os.getenv("BENCH_EXECUTIONS", "100000"))
CHUNKS_PER_RUN = 10
TEAMS, JOBS_PER_TEAM = 5, 20
TARGET_MS = {"dashboard": 100, "executions list": 100, "API list": 100, "output search": 300}
UNIT = "ms"
NEEDLE = "needle-7f3a9c"


def journal_line(n: int, when: str) -> bytes:
    unit = random.choice(["nginx", "sshd", "cron", "postgres", "app", "kernel"])
    text = random.choice(
        [
            "Started session 42 of user deploy.",
            "GET /api/v1/items?page=3 200 1532 0.012",
            "connection received: host=10.0.3.7 port=51234",
            "checkpoint complete: wrote 1532 buffers (9.3%)",
            "worker 3 finished job 8812 in 0.48s",
            "eth0: link up, 1000 Mbps, full duplex",
        ]
    )
    return f"{when} web-{n % 50} {unit}[{1000 + n % 9000}]: {text}\n".encode()


def make_history() -> tuple[Team, object]:
    random.seed(7)
    now = timezone.now()
    teams = [Team.objects.create(name=f"team-{t}") for t in range(TEAMS)]
    jobs = [
        Job.objects.create(team=team, name=f"job-{t}-{j}", script="true")
        for t, team in enumerate(teams)
        for j in range(JOBS_PER_TEAM)
    ]
    made = 0
    batch = 2000
    while made < EXECUTIONS:
        count = min(batch, EXECUTIONS - made)
        executions = []
        for n in range(made, made + count):
            job = jobs[n % len(jobs)]
            started = now - timedelta(seconds=(EXECUTIONS - n) * 90 * 86400 / EXECUTIONS)
            failed = n % 10 == 0
            executions.append(
                Execution(
                    team_id=job.team_id,
                    job=job,
                    job_name=job.name,
                    script="true",
                    interpreter="/bin/bash",
                    max_parallel=10,
                    trigger=Trigger.SCHEDULE,
                    status=Status.FAILED if failed else Status.SUCCEEDED,
                    started_at=started,
                    finished_at=started + timedelta(seconds=3),
                    enqueued_at=None,
                )
            )
        executions = Execution.objects.bulk_create(executions)
        # auto_now_add set them all to now: spread them over the 90 days as the runs were.
        _spread_created(executions)
        runs = HostRun.objects.bulk_create(
            HostRun(
                execution=e,
                server_name="web-1",
                address="10.0.0.1",
                status=e.status,
                exit_code=1 if e.status == Status.FAILED else 0,
                started_at=e.started_at,
                finished_at=e.finished_at,
            )
            for e in executions
        )
        chunks = []
        for e, run in zip(executions, runs, strict=True):
            when = e.started_at.strftime("%b %d %H:%M:%S")
            for seq in range(CHUNKS_PER_RUN):
                data = b"".join(journal_line(seq * 10 + i, when) for i in range(12))
                chunks.append(
                    LogChunk(
                        execution=e,
                        host_run=run,
                        seq=seq,
                        stream=LogChunk.Stream.STDOUT,
                        data=data,
                        created_at=e.started_at,
                    )
                )
        LogChunk.objects.bulk_create(chunks, batch_size=5000)
        made += count
        print(f"  {made} executions", end="\r", flush=True)
    # One match in the whole history, in the middle of a chunk of the manager's team.
    target = LogChunk.objects.filter(execution__team=teams[0]).order_by("id")[EXECUTIONS // 3]
    LogChunk.objects.filter(pk=target.pk).update(data=bytes(target.data) + NEEDLE.encode())
    print()
    return teams[0], jobs[0]


def _spread_created(executions: list[Execution]) -> None:
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {Execution._meta.db_table} SET created_at = %s WHERE id = %s",
            [(e.started_at, e.pk) for e in executions],
        )


def median_ms(client: Client, url: str, **headers: str) -> tuple[float, int]:
    """The median of 9 requests' times, and the queries of the last one."""
    times = []
    queries = [0]

    def count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        queries[0] += 1
        return execute(sql, params, many, context)

    for _ in range(9):
        queries[0] = 0
        with connection.execute_wrapper(count):
            began = time.perf_counter()
            response = client.get(url, **headers)
            times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return statistics.median(times), queries[0]


def main() -> None:
    settings.ALLOWED_HOSTS.append("testserver")  # the test client's host name
    call_command("migrate", verbosity=0)
    print(f"data: {WORK}  database: {connection.vendor}")
    began = time.perf_counter()
    team, _job = make_history()
    began = time.perf_counter()
    # What the workers' indexers do behind the runs.
    indexed = search.index_everything()
    print(f"output indexed for search in {time.perf_counter() - began:.0f} s ({indexed} bytes)")
    if connection.vendor == "postgresql":
        # What autovacuum does soon after a load: planners without statistics scan tables.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    print(f"history made in {time.perf_counter() - began:.0f} s: "
          f"{Execution.objects.count()} executions, {LogChunk.objects.count()} chunks")  # fmt: skip
    from django.contrib.auth.models import User

    user = User.objects.create_user("manager", password="pw-bench-123!")
    Membership.objects.create(team=team, user=user, role=role_group(Role.MANAGER))
    token = ApiToken.issue(user, "bench")[1]
    client = Client()
    client.force_login(user)
    measures = {
        "dashboard": median_ms(client, "/"),
        "executions list": median_ms(client, "/executions/"),
        "API list": median_ms(
            Client(), "/api/v1/executions/", HTTP_AUTHORIZATION=f"Bearer {token}"
        ),
        "output search": median_ms(client, f"/executions/?q={NEEDLE}"),
    }
    print(f"{'measure':<18} {'median':>10} {'target':>8} {'ratio':>7} {'queries':>8}")
    for name, (ms, queries) in measures.items():
        target = TARGET_MS[name]
        print(f"{name:<18} {ms:>8.1f} ms {target:>5} ms {ms / target:>6.2f}x {queries:>8}")


if __name__ == "__main__":
    main()
