from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import (
    Avg,
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
)
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import policy
from accounts.models import Source
from executions import logs, services
from executions.filters import ExecutionFilter
from executions.forms import RerunForm
from executions.models import ACTIVE_STATUSES, Execution, HostRun, LogChunk, Status, Trigger
from jobs.models import Job
from notifications.models import NotificationChannel
from servers.models import Server
from tsubame.pages import filtered_page

# The log viewer opens at the end of the output: this much of it, more on request.
TAIL_WINDOW_BYTES = 2 * 1024 * 1024


def visible_executions(request: HttpRequest) -> Any:
    return policy.visible(Execution.objects.with_details(), request.user)


# A skipped run never ran: neither a success nor a failure.
NOT_FAILED = [Status.SUCCEEDED, Status.SKIPPED, *ACTIVE_STATUSES]


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    executions = policy.visible(Execution.objects.all(), request.user)
    since = timezone.now() - timedelta(days=30)
    recent = executions.filter(created_at__gte=since)
    counts = recent.aggregate(
        total=Count("id"),
        succeeded=Count("id", filter=Q(status=Status.SUCCEEDED)),
        failed=Count("id", filter=~Q(status__in=NOT_FAILED)),
    )
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    per_day = (
        recent.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            succeeded=Count("id", filter=Q(status=Status.SUCCEEDED)),
            failed=Count("id", filter=~Q(status__in=NOT_FAILED)),
            average=Avg(duration, filter=Q(finished_at__isnull=False, started_at__isnull=False)),
        )
        .order_by("day")
    )
    by_day = {row["day"]: row for row in per_day}
    days = [(since + timedelta(days=n)).date() for n in range(1, 31)]
    empty = {"succeeded": 0, "failed": 0, "average": None}
    chart = {
        "days": [day.isoformat() for day in days],
        "succeeded": [by_day.get(day, empty)["succeeded"] for day in days],
        "failed": [by_day.get(day, empty)["failed"] for day in days],
        "seconds": [
            round(average.total_seconds(), 2)
            if (average := by_day.get(day, empty)["average"])
            else None
            for day in days
        ],
    }
    # Until something has run, the dashboard says what to do next (templates link each step
    # for those who may take it).
    first_steps = None
    if not counts["total"] and not executions.exists():
        first_steps = {
            "servers": policy.visible(Server.objects.all(), request.user).exists(),
            "jobs": policy.visible(Job.objects.all(), request.user).exists(),
        }
    failing_servers = policy.visible(
        Server.objects.select_related("team").exclude(last_check_status__in=["", "ok"]),
        request.user,
    )
    # One query; the URLs stay encrypted in it (never decrypted for a page that shows none).
    failing_channels = policy.visible(
        NotificationChannel.objects.select_related("team")
        .exclude(failing_since=None)
        .defer("url", "signing_secret"),
        request.user,
    )
    return render(
        request,
        "executions/dashboard.html",
        {
            "counts": counts,
            "chart": chart,
            "recent": visible_executions(request)[:15],
            "failing_servers": failing_servers,
            "failing_channels": failing_channels,
            "first_steps": first_steps,
            "section": "dashboard",
        },
    )


@login_required
def running(request: HttpRequest) -> HttpResponse:
    """The live part of the dashboard, refreshed in place every few seconds."""
    active = visible_executions(request).filter(status__in=ACTIVE_STATUSES)
    return render(request, "executions/running.html", {"running": active[:50]})


@login_required
def execution_list(request: HttpRequest) -> HttpResponse:
    filters, page = filtered_page(request, ExecutionFilter, visible_executions(request))
    return render(
        request,
        "executions/execution_list.html",
        {
            "filters": filters,
            "page": page,
            "filtered": any(value for key, value in request.GET.items() if key != "page"),
            "statuses": Status.choices,
            "server_names": server_names(request),
            "section": "executions",
        },
    )


def server_names(request: HttpRequest) -> list[str]:
    """For the server filter: the user's servers, and the deleted ones their runs name."""
    current = policy.visible(Server.objects.all(), request.user).values_list("name", flat=True)
    deleted = policy.visible(HostRun.objects.filter(server=None), request.user)
    # No ordering: the default one would put the execution's columns into the DISTINCT.
    names = deleted.order_by().values_list("server_name", flat=True).distinct()
    return sorted({*current, *names})


