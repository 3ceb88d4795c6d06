"""Retention: what each team keeps of its finished runs, and removing the rest in batches.

A team says (accounts.Team) how many days after a run ends its output is kept, and the run
itself (a failed, timed-out or lost run: at least as long); the latest `keep_last_runs`
finished runs of each job are kept whatever their age. Removing output deletes the run's
LogChunk rows and marks it `output_pruned_at`; removing a run deletes it with everything
that hangs on it (host runs, output, events, notification deliveries), and what merely
points at it (a re-run, a chained run or a retry of it, a webhook delivery) forgets it.

Only settled runs are touched: finished, with no event still to react to, no retry due and
no notification still being sent. Waiting, queued and running executions never are.

Every write is a short transaction of at most PRUNE_BATCH_SIZE rows, so that a live run's
heartbeat and output wait behind none for long, also on SQLite, where one writer at a time
holds the whole database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, models, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Sum, Window
from django.db.models.functions import Coalesce, Greatest, Now, RowNumber
from django.utils import timezone

from accounts.models import Team
from executions.models import (
    FINISHED_STATUSES,
    Execution,
    ExecutionEvent,
    LogChunk,
    OutputTotal,
    Status,
)
from notifications.models import Delivery

logger = logging.getLogger(__name__)

# Kept for `failed_execution_retention_days` instead of `execution_retention_days`.
FAILED_STATUSES = (Status.FAILED, Status.TIMED_OUT, Status.LOST)
# SQLite's busy handler polls a waiting writer's lock up to every 100 ms: a pruner that
# began its next batch at once could take the lock again each time before a live run's
# writer looked. Pausing this long after each batch lets the writers in.
SQLITE_PAUSE_SECONDS = 0.1


@dataclass
class TeamPrune:
    """What pruning a team removes (or, in a dry run, would)."""

    team: str
    executions: int = 0  # runs removed, with their output
    outputs: int = 0  # further runs whose output is removed, the runs themselves kept
    chunks: int = 0  # output chunks removed, of both
    bytes: int = 0  # output bytes removed, of both

    def describe(self, *, dry_run: bool = False) -> str:
        verb = "would remove" if dry_run else "removed"
        return (
            f"{self.team}: {verb} {self.executions} executions and the output of "
            f"{self.outputs} more ({self.chunks} output chunks, {self.bytes} bytes)"
        )

    def __bool__(self) -> bool:
        return bool(self.executions or self.outputs or self.chunks)


def plan_team(team: Team, now: datetime | None = None) -> TeamPrune:
    """What prune_team would remove now, counted in the same batches; changes nothing."""
    rules = _Rules(team, now or timezone.now())
    report = TeamPrune(team.name)
    for page in rules.pages(rules.doomed_runs()):
        report.executions += len(page)
        _count_output(page, report)
    for page in rules.pages(rules.doomed_output()):
        report.outputs += len(page)
        _count_output(page, report)
    return report


def prune_team(
    team: Team, now: datetime | None = None, *, stop: threading.Event | None = None
) -> TeamPrune:
    """Remove what the team's retention no longer keeps, a batch at a time; what it removed.

    `stop` set: returns after the batch under way, the rest left for the next time.
    """
    now = now or timezone.now()
    rules = _Rules(team, now)
    report = TeamPrune(team.name)
    # Whole runs first: a run that goes is not counted again among those losing output.
    for page in rules.pages(rules.doomed_runs(), stop):
        _remove_output(page, report)
        _delete_all(Execution.objects.filter(pk__in=page))
        report.executions += len(page)
    for page in rules.pages(rules.doomed_output(), stop):
        with _batch():
            # Marked before any chunk goes: a page never shows part of the output as all.
            Execution.objects.filter(pk__in=page, output_pruned_at=None).update(
                output_pruned_at=now
            )
        _remove_output(page, report)
        report.outputs += len(page)
    return report


def prune_if_due(stop: threading.Event | None = None) -> list[TeamPrune]:
    """For a worker's tick: prune each team that no worker has pruned for
    PRUNE_EVERY_SECONDS (by the database clock); what it pruned, per team it claimed.

    Safe to call from any number of workers at once: each team is claimed by a guarded
    update of its `pruned_at` and pruned by the one worker that won. The claim comes first,
    so a worker that dies meanwhile leaves the rest of that team to the next period.
    A first prune of a long history can take minutes: call it where nothing else waits.
    """
    every = timedelta(seconds=settings.PRUNE_EVERY_SECONDS)
    due = Team.objects.filter(Q(pruned_at=None) | Q(pruned_at__lte=Now() - every))
    pruned = []
    for team_id in list(due.order_by("pk").values_list("pk", flat=True)):
        if stop is not None and stop.is_set():
            break
        # Still due now: a worker that claimed it since the select prunes it instead.
        if not due.filter(pk=team_id).update(pruned_at=Now()):
            continue
        report = prune_team(Team.objects.get(pk=team_id), stop=stop)
        if report:
            logger.info("retention: %s", report.describe())
        pruned.append(report)
    return pruned


def serve(stop: threading.Event) -> None:
    """A worker's pruner: until `stop`, prune what is due, looking once a minute (or each
    PRUNE_EVERY_SECONDS if shorter). Runs in a thread of `manage.py worker`, apart from its
    tick, so that a long first prune holds up no schedule, retry or reaper."""
    every = min(60.0, settings.PRUNE_EVERY_SECONDS)
    while not stop.wait(every):
        try:
            prune_if_due(stop)
        except Exception:
            logger.exception("pruning failed; trying again in %s s", every)
        finally:
            close_old_connections()


class _Rules:
    """One team's retention at one moment, as querysets of the runs it removes."""

    def __init__(self, team: Team, now: datetime) -> None:
        self.team = team
        self.now = now

    def _before(self, days: int | None) -> Q | None:
        return None if days is None else Q(ended__lt=self.now - timedelta(days=days))

    def _runs_expired(self) -> Q | None:
        failed = Q(status__in=FAILED_STATUSES)
        expired = [
            self._with(~failed, self._before(self.team.execution_retention_days)),
            self._with(failed, self._before(self.team.failed_execution_retention_days)),
        ]
        return _any(expired)

    @staticmethod
    def _with(which: Q, older: Q | None) -> Q | None:
        return None if older is None else which & older

    def settled(self) -> QuerySet[Execution]:
        """The team's runs that retention may touch (see the module's doc)."""
        pending_event = ExecutionEvent.objects.filter(execution=OuterRef("pk"), processed_at=None)
        # A retry due of a run whose first attempt this is: it counts its attempts from here.
        retry_due = Execution.objects.filter(retry_of=OuterRef("pk"), retry_due_at__isnull=False)
        sending = Delivery.objects.filter(
            execution=OuterRef("pk"),
            status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING],
        )
        return (
            Execution.objects.filter(
                team=self.team, status__in=FINISHED_STATUSES, retry_due_at=None
            )
            .exclude(Exists(pending_event))
            .exclude(Exists(retry_due))
            .exclude(Exists(sending))
            .alias(ended=Coalesce("finished_at", "created_at"))
        )

    def doomed_runs(self) -> QuerySet[Execution] | None:
        expired = self._runs_expired()
        return None if expired is None else self.settled().filter(expired)

    def doomed_output(self) -> QuerySet[Execution] | None:
        older = self._before(self.team.output_retention_days)
        if older is None:
            return None
        has_output = LogChunk.objects.filter(execution=OuterRef("pk"))
        runs = self.settled().filter(older, Exists(has_output))
        expired = self._runs_expired()
        # Those that go whole are doomed_runs' (also in a dry run, where they stay).
        return runs if expired is None else runs.exclude(expired)

    def latest_runs(self) -> set[int]:
        """The latest keep_last_runs finished runs of each of the team's jobs: at most that
        many per job, whatever the history's length. A deleted job's runs have none."""
        if not self.team.keep_last_runs:
            return set()
        ranked = (
            Execution.objects.filter(
                team=self.team, status__in=FINISHED_STATUSES, job__isnull=False
            )
            .annotate(
                rank=Window(
                    RowNumber(),
                    partition_by=[F("job_id")],
                    order_by=[F("created_at").desc(), F("id").desc()],
                )
            )
            .filter(rank__lte=self.team.keep_last_runs)
        )
        return set(ranked.values_list("pk", flat=True))

    def pages(
        self, runs: QuerySet[Execution] | None, stop: threading.Event | None = None
    ) -> Iterator[list[int]]:
        """The ids of `runs` a batch at a time, in id order, but for each job's latest."""
        if runs is None:
            return
        kept = self.latest_runs()
        after = 0
        while stop is None or not stop.is_set():
            ids = list(
                runs.filter(pk__gt=after)
                .order_by("pk")
                .values_list("pk", flat=True)[: settings.PRUNE_BATCH_SIZE]
            )
            if not ids:
                return
            after = ids[-1]
            page = [pk for pk in ids if pk not in kept]
            if page:
                yield page


