"""Helpers for tests that run executions against the real sshd."""

from __future__ import annotations

import contextlib
import random
import subprocess
import time
from collections.abc import Callable, Iterator

from django.db import connection

from executions import runner, services
from executions.models import Execution, LogChunk, Trigger
from jobs.models import Job
from servers.models import Server


def start(job: Job, **kwargs: object) -> Execution:
    return services.start_execution(job, trigger=Trigger.SYSTEM, **kwargs)


def run(job: Job, **kwargs: object) -> Execution:
    """Start an execution and run it to the end in this process, as a worker would."""
    execution = start(job, **kwargs)
    runner.run_execution(execution.pk)
    execution.refresh_from_db()
    return execution


def output(execution: Execution, server: Server | None = None, stream: str | None = None) -> bytes:
    chunks = LogChunk.objects.filter(execution=execution).order_by("seq")
    if server is not None:
        chunks = chunks.filter(host_run__server=server)
    if stream is not None:
        chunks = chunks.filter(stream=LogChunk.Stream[stream.upper()])
    return b"".join(bytes(chunk.data) for chunk in chunks)


def stored_lines(execution: Execution) -> list[tuple[str, str]]:
    """Each stored line with its stream, in seq order; a line never spans two streams here."""
    lines: list[tuple[str, str]] = []
    text: dict[str, str] = {"stdout": "", "stderr": ""}
    for chunk in LogChunk.objects.filter(execution=execution).order_by("seq"):
        stream = LogChunk.Stream(chunk.stream).label
        *complete, text[stream] = (text[stream] + bytes(chunk.data).decode()).split("\n")
        lines += [(stream, line) for line in complete]
    return lines


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def unique_tag() -> str:
    """A `sleep` argument of thousands of seconds that no other process on the machine uses."""
    return f"{random.randint(5000, 9999)}.{random.randint(10**5, 10**6)}"


def remote_processes(tag: str) -> list[str]:
    """The processes on the (local) sshd's side still running `sleep <tag>`."""
    found = subprocess.run(["pgrep", "-af", f"sleep {tag}"], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


@contextlib.contextmanager
def right_after_the_select(
    action: Callable[[], object], table: str = "executions_execution"
) -> Iterator[None]:
    """Run `action` once, right after the first select of executions (a reaper's or a
    requeuer's; or of another table), before the guarded update that follows it.

    That puts a competitor exactly in the window that the update's re-check exists for.
    """
    fired = False

    def wrapper(execute, sql, params, many, context):
        nonlocal fired
        result = execute(sql, params, many, context)
        if not fired and sql.startswith("SELECT") and f'FROM "{table}"' in sql:
            fired = True
            action()
        return result

    with connection.execute_wrapper(wrapper):
        yield
    assert fired, f"nothing selected from {table}"
