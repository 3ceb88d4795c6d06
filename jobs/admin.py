from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from executions import services
from executions.models import Trigger
from jobs.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "interpreter",
        "target_count",
        "timeout_seconds",
        "max_parallel",
        "enabled",
    ]
    list_filter = ["enabled", "interpreter"]
    search_fields = ["name", "description", "script"]
    filter_horizontal = ["servers"]
    actions = ["run_job"]
    fieldsets = [
        (None, {"fields": ["name", "description", "enabled"]}),
        ("Script", {"fields": ["interpreter", "script"]}),
        ("Targets and limits", {"fields": ["servers", "max_parallel", "timeout_seconds"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return super().get_queryset(request).prefetch_related("servers")

    @admin.display(description="Targets")
    def target_count(self, job: Job) -> int:
        return len(job.servers.all())

    @admin.action(description="Run job on its default targets", permissions=["run"])
    def run_job(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        for job in queryset:
            try:
                execution = services.start_execution(
                    job, trigger=Trigger.ADMIN, triggered_by=request.user
                )
            except services.ExecutionError as exc:
                self.message_user(request, f"{job.name}: {exc}", messages.ERROR)
                continue
            url = reverse("admin:executions_execution_change", args=[execution.pk])
            self.message_user(
                request, format_html('{}: started <a href="{}">{}</a>', job.name, url, execution)
            )

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("executions.add_execution")
