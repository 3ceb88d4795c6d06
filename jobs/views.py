from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts import policy
from accounts.models import Source
from executions import services
from executions.models import Execution, Trigger
from jobs.filters import JobFilter, SecretVariableFilter
from jobs.forms import JobPageForm, RunForm, SecretVariablePageForm
from jobs.models import Job, SecretVariable
from jobs.schedule_views import shown_schedules
from jobs.services import (
    delete_job,
    delete_secret_variable,
    deletion_effects,
    save_job,
    save_secret_variable,
)
from servers.models import Server
from tsubame.pages import Paginator, filtered_page


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
            "target_tags",
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
    form.fields["secret_variables"].queryset = policy.visible(
        SecretVariable.objects.select_related("team"), request.user
    )
    form.offer_next_jobs(policy.visible(Job.objects.all(), request.user))
    if request.method == "POST" and form.is_valid():
        saved = save_job(
            form.save(commit=False),
            actor=request.user,
            source=Source.UI,
            servers=form.cleaned_data["servers"],
            target_tags=form.cleaned_data["target_tags"],
            secret_variables=form.cleaned_data["secret_variables"],
            links=form.cleaned_data["links"],
            changed_fields=form.changed_fields,
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


def job_page(
    request: HttpRequest, job: Job, run_form: RunForm, *, status: int = 200
) -> HttpResponse:
    """The job's page; the run dialog is open when asked for (?run=1) or sent back."""
    # A job that changed team keeps its past runs, which stay with the team they ran in.
    history = policy.visible(Execution.objects.filter(job=job), request.user)
    history = history.select_related("triggered_by")
    page = Paginator(history, 25).get_page(request.GET.get("page"))
    context = {
        "job": job,
        "page": page,
        "run_form": run_form,
        "run_open": run_form.is_bound or "run" in request.GET,
        "schedules": shown_schedules(job),
        "section": "jobs",
    }
    return render(request, "jobs/job_detail.html", context, status=status)


def visible_job(request: HttpRequest, pk: int) -> Job:
    return policy.get_visible_or_404(
        Job.objects.select_related("team").prefetch_related(
            visible_targets(request.user), "target_tags", "secret_variables", "links__next_job"
        ),
        request.user,
        pk=pk,
    )


@login_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = visible_job(request, pk)
    return job_page(request, job, RunForm(job=job))


@login_required
@require_POST
def job_run(request: HttpRequest, pk: int) -> HttpResponse:
    """Start a run with what the run dialog chose, or with the job's own targets and
    defaults for the plain Run button, which sends nothing.

    Nothing starts unless every value is valid. The dialog then comes back (400) with the
    message at each refused value; the plain button leads to the dialog with the message.
    """
    job = visible_job(request, pk)
    policy.require(request.user, "jobs.run_job", job)
    if not request.POST.get("chosen_targets"):
        try:
            execution = services.start_execution(job, trigger=Trigger.UI, triggered_by=request.user)
        except services.ExecutionError as exc:
            messages.error(request, f"Not started: {exc}")
            return redirect(f"{reverse('job-detail', args=[job.pk])}?run=1#run-dialog")
        return redirect("execution-detail", pk=execution.pk)
    form = RunForm(request.POST, job=job)
    if form.is_valid():
        try:
            execution = services.start_execution(
                job, trigger=Trigger.UI, triggered_by=request.user, **form.start_arguments()
            )
        except services.InvalidParameters as exc:
            form.add_parameter_errors(exc.errors)
        except services.ExecutionError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("execution-detail", pk=execution.pk)
    return job_page(request, job, form, status=400)


def using_jobs(user: Any) -> Prefetch:
    """The jobs that list a secret variable, as far as the user may see them."""
    return Prefetch("jobs", queryset=policy.visible(Job.objects.only("name", "team"), user))


@login_required
def secret_variable_list(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("jobs.view_secretvariable"):
        raise PermissionDenied("Your roles do not allow seeing secret variables.")
    variables = policy.visible(
        SecretVariable.objects.select_related("team").prefetch_related(using_jobs(request.user)),
        request.user,
    )
    filters, page = filtered_page(request, SecretVariableFilter, variables)
    return render(
        request,
        "jobs/secret_variable_list.html",
        {
            "filters": filters,
            "page": page,
            "can_add": request.user.has_perm("jobs.add_secretvariable"),
            "section": "secrets",
        },
    )


@login_required
def secret_variable_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    variable, teams = policy.for_editing(
        SecretVariable.objects.prefetch_related(using_jobs(request.user)), request.user, pk
    )
    form = SecretVariablePageForm(request.POST or None, instance=variable)
    form.offer_teams(teams)
    if request.method == "POST" and form.is_valid():
        saved = save_secret_variable(
            form.save(commit=False),
            actor=request.user,
            source=Source.UI,
            changed_fields=form.changed_data,
        )
        messages.success(request, f"Saved {saved.name}.")
        return redirect("secret-variable-list")
    return render(
        request,
        "jobs/secret_variable_form.html",
        {"form": form, "variable": variable, "section": "secrets"},
    )


@login_required
def secret_variable_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET names the jobs that stop receiving it; POST deletes."""
    variable = policy.get_visible_or_404(
        SecretVariable.objects.select_related("team").prefetch_related(using_jobs(request.user)),
        request.user,
        pk=pk,
    )
    policy.require(request.user, "jobs.delete_secretvariable", variable)
    if request.method == "POST":
        delete_secret_variable(variable, actor=request.user, source=Source.UI)
        messages.success(request, f"Deleted {variable.name}.")
        return redirect("secret-variable-list")
    return render(
        request,
        "jobs/secret_variable_delete.html",
        {"variable": variable, "section": "secrets"},
    )
