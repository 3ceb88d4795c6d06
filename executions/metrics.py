"""What /metrics reports about executions and workers, read from the database at scrape time.

Several web processes answer /metrics and any of them may be asked, so nothing is counted in
a process: each scrape reads the database, in four queries (teams, jobs, live workers, and
one pass over executions that groups them by job, ending, trigger and the histograms'
buckets, adding up durations, waits and output sizes).
Output sizes come from OutputTotal, kept by the output writer, never from the chunks.

The counters are what the executions still stored add up to: retention deleting old runs
lowers them, which Prometheus takes for a counter reset. The output gauge is what is stored
now: retention takes pruned output off the totals.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import (
    Case,
    Count,
    F,
    FloatField,
    Func,
    IntegerField,
    Max,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.lookups import GreaterThanOrEqual, IsNull
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from accounts.models import Team
from executions.models import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    Execution,
    LogChunk,
    Status,
    Trigger,
    WorkerHeartbeat,
)
from jobs.models import Job

# Shell jobs take from a second to hours; a run waits for a worker from nothing to minutes.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
QUEUE_WAIT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)

LABELS = ["team", "job"]
Key = tuple[str, str]  # (team, job) by name


class _Seconds(Func):
    """Seconds from one time to a later one, in the database's own arithmetic: Django's
    duration expressions call back into Python for every row on SQLite, which made a
    scrape of 2,000 executions take 180 ms."""

    output_field = FloatField()
    arg_joiner = " - "
    template = "EXTRACT(EPOCH FROM (%(expressions)s))"

    def __init__(self, end: str, start: str) -> None:
        super().__init__(F(end), F(start))

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # Django stores SQLite's times as ISO text, which julianday() reads (in days).
        return self.as_sql(
            compiler,
            connection,
            template="((julianday(%(expressions)s)) * 86400.0)",
            arg_joiner=") - julianday(",
            **extra,
        )


@dataclass
class _Histogram:
    bounds: tuple[float, ...]
    # Observations per bucket (not cumulative); the last one is above every bound.
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def add(self, bucket: int | None, count: int, total: float | None) -> None:
        if bucket is not None:  # None: not observed (not started, or not ended)
            self.counts[bucket] += count
            self.total += total or 0.0

    def exposed(self) -> list[tuple[str, float]]:
        labels = [floatToGoString(bound) for bound in self.bounds] + ["+Inf"]
        return list(zip(labels, itertools.accumulate(self.counts), strict=True))


@dataclass
class _JobFigures:
    ended: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    active: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duration: _Histogram = field(default_factory=lambda: _Histogram(DURATION_BUCKETS))
    queue_wait: _Histogram = field(default_factory=lambda: _Histogram(QUEUE_WAIT_BUCKETS))
    output_bytes: int = 0
    last_success: datetime | None = None


class _Bucket(Func):
    """The index of the histogram bucket (the first bound >= the time) a time falls in,
    None if there is no time.

    PostgreSQL computes the time once per row with width_bucket(), which counts the bounds
    at or below a value: the bounds negated turn that into those at or above it. SQLite,
    which has no such function, compares against each bound in turn.
    """

    output_field = IntegerField()

    def __init__(self, seconds: Func, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        super().__init__(seconds)

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        negated = ", ".join(repr(-float(bound)) for bound in reversed(self.bounds))
        template = f"({len(self.bounds)} - width_bucket(-(%(expressions)s), ARRAY[{negated}]))"
        return super().as_sql(compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        seconds = self.source_expressions[0]
        below = [
            When(GreaterThanOrEqual(Value(bound), seconds), then=Value(i))
            for i, bound in enumerate(self.bounds)
        ]
        case = Case(
            *below,
            When(IsNull(seconds, False), then=Value(len(self.bounds))),
            default=None,
            output_field=IntegerField(),
        )
        return compiler.compile(case)


def execution_figures() -> dict[Key, _JobFigures]:
    """Every known job's figures (zeros included), and those of deleted jobs' executions."""
    teams = dict(Team.objects.values_list("pk", "name"))
    known = Job.objects.values_list("pk", "team_id", "name")
    jobs = {pk: name for pk, _team_id, name in known}
    # A job that never ran shows its zeros.
    figures = {(teams[team_id], name): _JobFigures() for _pk, team_id, name in known}
    rows = (
        Execution.objects.order_by()
        .alias(
            duration=_Seconds("finished_at", "started_at"),
            queue_wait=_Seconds("started_at", "created_at"),
        )
        .annotate(
            duration_bucket=_Bucket(F("duration"), DURATION_BUCKETS),
            queue_wait_bucket=_Bucket(F("queue_wait"), QUEUE_WAIT_BUCKETS),
        )
        .values(
            "team_id",
            "job_id",
            "job_name",
            "status",
            "trigger",
            "duration_bucket",
            "queue_wait_bucket",
        )
        .annotate(
            count=Count("pk"),
            duration_sum=Sum("duration"),
            queue_wait_sum=Sum("queue_wait"),
            output_bytes=Sum("output_total__bytes"),
            last_success=Max("finished_at", filter=Q(status=Status.SUCCEEDED)),
        )
    )
    for row in rows:
        # A job's executions show under its current name; a deleted job's under the name
        # they ran as.
        job = jobs.get(row["job_id"], row["job_name"])
        figures_of = figures.setdefault((teams[row["team_id"]], job), _JobFigures())
        if row["status"] in FINISHED_STATUSES:
            figures_of.ended[(row["status"], row["trigger"])] += row["count"]
        else:
            figures_of.active[row["status"]] += row["count"]
        figures_of.duration.add(row["duration_bucket"], row["count"], row["duration_sum"])
        figures_of.queue_wait.add(row["queue_wait_bucket"], row["count"], row["queue_wait_sum"])
        figures_of.output_bytes += row["output_bytes"] or 0
        if row["last_success"] and (
            figures_of.last_success is None or row["last_success"] > figures_of.last_success
        ):
            figures_of.last_success = row["last_success"]
    return figures


class ExecutionsCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        figures = sorted(execution_figures().items())
        ended = CounterMetricFamily(
            "tsubame_executions",
            "Executions that ended, by team, job, how they ended and what started them.",
            labels=[*LABELS, "status", "trigger"],
        )
        active = GaugeMetricFamily(
            "tsubame_executions_active",
            "Executions not ended yet: waiting for their job's previous run, queued for a "
            "worker, or running.",
            labels=[*LABELS, "status"],
        )
        duration = HistogramMetricFamily(
            "tsubame_execution_duration_seconds",
            "How long ended executions ran, from start to end.",
            labels=LABELS,
        )
        queue_wait = HistogramMetricFamily(
            "tsubame_execution_queue_wait_seconds",
            "How long started executions waited from being asked for to starting.",
            labels=LABELS,
        )
        # A gauge: retention removes old output and takes it off the totals.
        output = GaugeMetricFamily(
            "tsubame_output_bytes", "Bytes of output the executions have stored.", labels=LABELS
        )
        last_success = GaugeMetricFamily(
            "tsubame_job_last_success_timestamp_seconds",
            "When the job's latest successful execution ended (Unix time); absent if none.",
            labels=LABELS,
        )
        for key, job in figures:
            labels = list(key)
            for status in FINISHED_STATUSES:
                for trigger in Trigger:
                    count = job.ended.get((status.value, trigger.value), 0)
                    ended.add_metric([*labels, status.value, trigger.value], count)
            for status in ACTIVE_STATUSES:
                active.add_metric([*labels, status.value], job.active.get(status.value, 0))
            duration.add_metric(labels, job.duration.exposed(), job.duration.total)
            queue_wait.add_metric(labels, job.queue_wait.exposed(), job.queue_wait.total)
            output.add_metric(labels, job.output_bytes)
            if job.last_success is not None:
                last_success.add_metric(labels, job.last_success.timestamp())
        workers = GaugeMetricFamily(
            "tsubame_workers_live",
            "Worker processes (manage.py worker) whose heartbeat is recent "
            "(WORKER_HEARTBEAT_STALE_SECONDS).",
            value=WorkerHeartbeat.objects.live().count(),
        )
        # Normally near 0: output waits for the workers' indexers only a moment (a search
        # reads what waits directly, so a backlog slows searches down, it loses nothing).
        unindexed = GaugeMetricFamily(
            "tsubame_output_chunks_unindexed",
            "Stored output chunks waiting for the output search index.",
            value=LogChunk.objects.filter(indexed=False).count(),
        )
        yield from (ended, active, duration, queue_wait, output, last_success, workers, unindexed)
