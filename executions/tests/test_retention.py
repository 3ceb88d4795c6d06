"""Retention: which runs lose their output, which go whole, and how the pruning is done."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role, Team
from executions import retention
from executions.models import (
    ACTIVE_STATUSES,
    Execution,
    ExecutionEvent,
    HostRun,
    LogChunk,
    OutputTotal,
    Status,
    Trigger,
)
from executions.tests.helpers import right_after_the_select
from jobs.models import Job, Webhook, WebhookDelivery
from notifications.models import Delivery, NotificationChannel

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    # The pause lets SQLite's other writers in between batches; tests have none waiting.
    monkeypatch.setattr(retention, "SQLITE_PAUSE_SECONDS", 0)


def make_run(
    team: Team,
    job: Job | None,
    ended_days_ago: float,
    status: Status = Status.SUCCEEDED,
    *,
    chunks: int = 3,
    hosts: int = 1,
    **fields: object,
) -> Execution:
    """A run that ended `ended_days_ago` (an active one: was created then), with output."""
    ended = timezone.now() - timedelta(days=ended_days_ago)
    run = Execution.objects.create(
        team=team,
        job=job,
        job_name=job.name if job else "deleted-job",
        script="true",
        interpreter="/bin/sh",
        max_parallel=1,
        trigger=Trigger.SYSTEM,
        status=status,
        finished_at=None if status in ACTIVE_STATUSES else ended,
        **fields,
    )
    Execution.objects.filter(pk=run.pk).update(created_at=ended - timedelta(minutes=5))
    host_runs = [
        HostRun.objects.create(
            execution=run, server_name=f"web-{n}", address="127.0.0.1", status=status
        )
        for n in range(hosts)
    ]
    for seq in range(chunks):
        data = f"line {seq} of run {run.pk}\n".encode() * (seq + 1)
        LogChunk.objects.create(
            execution=run,
            host_run=host_runs[seq % hosts],
            seq=seq,
            stream=LogChunk.Stream.STDOUT,
            data=data,
            created_at=ended,
        )
    total = sum(len(bytes(c.data)) for c in LogChunk.objects.filter(execution=run))
    OutputTotal.objects.create(execution=run, bytes=total)
    ExecutionEvent.objects.create(execution=run, kind="started", processed_at=ended)
    return run


@dataclass
class History:
    runs: dict[str, Execution] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)  # the runs that go whole
    output_removed: set[str] = field(default_factory=set)  # the runs that lose only output
    teams: dict[str, Team] = field(default_factory=dict)

    def ids(self, names: set[str]) -> set[int]:
        return {self.runs[name].pk for name in names}


@pytest.fixture
def history() -> History:
    """Runs of several ages, statuses, jobs and teams, and what retention does to each."""
    h = History()
    ops = Team.objects.create(
        name="ops",
        output_retention_days=7,
        execution_retention_days=30,
        failed_execution_retention_days=90,
        keep_last_runs=2,
    )
    quiet = Team.objects.create(name="quiet")  # the defaults: everything kept
    terse = Team.objects.create(name="terse", output_retention_days=7, keep_last_runs=0)
    h.teams = {"ops": ops, "quiet": quiet, "terse": terse}
    deploy = Job.objects.create(team=ops, name="deploy", script="true")
    backup = Job.objects.create(team=ops, name="backup", script="true")
    gone = Job.objects.create(team=ops, name="gone", script="true")
    r = h.runs
    # deploy, run often: its two latest are kept anyway, and they are recent.
    r["recent"] = make_run(ops, deploy, 0.5)
    r["yesterday"] = make_run(ops, deploy, 1)
    r["ten_days"] = make_run(ops, deploy, 10)  # output older than 7 days
    r["ten_days_silent"] = make_run(ops, deploy, 10, chunks=0)  # no output to remove
    r["forty_days"] = make_run(ops, deploy, 40, hosts=3, chunks=7)  # older than 30
    r["failed_forty"] = make_run(ops, deploy, 40, Status.FAILED)  # failed: kept 90
    r["lost_fifty"] = make_run(ops, deploy, 50, Status.LOST)
    r["timed_out_hundred"] = make_run(ops, deploy, 100, Status.TIMED_OUT)  # past 90 too
    r["cancelled_forty"] = make_run(ops, deploy, 40, Status.CANCELLED)  # not a failure
    r["skipped_forty"] = make_run(ops, deploy, 40, Status.SKIPPED, chunks=0)
    # Active runs are never touched, however old.
    r["running"] = make_run(ops, deploy, 400, Status.RUNNING)
    r["queued"] = make_run(ops, deploy, 400, Status.QUEUED)
    r["waiting"] = make_run(ops, deploy, 400, Status.WAITING)
    # Old but not settled: an event still to react to, a retry due, a notification unsent.
    r["unreacted"] = make_run(ops, deploy, 40)
    ExecutionEvent.objects.create(execution=r["unreacted"], kind="succeeded")
    r["retry_due"] = make_run(
        ops, deploy, 100, Status.FAILED, retry_due_at=timezone.now() + timedelta(hours=1)
    )
    r["first_attempt"] = make_run(ops, deploy, 100, Status.FAILED)
    r["second_attempt"] = make_run(
        ops, deploy, 95, Status.FAILED, retry_of=r["first_attempt"], attempt=2
    )
    Execution.objects.filter(pk=r["second_attempt"].pk).update(
        retry_due_at=timezone.now() + timedelta(days=1)
    )
    channel = NotificationChannel.objects.create(team=ops, name="chat", url="json://127.0.0.1")
    r["notifying"] = make_run(ops, deploy, 40)
    Delivery.objects.create(
        channel=channel, execution=r["notifying"], outcome="succeeded", event="x", title="t"
    )
    # backup, run rarely: its two latest are kept whole whatever their age.
    r["backup_latest"] = make_run(ops, backup, 100)
    r["backup_failed"] = make_run(ops, backup, 200, Status.FAILED)
    r["backup_oldest"] = make_run(ops, backup, 300)
    # A deleted job's runs: none is its latest any more.
    r["of_deleted_job"] = make_run(ops, gone, 40)
    gone.delete()
    # What points at runs that go: it stays and forgets them; what hangs on them goes.
    Execution.objects.filter(pk=r["yesterday"].pk).update(rerun_of=r["forty_days"])
    Execution.objects.filter(pk=r["recent"].pk).update(parent=r["cancelled_forty"])
    Execution.objects.filter(pk=r["failed_forty"].pk).update(retry_of=r["timed_out_hundred"])
    webhook = Webhook.objects.create(job=deploy, name="hook", key="k" * 32)
    WebhookDelivery.objects.create(
        webhook=webhook, accepted=True, status_code=202, execution=r["forty_days"]
    )
    Delivery.objects.create(
        channel=channel,
        execution=r["forty_days"],
        outcome="succeeded",
        event="x",
        title="t",
        status=Delivery.Status.SENT,
    )
    # Teams that keep everything, or only runs.
    r["quiet_ancient"] = make_run(quiet, None, 1000)
    r["quiet_failed"] = make_run(quiet, None, 1000, Status.FAILED)
    r["terse_old"] = make_run(terse, None, 400)
    r["terse_recent"] = make_run(terse, None, 3)

    h.removed = {
        "forty_days",
        "timed_out_hundred",
        "cancelled_forty",
        "skipped_forty",
        "backup_oldest",
        "of_deleted_job",
    }
    h.output_removed = {"ten_days", "failed_forty", "lost_fifty", "terse_old"}
    return h


def chunk_totals(runs: set[int]) -> tuple[int, int]:
    chunks = LogChunk.objects.filter(execution_id__in=runs)
    return chunks.count(), sum(len(bytes(c.data)) for c in chunks)


def expected_lines(h: History, verb: str) -> list[str]:
    ops_chunks, ops_bytes = chunk_totals(h.ids((h.removed | h.output_removed) - {"terse_old"}))
    terse_chunks, terse_bytes = chunk_totals(h.ids({"terse_old"}))
    outputs = len(h.output_removed) - 1
    return [
        f"ops: {verb} {len(h.removed)} executions and the output of {outputs} more "
        f"({ops_chunks} output chunks, {ops_bytes} bytes)",
        f"quiet: {verb} 0 executions and the output of 0 more (0 output chunks, 0 bytes)",
        f"terse: {verb} 0 executions and the output of 1 more "
        f"({terse_chunks} output chunks, {terse_bytes} bytes)",
    ]


def prune(*args: str) -> list[str]:
    out = StringIO()
    call_command("prune", *args, stdout=out)
    return out.getvalue().splitlines()


def test_prune_removes_old_output_and_old_runs_and_keeps_the_rest(history: History) -> None:
    h = history
    before = {
        pk: (
            LogChunk.objects.filter(execution_id=pk).count(),
            HostRun.objects.filter(execution_id=pk).count(),
        )
        for pk in h.ids(set(h.runs))
    }
    expected = expected_lines(h, "removed")
    assert prune() == expected

    remaining = set(Execution.objects.values_list("pk", flat=True))
    assert remaining == h.ids(set(h.runs) - h.removed)
    for name, run in h.runs.items():
        if name in h.removed:
            continue
        run.refresh_from_db()
        chunks = LogChunk.objects.filter(execution=run).count()
        host_runs = HostRun.objects.filter(execution=run).count()
        total = OutputTotal.objects.get(execution=run).bytes
        if name in h.output_removed:
            assert (chunks, host_runs, total) == (0, before[run.pk][1], 0), name
            assert run.output_pruned_at is not None, name
        else:
            assert (chunks, host_runs) == before[run.pk], name
            assert total == chunk_totals({run.pk})[1], name
            assert run.output_pruned_at is None, name
    # What hung on the removed runs went with them; what pointed at them forgot them.
    gone = h.ids(h.removed)
    for model in (HostRun, LogChunk, ExecutionEvent, OutputTotal, Delivery):
        assert not model.objects.filter(execution_id__in=gone).exists(), model
    assert WebhookDelivery.objects.get().execution is None
    pointing = Execution.objects.filter(pk__in=h.ids({"yesterday", "recent", "failed_forty"}))
    assert {(e.rerun_of_id, e.parent_id, e.retry_of_id) for e in pointing} == {(None,) * 3}

    # Done: a second prune finds nothing more.
    assert prune() == [
        f"{name}: removed 0 executions and the output of 0 more (0 output chunks, 0 bytes)"
        for name in ("ops", "quiet", "terse")
    ]


def test_dry_run_changes_nothing_and_counts_what_prune_then_removes(history: History) -> None:
    def state() -> tuple[object, ...]:
        return (
            list(Execution.objects.order_by("pk").values_list("pk", "output_pruned_at")),
            LogChunk.objects.count(),
            HostRun.objects.count(),
            list(OutputTotal.objects.order_by("pk").values_list("pk", "bytes")),
        )

    unchanged = state()
    expected = expected_lines(history, "would remove")
    planned = prune("--dry-run")
    assert state() == unchanged
    assert planned == expected
    assert prune() == [line.replace("would remove", "removed") for line in planned]


@dataclass
class Transactions:
    """The rows each transaction deleted and updated, in commit order."""

    written: list[Counter[str]] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)  # writes in autocommit mode
    _open: bool = False

    def wrapper(self, execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        verb = sql.split(" ", 1)[0]
        if verb not in ("DELETE", "UPDATE"):
            return result
        if not connection.in_atomic_block:
            self.outside.append(sql)
            return result
        if not self._open:
            self._open = True
            self.written.append(Counter())
            transaction.on_commit(self._committed)
        self.written[-1][verb] += max(context["cursor"].rowcount, 0)
        return result

    def _committed(self) -> None:
        self._open = False


@pytest.fixture
def transactions() -> Iterator[Transactions]:
    seen = Transactions()
    with connection.execute_wrapper(seen.wrapper):
        yield seen


@pytest.mark.django_db(transaction=True)
def test_each_transaction_of_a_prune_writes_at_most_a_batch(
    history: History, settings, transactions: Transactions
) -> None:
    settings.PRUNE_BATCH_SIZE = 4
    prune()
    assert not transactions.outside
    assert transactions.written
    # Up to a batch of rows deleted, and of rows updated: a batch of chunks (themselves
    # deleted) takes their bytes off at most as many runs' output totals.
    assert max(rows for written in transactions.written for rows in written.values()) <= 4
    # Batches, not one transaction per run: the 7 chunks of a run went in two.
    assert len(transactions.written) > len(history.removed | history.output_removed)
    assert not Execution.objects.filter(pk__in=history.ids(history.removed)).exists()


def test_prune_if_due_is_claimed_by_one_of_two_workers(history: History, settings) -> None:
    settings.PRUNE_EVERY_SECONDS = 3600
    other: list[retention.TeamPrune] = []

    def other_worker() -> None:
        other.extend(retention.prune_if_due())

    # The other worker runs whole between this one's select of due teams and its claims.
    with right_after_the_select(other_worker, table="accounts_team"):
        mine = retention.prune_if_due()

    claims = Counter(report.team for report in mine + other)
    assert claims == Counter(Team.objects.values_list("name", flat=True))
    assert other
    assert not mine
    assert not Execution.objects.filter(pk__in=history.ids(history.removed)).exists()
    assert retention.prune_if_due() == []  # pruned within the hour: not due


def test_prune_if_due_prunes_again_once_the_period_has_passed(history: History, settings) -> None:
    settings.PRUNE_EVERY_SECONDS = 3600
    assert {report.team for report in retention.prune_if_due()} >= {"ops", "quiet", "terse"}
    later = make_run(history.teams["ops"], None, 40)
    Team.objects.filter(name="ops").update(pruned_at=timezone.now() - timedelta(hours=2))
    [report] = retention.prune_if_due()
    assert (report.team, report.executions) == ("ops", 1)
    assert not Execution.objects.filter(pk=later.pk).exists()


def test_pages_say_the_output_was_removed_by_retention(
    history: History, client, make_member
) -> None:
    prune()
    client.force_login(make_member(history.teams["ops"], Role.VIEWER))
    pruned, kept = history.runs["ten_days"], history.runs["recent"]
    page = client.get(reverse("execution-detail", args=[pruned.pk])).content.decode()
    assert "Output removed by retention" in page
    page = client.get(reverse("execution-detail", args=[kept.pk])).content.decode()
    assert "Output removed by retention" not in page
    api = client.get(f"/api/v1/executions/{pruned.pk}/").json()
    assert api["output_pruned_at"] is not None
    assert client.get(f"/api/v1/executions/{kept.pk}/").json()["output_pruned_at"] is None