def _any(conditions: list[Q | None]) -> Q | None:
    found = [condition for condition in conditions if condition is not None]
    if not found:
        return None
    combined = found[0]
    for condition in found[1:]:
        combined |= condition
    return combined


def _count_output(page: list[int], report: TeamPrune) -> None:
    totals = LogChunk.objects.filter(execution_id__in=page).aggregate(
        chunks=Count("pk"), bytes=Sum("size")
    )
    report.chunks += totals["chunks"]
    report.bytes += totals["bytes"] or 0


def _remove_output(page: list[int], report: TeamPrune) -> None:
    """Delete the runs' output chunks, a batch at a time, and take them off their totals."""
    chunks = LogChunk.objects.filter(execution_id__in=page).order_by("pk")
    while rows := list(
        chunks.values_list("pk", "execution_id", "size")[: settings.PRUNE_BATCH_SIZE]
    ):
        sizes: Counter[int] = Counter()
        for _, execution_id, size in rows:
            sizes[execution_id] += size or 0
        with _batch():
            LogChunk.objects.filter(pk__in=[pk for pk, _, _ in rows]).delete()
            for execution_id, size in sizes.items():
                OutputTotal.objects.filter(execution_id=execution_id).update(
                    bytes=Greatest(F("bytes") - size, 0)
                )
        report.chunks += len(rows)
        report.bytes += sum(sizes.values())


