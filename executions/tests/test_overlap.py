"""A job's runs overlap, skip or queue (Job.concurrency), from every face alike."""

from __future__ import annotations

import contextlib
import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEvent, Role
from executions import reactions, services
from executions.models import Execution, ExecutionEvent, Status
from executions.tests.helpers import start
from jobs.models import Concurrency
from jobs.parameters import clean_definitions

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def finish(execution: Execution, status: Status = Status.SUCCEEDED) -> None:
    """Run it to the end as a worker would (claimed unless it was), without a server."""
    if status_of(execution) == Status.QUEUED:
        assert services.claim_execution(execution.pk, "test-worker")
    for host_run in execution.host_runs.all():
        assert services.start_host_run(host_run)
        assert services.finish_host_run(host_run, status)
    assert services.finish_execution(execution.pk)


def status_of(execution: Execution) -> Status:
    return Execution.objects.get(pk=execution.pk).status


def test_allow_runs_alongside(make_server, make_job, queued):
    job = make_job("true", [make_server()])
    assert job.concurrency == Concurrency.ALLOW
    first, second = start(job), start(job)
    assert (status_of(first), status_of(second)) == (Status.QUEUED, Status.QUEUED)
    assert queued == [first.pk, second.pk]


def test_skip_records_a_skipped_run_while_one_is_queued_or_running(make_server, make_job, queued):
    job = make_job("true", [make_server(), make_server()], concurrency=Concurrency.SKIP)
    first = start(job)
    skipped = start(job)

    assert skipped.status == Status.SKIPPED
    assert skipped.summary == f"skipped: run #{first.pk} of this job was queued"
    assert skipped.finished_at is not None
    assert skipped.started_at is None
    assert [h.status for h in skipped.host_runs.all()] == [Status.SKIPPED, Status.SKIPPED]
    assert queued == [first.pk]
    assert list(skipped.events.values_list("kind", flat=True)) == ["skipped"]
    audit = AuditEvent.objects.get(action="run", object_id=str(skipped.pk))
    assert audit.details["skipped_for"] == first.pk

    assert services.claim_execution(first.pk, "worker")
    assert status_of(start(job)) == Status.SKIPPED  # running, too
    finish(first)
    assert status_of(start(job)) == Status.QUEUED


def test_skip_does_not_keep_secret_values(make_server, make_job):
    job = make_job(
        "true",
        [make_server()],
        concurrency=Concurrency.SKIP,
        parameters=clean_definitions([{"name": "TOKEN", "type": "secret"}]),
    )
    start(job, parameters={"TOKEN": "hunter2!"})
    skipped = start(job, parameters={"TOKEN": "hunter2!"})
    skipped.refresh_from_db()
    assert skipped.status == Status.SKIPPED
    assert skipped.secret_parameters is None
    assert skipped.parameters == {"TOKEN": None}


def test_queue_waits_for_the_run_before_it_and_starts_when_it_ends(
    make_server, make_job, queued, settings
):
    settings.EXECUTION_REQUEUE_AFTER_SECONDS = 0
    job = make_job("true", [make_server()], concurrency=Concurrency.QUEUE)
    first = start(job)
    waiting = start(job)
    assert waiting.status == Status.WAITING
    assert waiting.summary == f"waiting for run #{first.pk} to finish"
    assert queued == [first.pk]

    # Neither the reaper's requeue nor a stray task starts it early.
    assert services.requeue_waiting_executions() == [first.pk]
    assert services.claim_execution(waiting.pk, "worker") is None
    queued.clear()

    finish(first)
    assert status_of(waiting) == Status.WAITING  # until its event is processed
    reactions.process_events()
    assert status_of(waiting) == Status.QUEUED
    assert queued == [waiting.pk]
    assert Execution.objects.get(pk=waiting.pk).summary == ""

    # The next request waits for the one that just started.
    assert status_of(start(job)) == Status.WAITING


def test_queue_keeps_one_waiting_run_and_later_requests_join_it(
    make_server, make_job, queued, superuser
):
    job = make_job(
        "true",
        [make_server()],
        concurrency=Concurrency.QUEUE,
        parameters=clean_definitions([{"name": "VERSION"}]),
    )
    first = start(job, parameters={"VERSION": "1"})
    waiting = start(job, parameters={"VERSION": "2"})
    joined = services.start_execution(
        job, trigger=services.Trigger.UI, triggered_by=superuser, parameters={"VERSION": "3"}
    )
    assert joined.pk == waiting.pk
    assert joined.parameters == {"VERSION": "2"}  # what was asked first is what runs
    assert Execution.objects.filter(job=job).count() == 2
    audit = AuditEvent.objects.filter(action="run", object_id=str(waiting.pk)).order_by("pk").last()
    assert (audit.actor, audit.details["joined"]) == (superuser, waiting.pk)
    assert queued == [first.pk]


def test_a_cancelled_waiting_run_never_starts(make_server, make_job, queued):
    job = make_job("true", [make_server()], concurrency=Concurrency.QUEUE)
    first, waiting = start(job), start(job)
    assert services.cancel_execution(waiting)
    assert status_of(waiting) == Status.CANCELLED
    reactions.process_events()
    finish(first)
    reactions.process_events()
    assert status_of(waiting) == Status.CANCELLED
    assert queued == [first.pk]


