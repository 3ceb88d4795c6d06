"""The real path: django-q2 broker, `manage.py worker` processes, and the parts that die."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.status import Stat
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role
from executions import services
from executions.models import Execution, Status
from executions.tests.helpers import output, start, wait_until
from executions.tests.test_cancel_timeout import remote_processes, tree_script, unique_tag
from jobs.models import Schedule
from tsubame.tests.processes import app_environment, spawn, stop

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.real_queue,
    pytest.mark.timeout(180),
]


# Quick enough for tests that wait for a dead worker's execution to be reaped.
FAST_REAPER = {
    "EXECUTION_HEARTBEAT_SECONDS": "0.5",
    "EXECUTION_LOST_AFTER_SECONDS": "3",
    "EXECUTION_REAP_EVERY_SECONDS": "0.5",
}


def worker_log() -> Path:
    return Path(settings.DATA_DIR) / "test-worker.log"


@pytest.fixture
def start_worker() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """`manage.py worker` processes, each the leader of its own process group."""
    get_broker().purge_queue()  # tasks left in Redis by earlier runs are not ours
    processes: list[subprocess.Popen[bytes]] = []
    log = worker_log()

    def start(**env: str) -> subprocess.Popen[bytes]:
        args = [sys.executable, "manage.py", "worker"]
        process = spawn(args, app_environment() | {"WORKERS": "1"} | env, log)
        processes.append(process)
        return process

    yield start
    running = [process for process in processes if process.poll() is None]
    stop(processes)
    for process in running:
        assert process.returncode == 0, f"the worker did not stop cleanly; see {log}"


@pytest.fixture
def worker_process(start_worker) -> subprocess.Popen[bytes]:
    return start_worker(**FAST_REAPER)


def process_group(pgid: int) -> list[int]:
    """Processes of a process group that still run (zombies only wait to be collected)."""
    return [pid for pid, _ppid, group, state in processes() if group == pgid and state != "Z"]


def processes() -> Iterator[tuple[int, int, int, str]]:
    """(pid, ppid, process group, state) of every process, read from /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name is in parentheses and may contain spaces or parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        yield int(stat.parent.name), int(fields[1]), int(fields[2]), fields[0]


def finished(execution: Execution) -> Execution | None:
    execution.refresh_from_db()
    return execution if execution.is_finished else None


def test_queued_execution_runs_on_a_worker_process(make_server, make_job, worker_process):
    execution = start(make_job("echo via the queue", [make_server()]))
    wait_until(lambda: finished(execution), 60, "the worker to run the execution")
    assert execution.status == Status.SUCCEEDED
    worker_pid = int(execution.worker.rsplit(":", 1)[1])
    assert worker_pid not in (os.getpid(), worker_process.pid)
    assert output(execution) == b"via the queue\n"


def test_killed_worker_leaves_a_lost_execution_and_no_remote_processes(
    make_server, make_job, worker_process
):
    tag = unique_tag()
    execution = start(make_job(tree_script(tag), [make_server()]))
    wait_until(lambda: b"started" in output(execution), 60, "the script to start")
    execution.refresh_from_db()
    assert execution.status == Status.RUNNING
    assert remote_processes(tag)

    os.kill(int(execution.worker.rsplit(":", 1)[1]), signal.SIGKILL)

    wait_until(lambda: finished(execution), 30, "the reaper to mark the execution lost")
    assert execution.status == Status.LOST
    assert "stopped responding" in execution.summary
    host_run = execution.host_runs.get()
    assert host_run.status == Status.LOST
    assert output(execution, stream="stdout") == b"started\n"  # what arrived is kept
    wait_until(lambda: not remote_processes(tag), 10, "the remote processes to stop")


def start_long_run(make_server, make_job) -> tuple[Execution, str]:
    tag = unique_tag()
    execution = start(make_job(tree_script(tag), [make_server()]))
    wait_until(lambda: b"started" in output(execution), 60, "the script to start")
    execution.refresh_from_db()
    assert execution.status == Status.RUNNING
    assert remote_processes(tag)
    return execution, tag


def test_killed_worker_main_process_takes_its_cluster_along(make_server, make_job, start_worker):
    # The production timings: a dead worker's execution is lost within a minute.
    worker = start_worker()
    execution, tag = start_long_run(make_server, make_job)

    worker.kill()
    killed_at = time.monotonic()
    worker.wait()

    wait_until(lambda: not process_group(worker.pid), 5, "the cluster's processes to exit")
    wait_until(lambda: not remote_processes(tag), 10, "the remote processes to stop")
    start_worker()
    wait_until(lambda: finished(execution), 60, "another worker to mark the execution lost")
    assert time.monotonic() - killed_at < 60
    assert execution.status == Status.LOST


def test_killed_sentinel_stops_the_whole_worker(make_server, make_job, start_worker):
    worker = start_worker(**FAST_REAPER)
    execution, tag = start_long_run(make_server, make_job)
    (sentinel,) = [pid for pid, ppid, _group, _state in processes() if ppid == worker.pid]

    os.kill(sentinel, signal.SIGKILL)

    # Exiting with an error lets a supervisor restart it.
    assert worker.wait(10) != 0
    wait_until(lambda: not process_group(worker.pid), 5, "the cluster's processes to exit")
    wait_until(lambda: not remote_processes(tag), 10, "the remote processes to stop")
    start_worker(**FAST_REAPER)
    wait_until(lambda: finished(execution), 30, "another worker to mark the execution lost")
    assert execution.status == Status.LOST


