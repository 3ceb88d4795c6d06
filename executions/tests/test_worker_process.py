"""The real path: django-q2 broker, `manage.py worker` processes, and a worker that dies."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django_q.brokers import get_broker

from executions.models import Execution, Status
from executions.tests.helpers import output, start, wait_until
from executions.tests.test_cancel_timeout import remote_processes, tree_script, unique_tag
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


@pytest.fixture
def start_worker() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """`manage.py worker` processes, each the leader of its own process group."""
    get_broker().purge_queue()  # tasks left in Redis by earlier runs are not ours
    processes: list[subprocess.Popen[bytes]] = []
    log = Path(settings.DATA_DIR) / "test-worker.log"

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
