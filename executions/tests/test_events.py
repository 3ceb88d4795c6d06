"""Every change of an execution's status writes one event, by whichever competitor won it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from executions import services
from executions.models import Execution, ExecutionEvent, Status
from executions.tests.helpers import right_after_the_select, start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def events(execution: Execution) -> list[str]:
    return list(
        ExecutionEvent.objects.filter(execution=execution)
        .order_by("id")
        .values_list("kind", flat=True)
    )


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
    Execution.objects.filter(pk=execution.pk).update(
        heartbeat_at=timezone.now() - timedelta(hours=1)
    )


def at_once(*competitors: Callable[[], object]) -> list[object]:
    """Run the competitors in threads released together; what each returned."""
    barrier = threading.Barrier(len(competitors))
    results: list[object] = [None] * len(competitors)

    def run(n: int) -> None:
        try:
            barrier.wait(10)
            results[n] = competitors[n]()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(competitors))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_a_claim_writes_one_started_event(make_server, make_job):
    execution = start(make_job("true", [make_server()]))
    assert events(execution) == []
    assert services.claim_execution(execution.pk, "one")
    assert services.claim_execution(execution.pk, "two") is None
    assert events(execution) == ["started"]


def test_two_finishers_make_one_outcome_and_one_event(running):
    # A duplicate finish gets in between the other's select and its guarded update.
    competitor: list[bool] = []
    with right_after_the_select(lambda: competitor.append(services.finish_execution(running.pk))):
        mine = services.finish_execution(running.pk)
    assert (competitor, mine) == ([True], False)
    assert events(running) == ["started", "succeeded"]


def test_two_finishers_at_once_make_one_event(running):
    results = at_once(
        lambda: services.finish_execution(running.pk),
        lambda: services.finish_execution(running.pk),
    )
    assert sorted(results) == [False, True]
    assert events(running) == ["started", "succeeded"]


def test_a_finish_between_the_reapers_select_and_update_wins_with_one_event(running):
    go_silent(running)
    with right_after_the_select(lambda: services.finish_execution(running.pk)):
        assert services.reap_lost_executions() == []
    assert events(running) == ["started", "succeeded"]


def test_a_finish_after_the_reaper_writes_no_event(running):
    go_silent(running)
    assert services.reap_lost_executions() == [running.pk]
    assert services.finish_execution(running.pk) is False
    assert events(running) == ["started", "lost"]


def test_finish_and_reaper_at_once_make_one_event(running):
    go_silent(running)
    finished, reaped = at_once(
        lambda: services.finish_execution(running.pk), services.reap_lost_executions
    )
    assert finished != bool(reaped)
    assert events(running) == ["started", "succeeded" if finished else "lost"]


def test_a_cancel_before_the_claim_wins_with_one_event(make_server, make_job):
    execution = start(make_job("true", [make_server()]))
    assert services.cancel_execution(execution)
    assert services.claim_execution(execution.pk, "late-worker") is None
    assert services.cancel_execution(execution) is False
    assert events(execution) == ["cancelled"]


def test_a_claim_before_the_cancel_leaves_the_outcome_to_the_worker(make_server, make_job):
    execution = start(make_job("true", [make_server()]))
    assert services.claim_execution(execution.pk, "worker")
    assert services.cancel_execution(execution)  # flagged: the worker stops its hosts
    assert events(execution) == ["started"]
    host_run = execution.host_runs.get()
    assert services.start_host_run(host_run)
    assert services.finish_host_run(host_run, Status.CANCELLED)
    assert services.finish_execution(execution.pk)
    assert events(execution) == ["started", "cancelled"]


@pytest.mark.parametrize("attempt", range(3))
def test_cancel_and_claim_at_once_make_one_event(make_server, make_job, attempt):
    execution = start(make_job("true", [make_server()]))
    cancelled, claimed = at_once(
        lambda: services.cancel_execution(execution),
        lambda: services.claim_execution(execution.pk, "worker"),
    )
    assert cancelled  # cancelled at once, or flagged for the worker
    execution.refresh_from_db()
    if claimed:
        assert (execution.status, events(execution)) == (Status.RUNNING, ["started"])
        assert execution.cancel_requested_at is not None
    else:
        assert (execution.status, events(execution)) == (Status.CANCELLED, ["cancelled"])
