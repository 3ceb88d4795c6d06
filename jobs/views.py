from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts import policy
from accounts.models import Source
from executions import services
from executions.models import Execution, Trigger
from jobs.filters import JobFilter
from jobs.forms import JobPageForm, RunForm
from jobs.models import Job
from jobs.services import delete_job, deletion_effects, save_job
from servers.models import Server
from tsubame.pages import filtered_page


def visible_targets(user: Any) -> Prefetch:
    """A job's targets as its pages show them (names, Run's hidden inputs): only servers the
    user may see, should a job ever target another team's server (save_server prevents it)."""
    return Prefetch("servers", queryset=policy.visible(Server.objects.all(), user))


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    # Each job's newest run that the user may see, all in one query (a window per job): a job
    # that changed team does not show its old team's last run.
    last_run = policy.visible(
        Execution.objects.defer("script").order_by("-created_at", "-id"), request.user
    )
    jobs = policy.visible(
        Job.objects.select_related("team").prefetch_related(
            visible_targets(request.user),
            Prefetch("executions", queryset=last_run[:1], to_attr="last_runs"),
        ),
        request.user,
    )
    filters, page = filtered_page(request, JobFilter, jobs)
    return render(
        request,
        "jobs/job_list.html",
        {
            "filters": filters,
            "page": page,
            "can_add": request.user.has_perm("jobs.add_job"),
            "section": "jobs",
        },
    )


@login_required
def job_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    job, teams = policy.for_editing(Job.objects.all(), request.user, pk)
    form = JobPageForm(request.POST or None, instance=job)
    form.offer_teams(teams)
    form.fields["servers"].queryset = policy.visible(
        Server.objects.select_related("team").prefetch_related("tags"), request.user
    )
    if request.method == "POST" and form.is_valid():
        saved = save_job(
            form.save(commit=False),
            actor=request.user,
            source=Source.UI,
            servers=form.cleaned_data["servers"],
            changed_fields=form.changed_data,
        )
        messages.success(request, f"Saved {saved.name}.")
        return redirect("job-detail", pk=saved.pk)
    return render(request, "jobs/job_form.html", {"form": form, "job": job, "section": "jobs"})


@login_required
def job_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET names the runs that deleting touches (none is lost); POST deletes."""
    job = policy.get_visible_or_404(Job.objects.select_related("team"), request.user, pk=pk)
    policy.require(request.user, "jobs.delete_job", job)
    if request.method == "POST":
        delete_job(job, actor=request.user, source=Source.UI)
        messages.success(request, f"Deleted {job.name}.")
        return redirect("job-list")
    return render(
        request,
        "jobs/job_delete.html",
        {"job": job, "effects": deletion_effects(job, request.user), "section": "jobs"},
    )


@login_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = policy.get_visible_or_404(
        Job.objects.select_related("team").prefetch_related(visible_targets(request.user)),
        request.user,
        pk=pk,
    )
    # A job that changed team keeps its past runs, which stay with the team they ran in.
    history = policy.visible(Execution.objects.filter(job=job), request.user)
    history = history.select_related("triggered_by")
    page = Paginator(history, 25).get_page(request.GET.get("page"))
    return render(
        request,
        "jobs/job_detail.html",
        {"job": job, "page": page, "run_form": RunForm(job=job), "section": "jobs"},
    )


@login_required
@require_POST
def job_run(request: HttpRequest, pk: int) -> HttpResponse:
    job = policy.get_visible_or_404(Job.objects.all(), request.user, pk=pk)
    policy.require(request.user, "jobs.run_job", job)
    form = RunForm(request.POST, job=job)
    if not form.is_valid():
        messages.error(request, "Choose at least one of the team's servers.")
        return redirect("job-detail", pk=job.pk)
    try:
        execution = services.start_execution(
            job, trigger=Trigger.UI, triggered_by=request.user, servers=form.cleaned_data["servers"]
        )
    except services.ExecutionError as exc:
        messages.error(request, str(exc))
        return redirect("job-detail", pk=job.pk)
    return redirect("execution-detail", pk=execution.pk)
