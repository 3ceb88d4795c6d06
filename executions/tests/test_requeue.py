"""A queued execution whose task went missing is queued again; claimed ones are not."""

from datetime import timedelta

import pytest
from django.utils import timezone

from executions import services
from executions.models import Execution
from executions.tests.helpers import right_after_the_select, start

pytestmark = pytest.mark.django_db


def test_waiting_execution_is_handed_to_the_broker_again(make_server, make_job, settings, queued):
    settings.EXECUTION_REQUEUE_AFTER_SECONDS = 60
    job = make_job("true", [make_server()])
    stale, _recent, claimed = start(job), start(job), start(job)
    old = timezone.now() - timedelta(minutes=5)
    Execution.objects.filter(pk__in=[stale.pk, claimed.pk]).update(enqueued_at=old)
    services.claim_execution(claimed.pk, "somewhere")
    queued.clear()

    assert services.requeue_waiting_executions() == [stale.pk]
    assert queued == [stale.pk]
    # Its clock restarts: it is not queued again on the next round.
    assert services.requeue_waiting_executions() == []


def test_execution_the_broker_could_not_take_is_retried_at_once(
    make_server, make_job, settings, queued
):
    settings.EXECUTION_REQUEUE_AFTER_SECONDS = 300
    execution = start(make_job("true", [make_server()]))
    waiting = {"enqueued_at": None, "summary": f"{services.WAITING_FOR_QUEUE}: refused"}
    Execution.objects.filter(pk=execution.pk).update(**waiting)
    queued.clear()

    assert services.requeue_waiting_executions() == [execution.pk]
    assert queued == [execution.pk]
    execution.refresh_from_db()
    assert execution.summary == ""
    assert services.requeue_waiting_executions() == []


def test_two_reapers_hand_a_waiting_execution_over_once(make_server, make_job, queued):
    execution = start(make_job("true", [make_server()]))
    Execution.objects.filter(pk=execution.pk).update(enqueued_at=None)
    queued.clear()
    competitor: list[int] = []

    # Another worker's reaper requeues it between this one's select and its update.
    with right_after_the_select(lambda: competitor.extend(services.requeue_waiting_executions())):
        mine = services.requeue_waiting_executions()

    assert (competitor, mine) == ([execution.pk], [])
    assert queued == [execution.pk]
