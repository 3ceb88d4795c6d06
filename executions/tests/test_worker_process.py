"""The real path: django-q2 broker, `manage.py worker` processes, and a worker that dies."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
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


@pytest.fixture
def worker_process() -> Iterator[subprocess.Popen[bytes]]:
    get_broker().purge_queue()  # tasks left in Redis by earlier runs are not ours
    env = app_environment() | {
        "WORKERS": "1",
        "EXECUTION_HEARTBEAT_SECONDS": "0.5",
        "EXECUTION_LOST_AFTER_SECONDS": "3",
        "EXECUTION_REAP_EVERY_SECONDS": "0.5",
    }
    log = Path(settings.DATA_DIR) / "test-worker.log"
    process = spawn([sys.executable, "manage.py", "worker"], env, log)
    try:
        yield process
    finally:
        stop([process])
        assert process.returncode == 0, f"the worker did not stop cleanly; see {log}"


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