def test_run_requested_while_the_broker_is_down_starts_when_it_returns(
    own_redis, start_worker, make_server, make_job, make_member, team, client
):
    # Production timings: the run must start within a minute of the broker's return.
    running = start_worker(REDIS_URL=own_redis.url)
    wait_until(Stat.get_all, 30, "the worker's cluster to run")
    job = make_job("echo after the outage", [make_server()])
    operator = make_member(team, Role.OPERATOR)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(operator, 'test')[1]}")
    log_start = worker_log().stat().st_size
    own_redis.kill()

    response = api.post(f"/api/v1/jobs/{job.pk}/run/", format="json")

    assert response.status_code == 201
    shown = api.get(f"/api/v1/executions/{response.json()['id']}/").json()
    assert shown["status"] == Status.QUEUED
    assert shown["summary"].startswith("waiting for the task queue: ")
    client.force_login(operator)
    # The worker's reaper clears the summary for a moment each time it tries the broker again.
    wait_until(
        lambda: (
            b"waiting for the task queue: " in client.get(f"/executions/{shown['id']}/").content
        ),
        10,
        "the page to say what the run waits for",
    )
    execution = Execution.objects.get(pk=shown["id"])
    # A worker that a supervisor (re)starts during the outage waits for the broker.
    restarted = start_worker(REDIS_URL=own_redis.url)

    # The outage lasts until the workers have felt it: the running one lost the broker and
    # failed to hand the execution over, the restarted one is waiting.
    def workers_felt_the_outage() -> bool:
        log = worker_log().read_bytes()[log_start:]
        return all(
            line in log
            for line in [
                b"Failed to pull task from broker",
                b"could not queue execution",
                b"waiting for the task queue",
            ]
        )

    wait_until(workers_felt_the_outage, 60, "the workers to notice that the broker is gone")
    assert running.poll() is None
    assert restarted.poll() is None
    own_redis.start()
    returned_at = time.monotonic()
    wait_until(lambda: finished(execution), 60, "the run to finish once the broker is back")
    assert time.monotonic() - returned_at < 60
    assert execution.status == Status.SUCCEEDED
    assert execution.summary == "1 succeeded"
    assert output(execution) == b"after the outage\n"
    wait_until(lambda: len(Stat.get_all()) == 2, 30, "the restarted worker's cluster to run")


def test_requeue_waits_for_the_broker_and_then_hands_over_every_waiting_run(
    own_redis, make_server, make_job
):
    job = make_job("true", [make_server()])
    own_redis.kill()
    first, second = start(job), start(job)
    assert services.requeue_waiting_executions() == []  # still down: retried next round
    for execution in (first, second):
        execution.refresh_from_db()
        assert execution.status == Status.QUEUED
        assert execution.summary.startswith("waiting for the task queue: ")

    own_redis.start()

    assert services.requeue_waiting_executions() == [first.pk, second.pk]
    assert get_broker().queue_size() == 2
    for execution in (first, second):
        execution.refresh_from_db()
        assert (execution.status, execution.summary) == (Status.QUEUED, "")
    assert services.requeue_waiting_executions() == []  # handed over: not again


def test_two_workers_fire_a_due_schedule_once_and_run_it(make_server, make_job, start_worker):
    """The scheduler ticks inside `manage.py worker`; two of them share each slot."""
    job = make_job("echo from-the-schedule", [make_server()])
    schedule = Schedule.objects.create(job=job, cron="0 3 * * *", timezone="Europe/Berlin")
    start_worker(), start_worker()
    slot = timezone.now() + timedelta(seconds=2)
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=slot)
    execution = wait_until(
        lambda: Execution.objects.filter(schedule=schedule, status=Status.SUCCEEDED).first(),
        60,
        "the scheduled run to finish",
    )
    assert execution.scheduled_for == slot
    assert output(execution) == b"from-the-schedule\n"
    time.sleep(3)  # several more ticks of both workers: still the one run
    assert Execution.objects.filter(schedule=schedule).count() == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at > slot + timedelta(hours=1)


def test_a_worker_prunes_what_retention_no_longer_keeps(team, make_job, start_worker):
    from executions.tests.test_retention import make_run

    job = make_job("true", [])
    team.execution_retention_days, team.keep_last_runs = 30, 1
    team.save()
    old = [make_run(team, job, ended_days_ago=40 + n) for n in range(3)]
    recent = make_run(team, job, ended_days_ago=1)
    start_worker(PRUNE_EVERY_SECONDS="1")
    remaining = Execution.objects.filter(team=team)
    wait_until(lambda: remaining.count() == 1, 60, "the worker to prune the old runs")
    assert list(remaining) == [recent]
    assert not Execution.objects.filter(pk__in=[run.pk for run in old]).exists()
    team.refresh_from_db()
    assert team.pruned_at is not None
