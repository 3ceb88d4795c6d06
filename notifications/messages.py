"""What a notification says: a title and a plain-text body for people, and a JSON event for
signed webhooks, made once when the delivery is planned and sent unchanged on every attempt.

A failed host's last lines come from its stored output, which was masked before it was
stored (executions.masking): a secret the script printed shows as `***` here too.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from executions.models import Execution, HostRun, LogChunk, Status, Trigger
from notifications.models import Event

LAST_LINES = 20
# Failed hosts whose last lines a message shows: a run that failed on 200 servers still
# makes a message a mail server and a chat accept; the execution's page has the rest.
TAILED_HOSTS = 10
MAX_LINE = 300
# Read back from a host's output at most this much to find its last lines.
TAIL_BYTES = 64 * 1024
FAILED = (Status.FAILED, Status.TIMED_OUT, Status.LOST)
# Escape sequences (colours, cursor moves) and other control characters but the tab.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b.")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

HEADLINES = {
    Event.STARTED: "started",
    Event.SUCCEEDED: "succeeded",
    Event.FAILED: "failed",
    Event.RECOVERED: "recovered",
    Event.FAILED_IN_A_ROW: "failed {n} times in a row",
    Event.CANCELLED: "was cancelled",
    Event.MISSED: "missed a scheduled run",
    Event.SKIPPED: "skipped a run",
}


def execution_url(execution: Execution) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("execution-detail", args=[execution.pk])


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {rest} s"


def trigger_text(execution: Execution) -> str:
    """Who or what started the run, in words."""
    trigger = execution.trigger
    if trigger == Trigger.SCHEDULE:
        schedule = execution.schedule
        name = str(schedule) if schedule is not None else "(deleted)"
        slot = (
            f" for {execution.scheduled_for:%Y-%m-%d %H:%M} UTC" if execution.scheduled_for else ""
        )
        return f"schedule {name}{slot}"
    if trigger == Trigger.WEBHOOK:
        webhook = execution.webhook
        return f"webhook {webhook.name if webhook is not None else '(deleted)'}"
    if trigger == Trigger.CHAIN:
        parent = execution.parent
        if parent is None:
            return "chain"
        return f"chain, after #{parent.pk} {parent.job_name} ({parent.get_status_display()})"
    if trigger == Trigger.RETRY:
        return f"retry, attempt {execution.attempt} of #{execution.retry_of_id}"
    label = Trigger(trigger).label if trigger in Trigger.values else trigger
    user = execution.triggered_by
    return f"{user.get_username()} ({label})" if user is not None else label


def last_lines(host_run: HostRun, count: int = LAST_LINES) -> list[str]:
    """The host's last `count` lines of output (stdout and stderr as they arrived), as
    plain text: escape sequences and control characters removed, long lines cut."""
    pieces: list[bytes] = []
    newest_first = LogChunk.objects.filter(host_run=host_run).order_by("-seq")
    # Chunks hold up to 128 KiB: read a few at a time, newest first, until enough.
    while sum(map(len, pieces)) < TAIL_BYTES and b"".join(pieces).count(b"\n") <= count:
        batch = [
            bytes(data)
            for data in newest_first.values_list("data", flat=True)[len(pieces) : len(pieces) + 4]
        ]
        if not batch:
            break
        pieces += batch
    pieces.reverse()
    text = b"".join(pieces)[-TAIL_BYTES:].decode("utf-8", errors="replace")
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    shown = []
    for line in lines[-count:]:
        # A progress bar redraws its line with \r: what the screen last showed is the end.
        line = _CONTROLS.sub("", _ESCAPES.sub("", line.rsplit("\r", 1)[-1]))
        shown.append(line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…")
    return shown


def compose(execution: Execution, event: str, *, in_a_row: int = 0) -> dict[str, Any]:
    """The delivery's fields (title, body, payload) announcing `event` of `execution`."""
    headline = HEADLINES[Event(event)].format(n=in_a_row)
    title = f"[tsubame] {execution.job_name} {headline} (#{execution.pk})"
    url = execution_url(execution)
    hosts = list(execution.host_runs.order_by("server_name", "id"))
    duration = execution.duration
    lines = [
        f"Job: {execution.job_name} (team {execution.team.name})",
        f"Outcome: {execution.get_status_display()}"
        + (f" - {execution.summary}" if execution.summary else ""),
        f"Duration: {duration_text(duration)}",
        f"Trigger: {trigger_text(execution)}",
        f"Execution: {url}",
    ]
    host_data = []
    tailed = 0
    if hosts:
        lines += ["", "Servers:"]
    for host in hosts:
        exit_code = "" if host.exit_code is None else f", exit {host.exit_code}"
        error = f" - {host.error}" if host.error else ""
        lines.append(
            f"  {host.server_name}: {host.get_status_display()}{exit_code}, "
            f"{duration_text(host.duration)}{error}"
        )
        tail = []
        if host.status in FAILED and tailed < TAILED_HOSTS:
            tail, tailed = last_lines(host), tailed + 1
        host_data.append(
            {
                "server": host.server_name,
                "status": host.status,
                "exit_code": host.exit_code,
                "error": host.error,
                "duration_seconds": host.duration,
                "last_lines": tail,
            }
        )
    for host, data in zip(hosts, host_data, strict=True):
        if data["last_lines"]:
            lines += ["", f"Last {len(data['last_lines'])} lines of {host.server_name}:"]
            lines += [f"  {line}" for line in data["last_lines"]]
    untailed = sum(1 for host in hosts if host.status in FAILED) - tailed
    if untailed > 0:
        lines += ["", f"{untailed} more failed servers: their output is on the execution's page."]
    payload = {
        "type": f"execution.{event}",
        "timestamp": timezone.now().isoformat(),
        "data": {
            "event": event,
            "failures_in_a_row": in_a_row or None,
            "execution": {
                "id": execution.pk,
                "url": url,
                "job": {"id": execution.job_id, "name": execution.job_name},
                "team": {"id": execution.team_id, "name": execution.team.name},
                "status": execution.status,
                "summary": execution.summary,
                "trigger": execution.trigger,
                "trigger_text": trigger_text(execution),
                "attempt": execution.attempt,
                "scheduled_for": _iso(execution.scheduled_for),
                "started_at": _iso(execution.started_at),
                "finished_at": _iso(execution.finished_at),
                "duration_seconds": duration,
                "hosts": host_data,
            },
        },
    }
    return {"title": title[:250], "body": "\n".join(lines), "payload": payload}


def compose_test(channel_name: str, team_name: str) -> dict[str, Any]:
    title = f"[tsubame] Test message for {channel_name}"
    body = (
        f"This is a test of the notification channel {channel_name} of team {team_name}. "
        f"If you read it, the channel works.\n{settings.SITE_URL}"
    )
    payload = {
        "type": "test",
        "timestamp": timezone.now().isoformat(),
        "data": {"channel": channel_name, "team": team_name},
    }
    return {"title": title[:250], "body": body, "payload": payload}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
