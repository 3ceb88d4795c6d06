"""Hosts that ask the output writer for the same work at the same moment share it."""

from __future__ import annotations

import threading

import pytest

from executions import services
from executions.models import Execution, HostRun, Status
from executions.output import OutputWriter
from executions.tests.helpers import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def test_hosts_that_start_at_the_same_moment_start_in_one_transaction(team):
    execution = Execution.objects.create(
        team=team, job_name="j", script="", interpreter="/bin/sh", max_parallel=10, trigger="system"
    )
    runs = [
        HostRun.objects.create(execution=execution, server_name=f"h{i}", address="a")
        for i in range(10)
    ]
    busy, free = threading.Event(), threading.Event()
    batches: list[int] = []
    started: dict[int, bool] = {}

    def other_work(arguments: list[None]) -> list[None]:
        busy.set()
        free.wait(30)
        return [None] * len(arguments)

    def start(host_runs: list[HostRun]) -> list[bool]:
        batches.append(len(host_runs))
        queued = services.start_host_runs(host_runs)
        return [host_run.pk in queued for host_run in host_runs]

    def host(run: HostRun) -> None:
        started[run.pk] = writer.call_together(start, run)

    with OutputWriter(execution.pk) as writer:
        threading.Thread(target=writer.call_together, args=(other_work, None)).start()
        busy.wait(30)
        # While the writer's thread is busy, every host asks to start.
        threads = [threading.Thread(target=host, args=(run,)) for run in runs]
        for thread in threads:
            thread.start()
        wait_until(lambda: writer._queue.qsize() == len(runs), 30, "every host to ask")
        free.set()
        for thread in threads:
            thread.join(30)

    assert batches == [len(runs)]
    assert started == {run.pk: True for run in runs}
    assert set(execution.host_runs.values_list("status", flat=True)) == {Status.RUNNING}
    # Started once: asking again starts nothing.
    assert services.start_host_runs(runs) == set()
