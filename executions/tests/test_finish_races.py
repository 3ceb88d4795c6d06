"""An execution finishes once: the worker, the reaper and a late heartbeat, in every order."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from executions import live, runner, services
from executions.models import Execution, HostRun, Status
from executions.tests.helpers import (
    remote_processes,
    right_after_the_select,
    start,
    unique_tag,
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


class Doorbell:
    """A listener on an execution's group in the real channel layer."""

    def __init__(self, execution_id: int) -> None:
        self.layer = get_channel_layer()
        self.group = live.group_name(execution_id)
        # A plain name, not new_channel()'s process-local one: with Redis, receiving on those
        # is tied to one event loop, and every async_to_sync call here runs in a new one.
        self.channel = f"test-doorbell-{uuid.uuid4().hex}"
        async_to_sync(self.layer.group_add)(self.group, self.channel)

    def close(self) -> None:
        # Redis keeps groups across test runs, whose execution ids start at 1 again.
        async_to_sync(self.layer.group_discard)(self.group, self.channel)

    def rings(self) -> int:
        """How many rings arrived so far: a marker sent now is received after all of them."""
        return async_to_sync(self._count_until_marker)()

    async def _count_until_marker(self) -> int:
        # One event loop for the whole read: Redis's layer finishes each receive in a task
        # of the loop that received, and would deliver the message again without it.
        await self.layer.send(self.channel, {"type": "test.marker"})
        count = 0
        while (await self.layer.receive(self.channel))["type"] != "test.marker":
            count += 1
        return count


@pytest.fixture
def listen() -> Iterator[Callable[[int], Doorbell]]:
    doorbells: list[Doorbell] = []

    def make(execution_id: int) -> Doorbell:
        doorbells.append(Doorbell(execution_id))
        return doorbells[-1]

    yield make
    for doorbell in doorbells:
        doorbell.close()


@pytest.fixture
def running(make_server, make_job) -> Execution:
    """A claimed execution whose one host has succeeded; the worker has not finished it yet."""
    execution = start(make_job("true", [make_server()]))
    assert services.claim_execution(execution.pk, "test-worker")
    host_run = execution.host_runs.get()
    assert services.start_host_run(host_run)
    assert services.finish_host_run(host_run, Status.SUCCEEDED, exit_code=0)
    return execution


def go_silent(execution: Execution) -> None:
    """The worker's last heartbeat was an hour ago."""
    Execution.objects.filter(pk=execution.pk).update(
        heartbeat_at=timezone.now() - timedelta(hours=1)
    )


def test_the_worker_finishes_once_and_rings_once(running, listen):
    doorbell = listen(running.pk)
    assert services.finish_execution(running.pk) is True
    finished_at = Execution.objects.get(pk=running.pk).finished_at
    assert services.finish_execution(running.pk) is False  # a duplicate finish
    running.refresh_from_db()
    assert (running.status, running.summary) == (Status.SUCCEEDED, "1 succeeded")
    assert running.finished_at == finished_at
    assert doorbell.rings() == 1


def test_a_finish_after_the_reaper_changes_nothing_and_stays_silent(running, listen):
    go_silent(running)
    assert services.reap_lost_executions() == [running.pk]
    doorbell = listen(running.pk)
    assert services.finish_execution(running.pk) is False
    running.refresh_from_db()
    assert running.status == Status.LOST
    assert running.summary.startswith("the worker stopped responding")
    assert doorbell.rings() == 0


def test_the_reaper_spares_a_run_whose_heartbeat_arrives_after_its_select(running):
    go_silent(running)
    with right_after_the_select(lambda: services.heartbeat(running.pk)):
        assert services.reap_lost_executions() == []
    running.refresh_from_db()
    assert running.status == Status.RUNNING
    assert services.finish_execution(running.pk) is True
    running.refresh_from_db()
    assert running.status == Status.SUCCEEDED


def test_the_reaper_spares_a_run_that_finishes_after_its_select(running):
    go_silent(running)
    with right_after_the_select(lambda: services.finish_execution(running.pk)):
        assert services.reap_lost_executions() == []
    running.refresh_from_db()
    assert (running.status, running.summary) == (Status.SUCCEEDED, "1 succeeded")
    assert running.host_runs.get().status == Status.SUCCEEDED


def test_a_late_heartbeat_does_not_revive_a_reaped_run(running):
    go_silent(running)
    assert services.reap_lost_executions() == [running.pk]
    assert services.heartbeat(running.pk) is False
    running.refresh_from_db()
    assert running.status == Status.LOST
    assert running.heartbeat_at < timezone.now() - timedelta(minutes=59)


def test_a_reaped_run_stops_its_hosts_at_its_next_heartbeat(
    make_server, make_job, settings, in_background
):
    settings.EXECUTION_HEARTBEAT_SECONDS = 0.2
    tag = unique_tag()
    execution = start(make_job(f"echo started; sleep {tag}", [make_server()]))
    worker = in_background(lambda: runner.run_execution(execution.pk))
    wait_until(lambda: remote_processes(tag), 15, "the script to start")

    # The reaper decided this worker was gone (as it does when heartbeats stall); the
    # worker is alive, and learns it at its next heartbeat.
    go_silent(execution)
    assert services.reap_lost_executions() == [execution.pk]
    worker.join(20)
    assert not worker.is_alive(), "the worker kept running a run that is not its own"
    wait_until(lambda: not remote_processes(tag), 5, "the remote process to be gone")
    execution.refresh_from_db()
    assert execution.status == Status.LOST
    assert HostRun.objects.get(execution=execution).error == "the worker running this was lost"


def test_finishing_closes_host_runs_whose_end_was_never_recorded(make_server, make_job):
    # A worker whose output writer lost the database could not record its hosts' ends.
    execution = start(make_job("true", [make_server(), make_server()]))
    assert services.claim_execution(execution.pk, "test-worker")
    done, unrecorded = execution.host_runs.all()
    assert services.start_host_run(done)
    assert services.start_host_run(unrecorded)
    assert services.finish_host_run(done, Status.TIMED_OUT)

    assert services.finish_execution(execution.pk) is True
    execution.refresh_from_db()
    assert (execution.status, execution.summary) == (Status.TIMED_OUT, "1 failed, 1 timed out")
    unrecorded.refresh_from_db()
    assert unrecorded.status == Status.FAILED
    assert unrecorded.error == "the worker could not record how this host ended"
