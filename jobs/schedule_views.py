"""A job's schedules in the web UI: listed on the job's page, edited on their own pages."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import policy
from accounts.models import Source
from jobs import schedules
from jobs.forms import ScheduleForm
from jobs.models import Job, Schedule
from jobs.services import delete_schedule, save_schedule

SHOWN_RUNS = 3


@dataclass(frozen=True)
class ShownSchedule:
    schedule: Schedule
    next_runs: list[schedules.Slot]


def shown_schedules(job: Job) -> list[ShownSchedule]:
    """The job's schedules with their next runs (paused ones too: when they would be)."""
    now = timezone.now()
    return [
        ShownSchedule(s, schedules.preview(s.cron, s.timezone, now, SHOWN_RUNS))
        for s in job.schedules.prefetch_related("servers", "target_tags")
    ]


def editable_schedule(request: HttpRequest, pk: int, perm: str) -> Schedule:
    schedule = policy.get_visible_or_404(
        Schedule.objects.select_related("job__team"), request.user, pk=pk
    )
    policy.require(request.user, perm, schedule)
    return schedule


@login_required
def schedule_edit(
    request: HttpRequest, job_pk: int | None = None, pk: int | None = None
) -> HttpResponse:
    if pk is None:
        job = policy.get_visible_or_404(Job.objects.select_related("team"), request.user, pk=job_pk)
        policy.require(request.user, "jobs.add_schedule", job)
        schedule = Schedule(job=job)
    else:
        schedule = editable_schedule(request, pk, "jobs.change_schedule")
        job = schedule.job
    form = ScheduleForm(request.POST or None, instance=schedule, job=job)
    if request.method == "POST" and form.is_valid():
        save_schedule(
            form.save(commit=False),
            actor=request.user,
            source=Source.UI,
            parameters=form.parameter_values(),
            servers=form.cleaned_data["servers"],
            target_tags=form.cleaned_data["target_tags"],
            changed_fields=form.changed_data,
        )
        messages.success(request, f"Saved the schedule {form.instance}.")
        return redirect("job-detail", pk=job.pk)
    return render(
        request,
        "jobs/schedule_form.html",
        {"form": form, "job": job, "schedule": schedule if pk else None, "section": "jobs"},
    )


@login_required
@require_POST
def schedule_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    """Pause a schedule, or resume it from its next slot (what passed meanwhile is not run)."""
    schedule = editable_schedule(request, pk, "jobs.change_schedule")
    schedule.enabled = not schedule.enabled
    save_schedule(schedule, actor=request.user, source=Source.UI, changed_fields=["enabled"])
    messages.success(request, f"{'Resumed' if schedule.enabled else 'Paused'} {schedule}.")
    return redirect("job-detail", pk=schedule.job_id)


@login_required
def schedule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks; POST deletes (its past runs stay)."""
    schedule = editable_schedule(request, pk, "jobs.delete_schedule")
    if request.method == "POST":
        delete_schedule(schedule, actor=request.user, source=Source.UI)
        messages.success(request, f"Deleted the schedule {schedule}.")
        return redirect("job-detail", pk=schedule.job_id)
    return render(request, "jobs/schedule_delete.html", {"schedule": schedule, "section": "jobs"})
