from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from accounts.models import Source
from executions import logs, services
from executions.models import Execution, HostRun, LogChunk
from tsubame.adminscope import ReadOnlyAdmin

# The admin shows the start of a log; a larger one is read through the live viewer or
# downloaded, never loaded whole into a page.
ADMIN_LOG_BYTES = 512 * 1024


class HostRunInline(admin.TabularInline):
    model = HostRun
    extra = 0
    can_delete = False
    fields = ["server_name", "address", "status", "exit_code", "duration", "error"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="Duration (s)")
    def duration(self, run: HostRun) -> str:
        return f"{run.duration:.2f}" if run.duration is not None else "—"


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "team",
        "status",
        "summary",
        "trigger",
        "triggered_by",
        "created_at",
        "duration_display",
    ]
    list_filter = ["team", "status", "trigger", "job", "created_at"]
    search_fields = ["job_name", "summary", "host_runs__server_name"]
    list_select_related = ["triggered_by", "team"]
    date_hierarchy = "created_at"
    inlines = [HostRunInline]
    actions = ["cancel"]
    readonly_fields = [
        "team",
        "job",
        "job_name",
        "status",
        "summary",
        "trigger",
        "triggered_by",
        "created_at",
        "started_at",
        "finished_at",
        "worker",
        "heartbeat_at",
        "cancel_requested_at",
        "cancel_requested_by",
        "interpreter",
        "timeout_seconds",
        "max_parallel",
        "use_terminal",
        "parameter_values",
        "target_tags",
        "secret_variables",
        "rerun_of",
        "script",
        "log",
    ]
    fieldsets = [
        (None, {"fields": ["team", "job", "job_name", "status", "summary"]}),
        (
            "Who and when",
            {
                "fields": [
                    "trigger",
                    "triggered_by",
                    "created_at",
                    "started_at",
                    "finished_at",
                    "worker",
                    "heartbeat_at",
                    "cancel_requested_at",
                    "cancel_requested_by",
                ]
            },
        ),
        (
            "What ran",
            {
                "fields": [
                    "interpreter",
                    "timeout_seconds",
                    "max_parallel",
                    "use_terminal",
                    "parameter_values",
                    "target_tags",
                    "secret_variables",
                    "rerun_of",
                    "script",
                ]
            },
        ),
        ("Output", {"fields": ["log"]}),
    ]

    @admin.display(description="Duration (s)")
    def duration_display(self, execution: Execution) -> str:
        return f"{execution.duration:.2f}" if execution.duration is not None else "—"

    @admin.display(description="Parameters")
    def parameter_values(self, execution: Execution) -> str:
        return (
            format_html_join(
                "\n",
                "<div><code>{}</code> = {}</div>",
                ((n, v) for n, _, v in execution.shown_parameters()),
            )
            or "—"
        )

    @admin.display(description="Log")
    def log(self, execution: Execution) -> str:
        names = dict(execution.host_runs.values_list("pk", "server_name"))
        lines, size, source = [], 0, None
        for chunk in LogChunk.objects.filter(execution=execution).order_by("seq").iterator():
            if (chunk.host_run_id, chunk.stream) != source:
                source = (chunk.host_run_id, chunk.stream)
                name = logs.one_line(names.get(chunk.host_run_id, "?"))
                lines.append(f"\n── {name} {chunk.get_stream_display()} ──\n")
            lines.append(bytes(chunk.data).decode(errors="replace"))
            size += len(chunk.data)
            if size >= ADMIN_LOG_BYTES:
                lines.append("\n… (truncated; the full log is kept)")
                break
        return format_html(
            '<pre style="max-height:40em;overflow:auto;white-space:pre-wrap">{}</pre>',
            "".join(lines) or "(no output)",
        )

    @admin.action(description="Cancel execution", permissions=["cancel"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        for execution in self.permitted(request, queryset, "executions.cancel_execution"):
            if services.cancel_execution(execution, by=request.user, source=Source.ADMIN):
                self.message_user(request, f"{execution}: cancel requested")
            else:
                self.message_user(request, f"{execution}: already finished", messages.WARNING)

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("executions.cancel_execution")


@admin.register(HostRun)
class HostRunAdmin(ReadOnlyAdmin):
    list_display = ["server_name", "execution", "status", "exit_code", "started_at", "error"]
    list_filter = ["status", "started_at"]
    search_fields = ["server_name", "address", "error", "execution__job_name"]
    list_select_related = ["execution"]
    raw_id_fields = ["execution", "server"]


@admin.register(LogChunk)
class LogChunkAdmin(ReadOnlyAdmin):
    list_display = ["execution", "seq", "host_run", "stream", "size", "created_at"]
    list_filter = ["stream"]
    list_select_related = ["execution", "host_run"]
    raw_id_fields = ["execution", "host_run"]
    readonly_fields = ["execution", "host_run", "seq", "stream", "size", "created_at", "text"]
    exclude = ["data"]
    show_full_result_count = False  # counting millions of chunks for the header is slow

    @admin.display(description="Bytes")
    def size(self, chunk: LogChunk) -> int:
        return len(chunk.data)

    @admin.display(description="Content")
    def text(self, chunk: LogChunk) -> str:
        return format_html("<pre>{}</pre>", bytes(chunk.data).decode(errors="replace"))
