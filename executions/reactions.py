"""What happens because an execution started or ended: reactions to its events.

The transitions in executions.services write an ExecutionEvent in the transaction that
changes the status, and only when they win it, so each change has exactly one event.
`process_events`, called by every worker's reaper loop, hands each event to the reactions
registered for its kind. Nothing else reacts to status changes, and no reaction runs inside
a run's critical path.

Delivery is at least once, and each reaction makes it happen once:
- A processor claims an event with a lease: a conditional update that only one of any
  number of processors wins, `filter(pk=..., processed_at=None, lease free or expired)
  .update(leased_until=now + EXECUTION_EVENT_RETRY_SECONDS)`. It runs the reactions, then
  marks the event processed.
- A processor that dies halfway, or a reaction that raises, leaves the event unprocessed;
  once its lease has passed, the next round runs all of its reactions again.
- So every reaction is idempotent by its own guarded update on the state it changes (the
  job's waiting run is handed over by `filter(status=WAITING).update(status=QUEUED)`), and
  a second call for the same event changes nothing.
Claiming by setting `processed_at` before acting, as healthchecks does with its flips,
would be at most once: a processor that died after the claim would lose the reaction.
A reaction slower than the lease can run twice at the same time; the guarded updates keep
that harmless too, but reactions should be quick and hand long work to the task queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.db.models.functions import Now

from executions import services
from executions.models import ExecutionEvent

logger = logging.getLogger(__name__)

Kind = ExecutionEvent.Kind
Reaction = Callable[[ExecutionEvent], None]

_reactions: list[tuple[frozenset[str], Reaction]] = []

# Every outcome of a run that was queued or running; a skipped run never was.
ENDED = (Kind.SUCCEEDED, Kind.FAILED, Kind.CANCELLED, Kind.TIMED_OUT, Kind.LOST)


def reaction(*kinds: str) -> Callable[[Reaction], Reaction]:
    """Register the decorated function to be called with each event of these kinds.

    It must be idempotent (see the module's docstring): it may be called again for an
    event it already handled.
    """

    def register(function: Reaction) -> Reaction:
        _reactions.append((frozenset(kinds), function))
        return function

    return register


def reactions_to(kind: str) -> list[Reaction]:
    return [function for kinds, function in _reactions if kind in kinds]


def process_events(limit: int = 100) -> list[int]:
    """Run the reactions to up to `limit` unprocessed events, oldest first; the ids of the
    events this call processed. Safe to run from any number of processes at once."""
    due = ExecutionEvent.objects.filter(
        Q(leased_until=None) | Q(leased_until__lt=Now()), processed_at=None
    )
    processed = []
    for event_id in list(due.order_by("id").values_list("pk", flat=True)[:limit]):
        lease = Now() + timedelta(seconds=settings.EXECUTION_EVENT_RETRY_SECONDS)
        # Still due now: another processor that claimed it since the select keeps it.
        if not due.filter(pk=event_id).update(leased_until=lease, attempts=F("attempts") + 1):
            continue
        event = ExecutionEvent.objects.select_related("execution").get(pk=event_id)
        try:
            for function in reactions_to(event.kind):
                function(event)
        except Exception:
            logger.exception(
                "reacting to event %s (%s of execution %s, attempt %s) failed; it is retried "
                "in %s s",
                event.pk,
                event.kind,
                event.execution_id,
                event.attempts,
                settings.EXECUTION_EVENT_RETRY_SECONDS,
            )
            continue
        ExecutionEvent.objects.filter(pk=event_id, processed_at=None).update(processed_at=Now())
        processed.append(event_id)
    return processed


@reaction(*ENDED)
def start_the_waiting_run(event: ExecutionEvent) -> None:
    """A job whose runs queue (Job.concurrency): its waiting run starts when the one before
    it ends."""
    if event.execution.job_id is not None:
        services.start_waiting_execution(event.execution.job_id)