@login_required
def execution_detail(request: HttpRequest, pk: int) -> HttpResponse:
    executions = Execution.objects.with_details().with_children()
    execution = policy.get_visible_or_404(executions, request.user, pk=pk)
    try:
        window = max(1, min(int(request.GET.get("window", 1)), 512)) * TAIL_WINDOW_BYTES
    except ValueError:
        window = TAIL_WINDOW_BYTES
    start_after = logs.tail_start(execution.pk, window)
    # A host that ended with an error and printed nothing gets its error written in the
    # terminal (by logviewer.js), so it needs to know which hosts printed nothing at all.
    host_runs = list(
        execution.host_runs.annotate(
            has_output=Exists(LogChunk.objects.filter(host_run=OuterRef("pk")))
        ).order_by("server_name", "id")
    )
    viewer = {
        "execution": execution.pk,
        "socket": f"/ws/executions/{execution.pk}/",
        "login": f"{reverse('login')}?{urlencode({'next': request.get_full_path()}, safe='/')}",
        "after": start_after,
        "log": reverse("api:execution-log", args=[execution.pk]),
        "facts": reverse("execution-facts", args=[execution.pk]),
        "hosts": [
            {
                "id": run.pk,
                "name": logs.one_line(run.server_name),
                "status": run.status,
                "error": run.error,
                "output": run.has_output,
            }
            for run in host_runs
        ],
    }
    # Run again is offered to whoever may run the job (when it still exists); "on failed
    # hosts" once the run is over and some host did not succeed.
    may_rerun = execution.job is not None and request.user.has_perm("jobs.run_job", execution.job)
    return render(
        request,
        "executions/execution_detail.html",
        {
            "execution": execution,
            "rerun_form": RerunForm(execution=execution) if may_rerun else None,
            "some_host_failed": execution.is_finished
            and any(run.status != Status.SUCCEEDED for run in host_runs),
            "host_runs": host_runs,
            "done": sum(run.status not in ACTIVE_STATUSES for run in host_runs),
            "truncated": start_after >= 0,
            "more_url": f"?window={window // TAIL_WINDOW_BYTES * 4}",
            "raw_url": reverse("api:execution-raw-log", args=[execution.pk]),
            "viewer": viewer,
            "section": "executions",
        },
    )


@login_required
def execution_facts(request: HttpRequest, pk: int) -> HttpResponse:
    """The page's facts (started, finished, duration), for the viewer to swap in as they change."""
    executions = Execution.objects.select_related("team", "triggered_by").with_children()
    execution = policy.get_visible_or_404(executions, request.user, pk=pk)
    return render(request, "executions/execution_facts.html", {"execution": execution})


@login_required
@require_POST
def execution_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    execution = policy.get_visible_or_404(Execution.objects.all(), request.user, pk=pk)
    policy.require(request.user, "executions.cancel_execution", execution)
    if services.cancel_execution(execution, by=request.user, source=Source.UI):
        messages.success(request, "Cancel requested: the remote processes are being stopped.")
    else:
        messages.warning(request, "This execution had already finished.")
    return redirect("execution-detail", pk=execution.pk)


@login_required
@require_POST
def execution_rerun(request: HttpRequest, pk: int) -> HttpResponse:
    """Start the run's job again, then show the new run; or say here why it did not start."""
    execution = policy.get_visible_or_404(
        Execution.objects.select_related("job"), request.user, pk=pk
    )
    # Without its job (deleted) it cannot run again, which the service says to anyone who may
    # run jobs of the run's team.
    policy.require(request.user, "jobs.run_job", execution.job or execution)
    form = RerunForm(request.POST, execution=execution)
    try:
        rerun = services.rerun_execution(
            execution, trigger=Trigger.UI, triggered_by=request.user, **form.rerun_arguments()
        )
    except services.ExecutionError as exc:
        messages.error(request, f"Not run again: {exc}")
        return redirect("execution-detail", pk=execution.pk)
    return redirect("execution-detail", pk=rerun.pk)