def test_a_waiting_run_starts_when_the_run_before_it_is_cancelled_or_lost(
    make_server, make_job, queued
):
    job = make_job("true", [make_server()], concurrency=Concurrency.QUEUE)
    first, waiting = start(job), start(job)
    assert services.cancel_execution(first)
    reactions.process_events()
    assert status_of(waiting) == Status.QUEUED
    assert queued == [first.pk, waiting.pk]


def test_deleting_a_job_cancels_its_waiting_run(make_server, make_job, superuser):
    from jobs.services import delete_job

    job = make_job("true", [make_server()], concurrency=Concurrency.QUEUE)
    first, waiting = start(job), start(job)
    delete_job(job, actor=superuser, source=services.Trigger.UI)
    assert status_of(waiting) == Status.CANCELLED
    assert status_of(first) == Status.QUEUED  # its run goes on, as before


def test_the_api_answers_201_with_the_skipped_run(make_server, make_job, make_member, team):
    job = make_job("true", [make_server()], concurrency=Concurrency.SKIP)
    first = start(job)
    client = APIClient()
    token = ApiToken.issue(make_member(team, Role.OPERATOR), "test")[1]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = client.post(f"/api/v1/jobs/{job.pk}/run/", {}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "skipped"
    assert body["summary"] == f"skipped: run #{first.pk} of this job was queued"
    assert client.get(f"/api/v1/jobs/{job.pk}/").json()["concurrency"] == "skip"


def test_the_api_answers_201_with_the_waiting_run_it_joined(
    make_server, make_job, make_member, team
):
    job = make_job("true", [make_server()], concurrency=Concurrency.QUEUE)
    start(job)
    waiting = start(job)
    client = APIClient()
    token = ApiToken.issue(make_member(team, Role.OPERATOR), "test")[1]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = client.post(f"/api/v1/jobs/{job.pk}/run/", {}, format="json")

    assert response.status_code == 201
    assert (response.json()["id"], response.json()["status"]) == (waiting.pk, "waiting")


@pytest.mark.parametrize("concurrency", [Concurrency.SKIP, Concurrency.QUEUE])
def test_two_requests_at_the_same_moment_start_one_run(
    make_server, make_job, monkeypatch, concurrency
):
    """Both requests look for a run in the way before either has recorded its own; each
    waits for the other right after its look. With the job locked, the second cannot look
    until the first has recorded its run, and the meeting never happens. (On SQLite the
    transactions' write lock does that too; on PostgreSQL only the row lock does.)"""
    job = make_job("true", [make_server()], concurrency=concurrency)
    meeting = threading.Barrier(2, timeout=2)
    look = services._runs_in_the_way

    def look_then_meet(job_id: int) -> list[Execution]:
        found = look(job_id)
        # Broken after its timeout when the other request is held by the lock.
        with contextlib.suppress(threading.BrokenBarrierError):
            meeting.wait()
        return found

    monkeypatch.setattr(services, "_runs_in_the_way", look_then_meet)
    started: list[Execution] = []

    def request() -> None:
        try:
            started.append(start(job))
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    second = Status.SKIPPED if concurrency == Concurrency.SKIP else Status.WAITING
    statuses = sorted(Execution.objects.filter(job=job).values_list("status", flat=True))
    assert statuses == sorted([Status.QUEUED, second])
    assert len(started) == 2
    assert ExecutionEvent.objects.filter(execution__job=job).count() == (
        1 if concurrency == Concurrency.SKIP else 0
    )


def test_the_dashboard_counts_a_skipped_run_as_neither_success_nor_failure(
    make_server, make_job, client, superuser
):
    job = make_job("true", [make_server()], concurrency=Concurrency.SKIP)
    start(job)
    assert start(job).status == Status.SKIPPED
    client.force_login(superuser)
    counts = client.get("/").context["counts"]
    assert (counts["total"], counts["succeeded"], counts["failed"]) == (2, 0, 0)


def test_the_workers_reaper_round_starts_the_waiting_run(make_server, make_job, queued):
    from executions.management.commands import worker

    job = make_job("true", [make_server()], concurrency=Concurrency.QUEUE)
    first, waiting = start(job), start(job)
    finish(first)
    worker._look_after_executions()
    assert status_of(waiting) == Status.QUEUED
    assert queued == [first.pk, waiting.pk]


def test_a_run_that_ends_while_the_next_is_being_made_to_wait_still_starts_it(
    make_server, make_job, monkeypatch, queued
):
    """The run before ends, and its event is processed, between the new request's look and
    its commit: the reaction waits for the job's lock, and then sees the waiting run. (On
    SQLite the end itself waits for the write lock; on PostgreSQL only the row lock does.)"""
    job = make_job("true", [make_server()], concurrency=Concurrency.QUEUE)
    first = start(job)
    assert services.claim_execution(first.pk, "worker")
    look = services._runs_in_the_way
    competitor: list[threading.Thread] = []

    def end_first() -> None:
        try:
            finish(first)
            reactions.process_events()
        finally:
            connection.close()

    def look_then_end_first(job_id: int) -> list[Execution]:
        found = look(job_id)
        if not competitor:
            competitor.append(threading.Thread(target=end_first))
            competitor[0].start()
            competitor[0].join(2)  # held by the lock until this request commits
        return found

    monkeypatch.setattr(services, "_runs_in_the_way", look_then_end_first)
    waiting = start(job)
    assert waiting.status == Status.WAITING
    competitor[0].join(30)
    assert not competitor[0].is_alive()

    assert status_of(first) == Status.SUCCEEDED
    assert status_of(waiting) == Status.QUEUED
    assert queued == [first.pk, waiting.pk]
