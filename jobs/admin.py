from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from accounts import policy
from executions import services
from executions.models import Trigger
from jobs.forms import JobForm, SecretVariableForm, WebhookAdminForm
from jobs.models import ChainLink, Job, Schedule, SecretVariable, Webhook, WebhookDelivery
from jobs.services import (
    delete_job,
    delete_schedule,
    delete_secret_variable,
    delete_webhook,
    save_job,
    save_schedule,
    save_secret_variable,
    save_webhook,
)
from servers.models import Server
from tsubame.adminscope import ReadOnlyAdmin, TeamScopedAdmin


@admin.register(Job)
class JobAdmin(TeamScopedAdmin):
    form = JobForm
    # The jobs it starts next are shown; they are set in the web UI or the API, which check
    # them for cycles. (A read-only inline would make every post carry its formset.)
    readonly_fields = ["then_runs"]
    save_service = staticmethod(save_job)
    delete_service = staticmethod(delete_job)
    list_display = [
        "name",
        "team",
        "interpreter",
        "target_count",
        "timeout_seconds",
        "max_parallel",
        "enabled",
    ]
    list_filter = ["team", "enabled", "interpreter"]
    list_select_related = ["team"]
    search_fields = ["name", "description", "script"]
    filter_horizontal = ["servers", "secret_variables"]
    actions = ["run_job"]
    fieldsets = [
        (None, {"fields": ["team", "name", "description", "enabled"]}),
        ("Script", {"fields": ["interpreter", "script", "use_terminal"]}),
        ("Inputs", {"fields": ["parameters", "secret_variables"]}),
        (
            "Targets and limits",
            {
                "fields": [
                    "servers",
                    "target_tags",
                    "max_parallel",
                    "timeout_seconds",
                    "concurrency",
                ]
            },
        ),
        ("Retries", {"fields": ["retry_attempts", "retry_delay_seconds", "retry_backoff"]}),
        ("Then run", {"fields": ["then_runs"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return super().get_queryset(request).prefetch_related("servers")

    @admin.display(description="Then runs")
    def then_runs(self, job: Job) -> str:
        links = ChainLink.objects.filter(job=job.pk).select_related("next_job")
        shown = [f"{link.next_job.name} ({link.get_when_display().lower()})" for link in links]
        return ", ".join(shown) or "—"

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "servers":
            kwargs["queryset"] = policy.visible(Server.objects.all(), request.user)
        if db_field.name == "secret_variables":
            kwargs["queryset"] = policy.visible(SecretVariable.objects.all(), request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description="Targets")
    def target_count(self, job: Job) -> int:
        return len(job.servers.all())

    @admin.action(description="Run job on its default targets", permissions=["run"])
    def run_job(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        for job in self.permitted(request, queryset, "jobs.run_job"):
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
        return request.user.has_perm("jobs.run_job")


@admin.register(SecretVariable)
class SecretVariableAdmin(TeamScopedAdmin):
    form = SecretVariableForm
    save_service = staticmethod(save_secret_variable)
    delete_service = staticmethod(delete_secret_variable)
    list_display = ["name", "team", "description", "updated_at"]
    list_filter = ["team"]
    list_select_related = ["team"]
    search_fields = ["name", "description"]


@admin.register(Schedule)
class ScheduleAdmin(TeamScopedAdmin):
    """Parameter values are set in the web UI or the API, which judge them against the job
    (and keep secret ones encrypted); here they are shown."""

    save_service = staticmethod(save_schedule)
    delete_service = staticmethod(delete_schedule)
    list_display = ["__str__", "job", "cron", "timezone", "enabled", "next_run_at", "last_error"]
    list_filter = ["enabled", "missed_runs"]
    list_select_related = ["job"]
    search_fields = ["name", "cron", "job__name"]
    fields = [
        "job",
        "name",
        "cron",
        "timezone",
        "enabled",
        "missed_runs",
        "start_deadline_seconds",
        "servers",
        "target_tags",
        "parameters",
        "next_run_at",
        "last_slot_at",
        "last_error",
    ]
    readonly_fields = ["parameters", "next_run_at", "last_slot_at", "last_error"]
    filter_horizontal = ["servers", "target_tags"]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "job":
            # Only jobs whose schedules the user may add to.
            kwargs["queryset"] = policy.restrict(Job.objects.all(), request.user, self.perm("add"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "servers":
            kwargs["queryset"] = policy.visible(Server.objects.all(), request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(Webhook)
class WebhookAdmin(TeamScopedAdmin):
    form = WebhookAdminForm
    save_service = staticmethod(save_webhook)
    delete_service = staticmethod(delete_webhook)
    list_display = ["name", "job", "mode", "enabled", "rate_limit_per_minute"]
    list_filter = ["mode", "enabled", "job"]
    list_select_related = ["job"]
    search_fields = ["name", "job__name"]
    readonly_fields = ["key"]

    def get_readonly_fields(self, request: HttpRequest, obj: Webhook | None = None) -> list[str]:
        # A webhook stays with its job (and so with its team), as in the API.
        return ["key", "job"] if obj is not None else ["key"]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "job":
            kwargs["queryset"] = policy.restrict(Job.objects.all(), request.user, self.perm("add"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """The log of requests to webhooks' URLs: written by them only."""

    list_display = ["received_at", "webhook", "delivery_id", "status_code", "reason", "execution"]
    list_filter = ["accepted", "status_code"]
    list_select_related = ["webhook"]
    search_fields = ["delivery_id", "webhook__name"]
