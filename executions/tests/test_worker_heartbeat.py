"""A `manage.py worker` process records its heartbeat while it runs, and removes it when it
stops cleanly; /readyz counts it as a live worker."""

from __future__ import annotations

import os
import signal

import pytest
from django.test import Client

from executions.models import WorkerHeartbeat
from executions.tests.helpers import wait_until
from executions.tests.test_worker_process import start_worker  # noqa: F401 (a fixture)
from tsubame.tests.processes import stop

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.real_queue,
    pytest.mark.timeout(180),
]


def heartbeat_of(pid: int) -> WorkerHeartbeat | None:
    return WorkerHeartbeat.objects.filter(pid=pid).first()


def test_a_worker_beats_while_it_runs_and_removes_its_heartbeat_when_stopped(
    start_worker,  # noqa: F811
):
    assert Client().get("/readyz").status_code == 503
    worker = start_worker(SCHEDULE_TICK_SECONDS="0.2")

    first = wait_until(lambda: heartbeat_of(worker.pid), 60, "the worker's first heartbeat")
    assert first.started_at <= first.beat_at
    wait_until(
        lambda: heartbeat_of(worker.pid).beat_at > first.beat_at, 30, "the worker's next beat"
    )
    assert Client().get("/readyz").status_code == 200

    stop([worker])

    assert worker.returncode == 0
    assert heartbeat_of(worker.pid) is None
    assert Client().get("/readyz").json()["failed"] == ["workers"]


def test_a_killed_workers_heartbeat_stays_and_goes_stale(start_worker, settings):  # noqa: F811
    settings.WORKER_HEARTBEAT_STALE_SECONDS = 2
    worker = start_worker(SCHEDULE_TICK_SECONDS="0.2")
    wait_until(lambda: WorkerHeartbeat.objects.live().exists(), 60, "a live worker")

    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()

    assert heartbeat_of(worker.pid) is not None  # nobody could remove it
    wait_until(lambda: not WorkerHeartbeat.objects.live().exists(), 30, "the heartbeat to go stale")
    assert Client().get("/readyz").status_code == 503
