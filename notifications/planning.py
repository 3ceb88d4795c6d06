"""Which channels hear of an execution's event, and what they are told.

The reaction to every execution event (`plan_notifications`) finds the rules that cover the
run's job, decides per channel which event the run's outcome is for it (a failure may be
"failed" for one channel and "failed 3 times in a row" for another, or nothing), and writes
one pending Delivery per channel. A worker's sender sends them (notifications.sending).

Rules: a job's own rules apply to it; a team's default rules (no job) apply to each job that
has no rule of its own, so a job can be routed elsewhere, or muted with a rule that names no
event. A retried run is one outcome: a failed attempt that will be retried notifies nobody,
and its retries' `started` neither; the last attempt's outcome is the run's.

The reaction may run twice for one event, and a failure whose retry was given up has two
events: the unique (execution, outcome, channel) of a delivery makes each message once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Coalesce

from executions.models import Execution, ExecutionEvent, Status
from executions.reactions import reaction
from executions.retries import is_final_attempt
from notifications import messages
from notifications.models import Delivery, Event, NotificationRule

Kind = ExecutionEvent.Kind
FAILURES = (Status.FAILED, Status.TIMED_OUT, Status.LOST)
# Outcomes that make or break a run of failures; a cancelled, skipped or missed run neither.
VERDICTS = (Status.SUCCEEDED, *FAILURES)
# Of two events a channel's rules pick for one outcome, it is told the more telling.
PRIORITY = [Event.FAILED_IN_A_ROW, Event.FAILED, Event.RECOVERED, Event.SUCCEEDED]
PLAIN = {
    Kind.STARTED: Event.STARTED,
    Kind.CANCELLED: Event.CANCELLED,
    Kind.SKIPPED: Event.SKIPPED,
    Kind.MISSED: Event.MISSED,
}


def rules_for(execution: Execution) -> list[NotificationRule]:
    """The enabled rules of enabled channels that cover `execution`'s job."""
    rules = list(
        NotificationRule.objects.filter(channel__team_id=execution.team_id).select_related(
            "channel"
        )
    )
    own = [rule for rule in rules if rule.job_id is not None and rule.job_id == execution.job_id]
    chosen = own or [rule for rule in rules if rule.job_id is None]
    return [rule for rule in chosen if rule.enabled and rule.channel.enabled]


def earlier_verdicts(execution: Execution, limit: int) -> list[str]:
    """The statuses of the job's runs that ended before `execution`, newest first: each
    run's last attempt only, and only successes and failures."""
    if execution.job_id is None or execution.finished_at is None:
        return []
    later_attempts = Execution.objects.filter(
        retry_of_id=Coalesce(OuterRef("retry_of_id"), OuterRef("pk")),
        attempt=OuterRef("attempt") + 1,
    )
    earlier = (
        Execution.objects.filter(job_id=execution.job_id, status__in=VERDICTS)
        .filter(
            Q(finished_at__lt=execution.finished_at)
            | Q(finished_at=execution.finished_at, pk__lt=execution.pk)
        )
        # Attempts that were, or are about to be, retried are not a run's outcome...
        .filter(retry_due_at=None)
        .exclude(Exists(later_attempts.exclude(status=Status.MISSED)))
        # ...unless the retry was missed: no worker started it in time.
        .annotate(retry_missed=Exists(later_attempts.filter(status=Status.MISSED)))
        .only("status", "attempt", "retry_abandoned", "parameter_definitions", "parameters")
        .order_by("-finished_at", "-id")
    )
    verdicts = []
    # A few more than needed: a failure whose retry another worker is planning right now
    # (no mark yet) is left out below.
    for earlier_run in earlier[: limit + 10]:
        earlier_run.job = execution.job
        if earlier_run.retry_missed or is_final_attempt(earlier_run):
            verdicts.append(earlier_run.status)
    return verdicts[:limit]


def leading_failures(statuses: list[str]) -> int:
    count = 0
    for status in statuses:
        if status not in FAILURES:
            break
        count += 1
    return count