def _delete_all(rows: QuerySet[Any]) -> None:
    """Delete `rows` and what hangs on them, bottom up, each batch in its own transaction.

    Django's delete() would take a run with all its host runs, chunks and deliveries in one
    transaction, of any size. Following the relations each model declares, rather than
    naming them here, also covers what comes to point at a run later.
    """
    model = rows.model
    for relation in model._meta.related_objects:
        on_delete = getattr(relation, "on_delete", None)
        field_name = relation.field.name
        related = relation.related_model._base_manager.filter(
            **{f"{field_name}__in": rows.values("pk")}
        )
        if on_delete is models.CASCADE:
            _delete_all(related)
        elif on_delete is models.SET_NULL:
            while ids := list(related.values_list("pk", flat=True)[: settings.PRUNE_BATCH_SIZE]):
                with _batch():
                    related.model._base_manager.filter(pk__in=ids).update(**{field_name: None})
        # Anything else (PROTECT, RESTRICT) is left to delete() below, which refuses.
    while ids := list(rows.values_list("pk", flat=True)[: settings.PRUNE_BATCH_SIZE]):
        with _batch():
            model._base_manager.filter(pk__in=ids).delete()


@contextmanager
def _batch() -> Iterator[None]:
    with transaction.atomic():
        yield
    if connection.vendor == "sqlite":
        time.sleep(SQLITE_PAUSE_SECONDS)
