"""One execution cannot take the database down, however many servers it runs on."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest
from django.db import connection
from django.db.backends.signals import connection_created

from executions import runner, services
from executions.models import Execution, Status
from executions.tests.helpers import run, start
from jobs.models import Job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@dataclass
class Samples:
    connections: list[int] = field(default_factory=list)
    heartbeat_ages: list[float] = field(default_factory=list)
    host_threads: list[int] = field(default_factory=list)


def host_threads(execution: Execution) -> int:
    return sum(t.name.startswith(f"exec-{execution.pk}_") for t in threading.enumerate())


def database_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = %s AND backend_type = 'client backend'",
            [connection.settings_dict["NAME"]],
        )
        return cursor.fetchone()[0]


def sample_until_finished(execution: Execution) -> Samples:
    """Watch a run from outside, as an operator would, until it has finished."""
    samples = Samples()
    with connection.cursor() as cursor:
        while True:
            samples.connections.append(database_connections())
            cursor.execute(
                "SELECT status, extract(epoch FROM now() - heartbeat_at) "
                "FROM executions_execution WHERE id = %s",
                [execution.pk],
            )
            status, age = cursor.fetchone()
            samples.host_threads.append(host_threads(execution))
            if status not in (Status.QUEUED, Status.RUNNING):
                return samples
            if status == Status.RUNNING:
                samples.heartbeat_ages.append(float(age))
            # A reaper running beside the run must find nothing to reap.
            assert services.reap_lost_executions() == []
            threading.Event().wait(0.05)


def test_five_hundred_hosts_hold_a_fixed_number_of_database_connections(
    make_server, make_job, settings, in_background
):
    if connection.vendor != "postgresql":
        pytest.skip(
            "counts connections in PostgreSQL's pg_stat_activity; "
            "run with DATABASE_URL=postgres://... to include it"
        )
    settings.EXECUTION_HEARTBEAT_SECONDS = 0.5
    settings.EXECUTION_LOST_AFTER_SECONDS = 10.0
    servers = [make_server(name=f"node-{i:03}") for i in range(500)]
    job = make_job("echo hi", servers, max_parallel=settings.EXECUTION_MAX_PARALLEL)
    execution = start(job)
    # This test's connection and what earlier tests left idle in this process's pool, which
    # the run may take again.
    before = database_connections()
    in_background(lambda: runner.run_execution(execution.pk))
    samples = sample_until_finished(execution)

    execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED, execution.summary
    assert execution.summary == "500 succeeded"
    # At most the worker's main thread, output writer and watchdog on top: the same for 5
    # hosts or 5,000, and for any number running at once.
    assert max(samples.connections) <= before + 3, (before, samples.connections)
    assert max(samples.host_threads) <= settings.EXECUTION_MAX_PARALLEL
    # Never older than what the reaper tolerates: the run was never in danger of being lost.
    assert samples.heartbeat_ages
    assert max(samples.heartbeat_ages) < settings.EXECUTION_LOST_AFTER_SECONDS


def most_at_once(execution: Execution) -> int:
    """The most host runs of the execution that were running at the same moment."""
    edges = []
    for host_run in execution.host_runs.all():
        edges += [(host_run.started_at, 1), (host_run.finished_at, -1)]
    running = peak = 0
    for _, change in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        running += change
        peak = max(peak, running)
    return peak


def test_a_job_saved_above_the_limit_runs_at_the_limit(make_server, make_job, settings):
    settings.EXECUTION_MAX_PARALLEL = 3
    job = make_job("sleep 0.5", [make_server() for _ in range(8)])
    # Written around validation, as rows from before the limit existed were.
    Job.objects.filter(pk=job.pk).update(max_parallel=10**9)
    execution = run(job)
    assert execution.status == Status.SUCCEEDED
    assert execution.summary == "8 succeeded"
    assert most_at_once(execution) == 3


def test_host_threads_never_open_a_database_connection(make_server, make_job):
    opened_by: list[str] = []

    def record(**kwargs: object) -> None:
        opened_by.append(threading.current_thread().name)

    connection_created.connect(record, weak=False)
    try:
        execution = run(make_job("echo hi", [make_server() for _ in range(20)], max_parallel=20))
    finally:
        connection_created.disconnect(record)
    assert execution.summary == "20 succeeded"
    # The output writer, and the watchdog if the run outlasted its first poll; the 20 host
    # threads, none.
    assert f"output-{execution.pk}" in opened_by
    assert set(opened_by) <= {f"output-{execution.pk}", f"watch-{execution.pk}"}
