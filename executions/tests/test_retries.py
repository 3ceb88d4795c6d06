"""A failed run is tried again on the hosts that did not succeed, when due, once per attempt."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import Q
from rest_framework.test import APIClient

from accounts.models import ApiToken
from executions import reactions, retries, runner, services
from executions.models import Execution, Status, Trigger
from executions.tests.helpers import run, start
from jobs.models import ChainLink, ChainWhen
from jobs.parameters import clean_definitions

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

# Fails on the server named "bad", succeeds elsewhere.
SCRIPT = 'echo "on $TSUBAME_SERVER"; test "$TSUBAME_SERVER" != bad\n'


@pytest.fixture
def job(make_server, make_job):
    job = make_job(SCRIPT, [make_server(name="good"), make_server(name="bad")])
    job.retry_attempts, job.retry_delay_seconds, job.retry_backoff = 2, 30, 3.0
    job.save()
    return job


def ended(status: Status, job) -> Execution:
    """A run of `job` that ended as `status` without running anything."""
    execution = start(job)
    services.claim_execution(execution.pk, "test")
    assert services._finish(execution.pk, status, "made", guard=Q(status=Status.RUNNING))
    return Execution.objects.get(pk=execution.pk)


def due_time(execution: Execution):
    execution.refresh_from_db()
    return execution.retry_due_at


def test_a_failed_run_is_retried_on_its_failed_hosts_with_backoff_until_attempts_run_out(job):
    first = run(job)
    assert first.status == Status.FAILED
    reactions.process_events()
    assert due_time(first) == first.finished_at + timedelta(seconds=30)
    assert retries.start_due_retries(now=first.finished_at + timedelta(seconds=29)) == []

    [second_id] = retries.start_due_retries(now=first.retry_due_at)
    second = Execution.objects.get(pk=second_id)
    assert (second.trigger, second.retry_of, second.attempt) == (Trigger.RETRY, first, 2)
    assert [h.server_name for h in second.host_runs.all()] == ["bad"]
    assert due_time(first) is None
    runner.run_execution(second.pk)
    reactions.process_events()
    second.refresh_from_db()
    assert second.status == Status.FAILED
    assert due_time(second) == second.finished_at + timedelta(seconds=90)  # 30 s x 3

    [third_id] = retries.start_due_retries(now=second.retry_due_at)
    third = Execution.objects.get(pk=third_id)
    assert (third.retry_of, third.attempt) == (first, 3)
    runner.run_execution(third.pk)
    reactions.process_events()
    third.refresh_from_db()
    assert third.status == Status.FAILED
    assert due_time(third) is None  # 2 retries, 3 attempts: the last one
    assert retries.is_final_attempt(third)
    assert not retries.is_final_attempt(first)
    assert list(first.retries.order_by("attempt").values_list("attempt", flat=True)) == [2, 3]


@pytest.mark.parametrize("status", [Status.TIMED_OUT, Status.LOST])
def test_timed_out_and_lost_runs_are_retried(job, status):
    execution = ended(status, job)
    reactions.process_events()
    assert due_time(execution) is not None


@pytest.mark.parametrize("status", [Status.CANCELLED, Status.SUCCEEDED])
def test_cancelled_and_succeeded_runs_are_not_retried(job, status):
    execution = ended(status, job)
    reactions.process_events()
    assert due_time(execution) is None
    assert retries.is_final_attempt(execution)


def test_a_job_without_retries_is_not_retried(job):
    job.retry_attempts = 0
    job.save()
    execution = ended(Status.FAILED, job)
    reactions.process_events()
    assert due_time(execution) is None


def test_the_same_event_processed_twice_plans_one_retry(job):
    execution = ended(Status.FAILED, job)
    event = execution.events.get(kind=Status.FAILED)
    retries.plan_retry(event)
    planned = due_time(execution)
    [attempt] = retries.start_due_retries(now=planned)
    # The event again (its processor died before marking it done): the retry exists.
    retries.plan_retry(event)
    assert due_time(execution) is None
    assert Execution.objects.filter(retry_of=execution).count() == 1
    assert retries.start_due_retries(now=planned + timedelta(hours=1)) == []
    assert Execution.objects.get(pk=attempt).attempt == 2


def test_two_ticks_at_once_start_one_attempt(job):
    execution = ended(Status.FAILED, job)
    reactions.process_events()
    # Both ticks read the failed run as due before either starts its retry.
    seen_by_one = Execution.objects.get(pk=execution.pk)
    seen_by_other = Execution.objects.get(pk=execution.pk)
    assert retries.start_retry(seen_by_one) is not None
    assert retries.start_retry(seen_by_other) is None
    assert Execution.objects.filter(retry_of=execution).count() == 1


def test_a_run_with_secret_values_is_not_retried_and_says_so(job):
    job.parameters = clean_definitions([{"name": "TOKEN", "type": "secret"}])
    job.save()
    execution = start(job, parameters={"TOKEN": "tok-4242"})
    services.claim_execution(execution.pk, "test")
    services._finish(execution.pk, Status.FAILED, "1 failed", guard=Q(status=Status.RUNNING))
    reactions.process_events()
    execution.refresh_from_db()
    assert execution.retry_due_at is None
    assert execution.summary == "1 failed; not retried: its secret values are not kept"
    retries.plan_retry(execution.events.get(kind=Status.FAILED))  # the event again
    execution.refresh_from_db()
    assert execution.summary == "1 failed; not retried: its secret values are not kept"


def test_a_retry_that_cannot_start_says_why(job):
    execution = ended(Status.FAILED, job)
    reactions.process_events()
    job.enabled = False
    job.save()
    assert retries.start_due_retries(now=due_time(execution)) == []
    execution.refresh_from_db()
    assert execution.retry_due_at is None
    assert "not retried: job" in execution.summary
    assert execution.retry_abandoned
    assert retries.is_final_attempt(execution)
    reactions.process_events()  # its outcome heard again, as final: no new retry planned
    assert due_time(execution) is None


def test_the_next_job_of_a_chain_starts_after_the_final_attempt_only(job, make_job, make_server):
    next_job = make_job("echo next", [make_server(name="other")])
    ChainLink.objects.create(job=job, next_job=next_job, when=ChainWhen.FAILED)
    execution = ended(Status.FAILED, job)
    reactions.process_events()
    assert due_time(execution) is not None
    assert not Execution.objects.filter(job=next_job).exists()  # a retry is coming
    # The retry cannot start after all: this failed attempt was the last one.
    job.enabled = False
    job.save()
    retries.start_due_retries(now=due_time(execution))
    reactions.process_events()
    [chained] = Execution.objects.filter(job=next_job)
    assert (chained.parent, chained.trigger) == (execution, Trigger.CHAIN)


def test_retry_settings_in_the_api_and_attempts_on_the_pages(job, superuser, client):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(superuser, 'r')[1]}")
    response = api.patch(f"/api/v1/jobs/{job.pk}/", {"retry_attempts": 11}, format="json")
    assert response.status_code == 400
    assert "retry_attempts" in response.json()["errors"]
    response = api.patch(
        f"/api/v1/jobs/{job.pk}/",
        {"retry_attempts": 3, "retry_delay_seconds": 10, "retry_backoff": 1.5},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["retry_attempts"] == 3

    first = ended(Status.FAILED, job)
    reactions.process_events()
    [second] = retries.start_due_retries(now=due_time(first))
    body = api.get(f"/api/v1/executions/{second}/").json()
    assert (body["retry_of"], body["attempt"], body["trigger"]) == (first.pk, 2, "retry")

    client.force_login(superuser)
    assert (
        "3, first after 10.0 s, each next 1.5 times longer"
        in client.get(f"/jobs/{job.pk}/").content.decode()
    )
    page = client.get(f"/executions/{second}/").content.decode()
    assert f'2, a retry of <a href="/executions/{first.pk}/">#{first.pk}</a>' in page


def test_a_retry_the_overlap_rule_skips_is_given_up_and_the_failure_is_final(job):
    job.concurrency = "skip"
    job.save()
    execution = ended(Status.FAILED, job)
    reactions.process_events()
    in_the_way = start(job)  # a new run of the job is queued when the retry comes due
    assert retries.start_due_retries(now=due_time(execution)) == []
    execution.refresh_from_db()
    assert execution.retry_abandoned
    assert f"not retried: the job's overlap rule: skipped: run #{in_the_way.pk}" in (
        execution.summary
    )
    assert not Execution.objects.filter(retry_of=execution).exists()  # no skipped attempt left
    assert retries.is_final_attempt(execution)


def test_a_scheduled_runs_retry_keeps_its_start_deadline(job):
    execution = ended(Status.FAILED, job)
    slot = execution.created_at
    Execution.objects.filter(pk=execution.pk).update(
        scheduled_for=slot, start_by=slot + timedelta(minutes=10)
    )
    reactions.process_events()
    due = due_time(execution)
    [attempt] = retries.start_due_retries(now=due)
    # As late after its due time as the run could be after its slot.
    assert Execution.objects.get(pk=attempt).start_by == due + timedelta(minutes=10)