def event_for(rule: NotificationRule, kind: str, failures_before: Callable[[], int]) -> str | None:
    """What `rule` makes of an execution event of `kind` (None: nothing to say).
    `failures_before` counts the job's failures in a row just before this run."""
    wanted = set(rule.events)
    if kind in PLAIN:
        return PLAIN[kind] if PLAIN[kind] in wanted else None
    if kind == Kind.SUCCEEDED:
        # A rule that speaks only from the Nth failure on says "recovered" only after that.
        quiet = Event.FAILED_IN_A_ROW in wanted and Event.FAILED not in wanted
        if Event.RECOVERED in wanted and failures_before() >= (rule.after_failures if quiet else 1):
            return Event.RECOVERED
        return Event.SUCCEEDED if Event.SUCCEEDED in wanted else None
    if kind in FAILURES:
        if Event.FAILED_IN_A_ROW in wanted and failures_before() + 1 == rule.after_failures:
            return Event.FAILED_IN_A_ROW
        return Event.FAILED if Event.FAILED in wanted else None
    return None


def is_notified(execution: Execution, kind: str) -> bool:
    """Whether an event of `kind` is the run's to tell: not a retry's start, nor the failure
    of an attempt that will be retried."""
    if kind == Kind.STARTED:
        return execution.attempt == 1
    return kind not in FAILURES or is_final_attempt(execution)


def told_outcome(event: ExecutionEvent) -> tuple[Execution, str] | None:
    """The execution and the outcome an event tells of, if any. A retry that no worker
    started in time (missed) tells of the failure of the attempt before it, which is the
    run's outcome after all."""
    execution, kind = event.execution, event.kind
    if kind == Kind.MISSED and execution.retry_of_id is not None:
        before = Execution.objects.filter(
            Q(pk=execution.retry_of_id, attempt=execution.attempt - 1)
            | Q(retry_of_id=execution.retry_of_id, attempt=execution.attempt - 1)
        ).get()
        return before, before.status
    return (execution, kind) if is_notified(execution, kind) else None


def plan(execution: Execution, kind: str, rules: list[NotificationRule]) -> list[Delivery]:
    """The deliveries an event of `kind` of `execution` calls for under `rules` (not
    saved)."""
    deepest = max(rule.after_failures for rule in rules)

    @functools.cache
    def failures_before() -> int:
        return leading_failures(earlier_verdicts(execution, deepest))

    chosen: dict[int, tuple[str, NotificationRule]] = {}
    for rule in rules:
        event = event_for(rule, kind, failures_before)
        if event is None:
            continue
        current = chosen.get(rule.channel_id)
        if current is None or _rank(event) < _rank(current[0]):
            chosen[rule.channel_id] = (event, rule)
    composed: dict[tuple[str, int], dict] = {}
    deliveries = []
    for event, rule in chosen.values():
        in_a_row = failures_before() + 1 if event == Event.FAILED_IN_A_ROW else 0
        key = (event, in_a_row)
        if key not in composed:
            composed[key] = messages.compose(execution, event, in_a_row=in_a_row)
        deliveries.append(
            Delivery(
                channel=rule.channel,
                execution=execution,
                outcome=kind,
                event=event,
                **composed[key],
            )
        )
    return deliveries


def _rank(event: str) -> int:
    return PRIORITY.index(event) if event in PRIORITY else len(PRIORITY)


@reaction(*Kind.values)
def plan_notifications(event: ExecutionEvent) -> None:
    """Write the pending deliveries that `event` calls for, once per (outcome, channel)."""
    told = told_outcome(event)
    if told is None:
        return
    execution, kind = told
    rules = rules_for(execution)
    if not rules:
        return
    execution = Execution.objects.select_related(
        "team", "job", "triggered_by", "schedule", "webhook", "parent"
    ).get(pk=execution.pk)
    deliveries = plan(execution, kind, rules)
    if deliveries:
        Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
