"""Each event's reactions happen once: two processors at once, a reaction that raises, a
processor that died holding an event."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from executions import reactions, services
from executions.models import Execution, ExecutionEvent, Status
from executions.tests.helpers import right_after_the_select, start
from jobs.models import Concurrency

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def seen() -> Iterator[list[tuple[int, str]]]:
    """(event id, kind) of each call of a reaction registered for every kind."""
    calls: list[tuple[int, str]] = []
    registered = reactions.reaction(*ExecutionEvent.Kind.values)(
        lambda event: calls.append((event.pk, event.kind))
    )
    yield calls
    reactions._reactions[:] = [r for r in reactions._reactions if r[1] is not registered]


@pytest.fixture
def raises_once() -> Iterator[list[int]]:
    """A reaction after the built-in ones that fails the first time it sees an event."""
    failed: list[int] = []

    def flaky(event: ExecutionEvent) -> None:
        if event.pk not in failed:
            failed.append(event.pk)
            raise RuntimeError("the processor died here")

    reactions.reaction(*ExecutionEvent.Kind.values)(flaky)
    yield failed
    reactions._reactions[:] = [r for r in reactions._reactions if r[1] is not flaky]


def lease_passes() -> None:
    """As if EXECUTION_EVENT_RETRY_SECONDS had passed since every claim."""
    ExecutionEvent.objects.exclude(leased_until=None).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )


def test_each_event_is_processed_once(make_server, make_job, seen):
    execution = start(make_job("true", [make_server()]))
    services.cancel_execution(execution)
    event = ExecutionEvent.objects.get(execution=execution)

    assert reactions.process_events() == [event.pk]
    assert reactions.process_events() == []
    assert seen == [(event.pk, "cancelled")]
    event.refresh_from_db()
    assert event.processed_at is not None
    assert event.attempts == 1


def test_two_processors_at_once_react_once(make_server, make_job, seen):
    execution = start(make_job("true", [make_server()]))
    services.cancel_execution(execution)
    event = ExecutionEvent.objects.get(execution=execution)
    competitor: list[int] = []

    # Another worker's processor claims it between this one's select and its claim.
    with right_after_the_select(
        lambda: competitor.extend(reactions.process_events()), table="executions_executionevent"
    ):
        mine = reactions.process_events()

    assert (competitor, mine) == ([event.pk], [])
    assert seen == [(event.pk, "cancelled")]


def test_a_failed_reaction_is_retried_after_the_lease_and_its_effects_happen_once(
    make_server, make_job, queued, raises_once
):
    job = make_job("true", [make_server()], concurrency=Concurrency.QUEUE)
    first, waiting = start(job), start(job)
    services.cancel_execution(first)
    event = ExecutionEvent.objects.get(execution=first)

    # The built-in reaction handed the waiting run over; then the processor "died".
    assert reactions.process_events() == []
    assert queued == [first.pk, waiting.pk]
    assert raises_once == [event.pk]
    # Held by its lease: not retried by the next round, nor by another worker, yet.
    assert reactions.process_events() == []

    lease_passes()
    assert reactions.process_events() == [event.pk]
    assert queued == [first.pk, waiting.pk]  # handed over once
    event.refresh_from_db()
    assert event.attempts == 2
    assert Execution.objects.get(pk=waiting.pk).status == Status.QUEUED


def test_an_event_whose_processor_died_is_taken_by_the_next_after_its_lease(
    make_server, make_job, seen, settings
):
    execution = start(make_job("true", [make_server()]))
    services.cancel_execution(execution)
    event = ExecutionEvent.objects.get(execution=execution)
    # Claimed by a processor that then died: nothing reacted, nothing marked it processed.
    ExecutionEvent.objects.filter(pk=event.pk).update(
        leased_until=timezone.now() + timedelta(seconds=settings.EXECUTION_EVENT_RETRY_SECONDS),
        attempts=1,
    )
    assert reactions.process_events() == []
    assert seen == []

    lease_passes()
    assert reactions.process_events() == [event.pk]
    assert seen == [(event.pk, "cancelled")]
